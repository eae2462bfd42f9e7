"""One emulated 3-node Ray cluster for the whole test session (``scripts/local-cluster.sh``).

Each node has its own network namespace (198.18.0.K, interface names that differ between nodes), its own
hostname, which also resolves to 127.0.0.1 first on its own node (as on this machine), its own /etc/hosts and
its own /tmp; everything else (this checkout, its .venv, /var/tmp) is shared, like a cluster's shared file
system. The cluster is taken down by PID and by namespace at the end, also when a test fails. It needs root:
elsewhere these tests skip with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "local-cluster.sh"
HEAD = "198.18.0.1:6379"


@dataclass
class Emulated:
    """The running emulated cluster."""

    state: Path  # HPO_CLUSTER_DIR, under /var/tmp: seen by every node
    shared: Path  # a directory every node sees at the same path (data, campaign files, Tune storage)
    env: dict[str, str]

    def node_tmp(self, k: int) -> Path:
        """Node k's /tmp, as this (host) process sees it."""
        return self.state / f"node{k}" / "tmp"

    def hpo(self, k: int, *args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """``hpo ARGS`` on node k (as if logged in there), in ``shared``; output captured."""
        return subprocess.run(self.hpo_command(k, *args, env=env), cwd=self.shared, env=self.env, capture_output=True,
                              text=True, timeout=timeout)

    def hpo_command(self, k: int, *args: str, env: dict[str, str] | None = None) -> list[str]:
        """The command line of :meth:`hpo`, for a ``Popen``."""
        assignments = [f"{key}={value}" for key, value in (env or {}).items()]
        return [str(SCRIPT), "exec", str(k), "env", "PYTHONUNBUFFERED=1", *assignments, sys.executable, "-m",
                "orchestrator.cli", *args]

    def kill_node(self, k: int) -> int:
        """SIGKILL every process of node k (its raylet and every worker on it): a node lost. Returns how many."""
        pids = subprocess.run(["ip", "netns", "pids", f"hpo-n{k}"], capture_output=True, text=True, check=True).stdout.split()
        for pid in pids:
            subprocess.run(["kill", "-KILL", pid], capture_output=True)
        return len(pids)

    def campaign_file(self, node: int, campaigns: str, name: str, filename: str) -> Any:
        """A JSON file of a campaign whose directory is ``campaigns`` on node ``node``."""
        base = self.node_tmp(node) / campaigns.removeprefix("/tmp/") if campaigns.startswith("/tmp/") else Path(campaigns)
        path = base / name / filename
        return json.loads(path.read_text()) if path.exists() else None


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root: the emulated cluster uses network namespaces, veth pairs and a bridge"
    for tool in ("ip", "nsenter", "unshare"):
        if shutil.which(tool) is None:
            return f"needs {tool} (iproute2, util-linux) for the emulated cluster"
    if subprocess.run(["ip", "link", "show", "hpo-br0"], capture_output=True).returncode == 0:
        return "an emulated cluster is already up (bridge hpo-br0); take it down with scripts/local-cluster.sh down"
    probe = subprocess.run(["ip", "netns", "add", "hpo-probe"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot create network namespaces here: {probe.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", "hpo-probe"], capture_output=True)
    return None


@pytest.fixture(scope="session")
def emulated() -> Iterator[Emulated]:
    """A 3-node emulated Ray cluster, 1 CPU per node, hostile hostnames and interface names."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    state = Path(tempfile.mkdtemp(prefix="hpo-test-cluster-", dir="/var/tmp"))
    env = {**os.environ, "HPO_CLUSTER_DIR": str(state), "PYTHONUNBUFFERED": "1"}
    try:
        started = time.time()
        up = subprocess.run([str(SCRIPT), "up", "3", "--cpus", "1", "--hostile"], env=env, capture_output=True, text=True,
                            timeout=300)
        assert up.returncode == 0, f"local-cluster.sh up failed:\n{up.stderr[-3000:]}"
        print(f"emulated cluster up in {time.time() - started:.0f} s")
        shared = state / "shared"
        shared.mkdir()
        yield Emulated(state=state, shared=shared, env=env)
    finally:
        subprocess.run([str(SCRIPT), "down"], env=env, capture_output=True, timeout=120)
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        shutil.rmtree(state, ignore_errors=True)
        assert "hpo-n" not in left, f"namespaces left behind: {left}"


@pytest.fixture(scope="session")
def shared_calo(emulated: Emulated) -> Path:
    """A small calorimeter file on the shared file system."""
    from trainables.data.generate import write_calo

    return write_calo(emulated.shared / "calo.h5", events=1200, seed=5, progress=False)
