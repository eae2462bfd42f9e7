"""The checks made before a campaign starts on a Ray cluster, on made-up clusters (no Ray needed), and the
driver lock between processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cluster import (
    ClusterInfo,
    Node,
    check_fits,
    check_storage,
    check_tracking_uri,
    is_loopback_uri,
    is_uri,
)
from orchestrator.config import TrialSection
from orchestrator.state import CampaignDir
from trainables.errors import HpoError


def cluster(*cpus: float, gpus: float = 0) -> ClusterInfo:
    nodes = tuple(Node(node_id=f"id{k}", address=f"198.18.0.{k}", hostname=f"node{k}", cpus=c, gpus=gpus)
                  for k, c in enumerate(cpus, start=1))
    return ClusterInfo(nodes=nodes, driver_address="198.18.0.1")


@pytest.mark.parametrize(("trial", "nodes", "words"), [
    ({"workers": 4}, (1, 1, 1), ["4 × 1 CPUs", "has 3"]),
    ({"workers": 2, "cpus_per_worker": 2}, (1, 1, 1, 1), ["no node", "largest has 1"]),
    ({"workers": 2, "placement_strategy": "STRICT_PACK"}, (1, 1, 1), ["STRICT_PACK", "largest node holds 1"]),
    ({"workers": 3, "placement_strategy": "STRICT_SPREAD"}, (4, 1, 0.5), ["STRICT_SPREAD", "only 2 node(s)"]),
    ({"workers": 3, "cpus_per_worker": 1.5}, (2, 2, 0.5), ["ranks of 1.5 CPUs", "only 2 such ranks"]),
    ({"workers": 2, "gpus_per_worker": 1}, (4, 4), ["GPUs", "gpus_per_worker=0"]),
])
def test_a_trial_that_cannot_fit_is_refused_naming_the_field(trial: dict, nodes: tuple, words: list[str]) -> None:
    with pytest.raises(HpoError) as info:
        check_fits(TrialSection(**trial), cluster(*nodes))
    assert len(info.value.message.splitlines()) == 1
    for word in words:
        assert word in info.value.message, info.value.message


@pytest.mark.parametrize(("trial", "nodes"), [
    ({"workers": 2}, (1, 1, 1)),
    ({"workers": 2, "placement_strategy": "STRICT_SPREAD"}, (1, 1)),
    ({"workers": 2, "placement_strategy": "STRICT_PACK"}, (2, 1)),
    ({"workers": 3, "cpus_per_worker": 0.5}, (1, 0.5)),
])
def test_a_trial_that_fits_passes(trial: dict, nodes: tuple) -> None:
    check_fits(TrialSection(**trial), cluster(*nodes))


@pytest.mark.parametrize(("uri", "loopback"), [
    ("http://127.0.0.1:5000", True), ("http://localhost:5000", True), ("https://127.8.0.1", True),
    ("http://[::1]:5000", True), ("http://198.18.0.1:5000", False), ("http://mlflow.example.org", False),
    ("databricks", False), ("file:///tmp/mlruns", False),
])
def test_loopback_uris(uri: str, loopback: bool) -> None:
    assert is_loopback_uri(uri) is loopback


def test_tracking_uris_other_nodes_cannot_reach_are_refused_only_on_several_nodes() -> None:
    for uri in ("http://127.0.0.1:5000", "sqlite:///mlflow.db", "/tmp/mlruns", "file:///tmp/mlruns"):
        check_tracking_uri(uri, cluster(2))  # one node: anything goes
        with pytest.raises(HpoError) as info:
            check_tracking_uri(uri, cluster(1, 1))
        assert "tracking.uri" in info.value.message and "unset" in info.value.message
    check_tracking_uri("http://198.18.0.1:5000", cluster(1, 1))


def test_object_store_uris_are_not_paths(tmp_path: Path) -> None:
    assert is_uri("s3://bucket/prefix") and is_uri("gs://b/p")
    assert not is_uri("/shared/tune") and not is_uri("file:///shared/tune") and not is_uri("C:/x")
    check_storage("s3://bucket/prefix", cluster(1, 1))  # Tune's to reach: no probe, no Ray needed
    check_storage(str(tmp_path), cluster(1))  # one node: no probe


def test_the_driver_lock_refuses_a_second_driver_and_frees_when_the_first_exits(tmp_path: Path) -> None:
    cdir = CampaignDir(tmp_path / "c1")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from orchestrator.state import CampaignDir; "
         f"CampaignDir(__import__('pathlib').Path({str(cdir.root)!r})).acquire(); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert cdir.driver_alive()
        with pytest.raises(HpoError) as info:
            cdir.acquire()
        assert "already running" in info.value.message and f"pid {holder.pid}" in info.value.message
    finally:
        holder.kill()
        holder.wait()
    assert not cdir.driver_alive()  # the lock went with the process
    cdir.acquire()
    assert cdir.driver_alive()
    cdir.release()
    assert not cdir.driver_alive()
