"""The Ray cluster a campaign runs on: joining it, what it offers, and the checks made before anything starts.

Without ``--address`` a campaign starts its own local Ray (``ray.init(address="local")``), never one that
``ray start`` left on the node. ``--address auto`` or ``HOST:PORT`` joins a cluster. Everything that would
make a campaign on that cluster fail later is refused here with a one-line :class:`HpoError` (exit 2) before
any trial, directory or MLflow run exists:

- the address does not answer, or refuses this process's Ray token;
- one trial cannot fit (in all, per node, or under a strict placement strategy);
- on several nodes: Tune's storage is a path that some node does not see, or the tracking URI is a
  loopback address that the other nodes would reach as themselves.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from trainables.errors import HpoError

if TYPE_CHECKING:
    from orchestrator.config import TrialSection

#: Environment every Ray worker of a campaign gets (Keras 2 for Horovod; quiet TensorFlow).
WORKER_ENV = {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}

#: How the driver's MLflow client authenticates and verifies TLS: the trials log with the same settings, also on
#: nodes whose Ray was started without them (they travel in the job's runtime environment, which only this
#: cluster's users, holding its token, can read).
TRACKING_CLIENT_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
                       "MLFLOW_TRACKING_INSECURE_TLS", "MLFLOW_TRACKING_SERVER_CERT_PATH",
                       "MLFLOW_TRACKING_CLIENT_CERT_PATH")


def worker_env() -> dict[str, str]:
    """The environment every Ray worker of the campaign gets: :data:`WORKER_ENV` and the driver's MLflow client
    settings (:data:`TRACKING_CLIENT_ENV`) that are set."""
    return {**WORKER_ENV, **{k: os.environ[k] for k in TRACKING_CLIENT_ENV if os.environ.get(k)}}

#: Where Ray keeps the token that ``ray start --head`` creates (Ray 2.60 token authentication).
TOKEN_FILE = Path.home() / ".ray" / "auth_token"


@dataclass(frozen=True)
class Node:
    """One live Ray node."""

    node_id: str
    address: str
    hostname: str
    cpus: float
    gpus: float


@dataclass(frozen=True)
class ClusterInfo:
    """The cluster as the driver found it."""

    nodes: tuple[Node, ...]
    driver_address: str  # this node's Ray address: the head's, where the driver runs on the head

    @property
    def multi_node(self) -> bool:
        """Whether trials may land on another node than the driver."""
        return len(self.nodes) > 1

    def describe(self) -> str:
        """``3 nodes (node1 198.18.0.1, ...), 3 CPUs``."""
        cpus = sum(n.cpus for n in self.nodes)
        names = ", ".join(f"{n.hostname} {n.address}" for n in self.nodes[:4]) + (", …" if len(self.nodes) > 4 else "")
        return f"{len(self.nodes)} node{'s' if len(self.nodes) > 1 else ''} ({names}), {cpus:g} CPUs"


def connect(address: str | None) -> ClusterInfo:
    """Start a local Ray (``address`` None) or join a cluster (``auto`` or ``HOST:PORT``)."""
    import ray

    if not ray.is_initialized():
        # our live table and one-line messages replace Tune's console output
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
        os.environ.setdefault("RAY_DEDUP_LOGS", "1")
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        target = "local" if address is None else address
        if address is not None:
            os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")  # no stream of Ray's retry warnings on refusal
            if address != "auto":
                _check_reachable(address)
            _use_token()
        try:
            ray.init(
                address=target, include_dashboard=False, log_to_driver=bool(os.environ.get("HPO_WORKER_LOGS")),
                logging_level=logging.WARNING, runtime_env={"env_vars": worker_env()},
            )
        except Exception as exc:
            raise _connect_error(address, exc) from None
    return cluster_info()


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A TCP connection to the head's GCS port, so that a wrong address fails in seconds, not minutes."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise HpoError(f"--address {address}: expected HOST:PORT (the head's address and GCS port, e.g. 10.0.0.1:6379) or auto")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise HpoError(
            f"cannot reach the Ray cluster at --address {address} ({exc.strerror or exc}); start its head with "
            f"`ray start --head --port {port}`, check the address, or drop --address to run on a local Ray"
        ) from None


def _use_token() -> None:
    """Ray 2.60's token authentication: every client of a ``ray start --head`` cluster needs
    ``RAY_AUTH_MODE=token`` and the token. Where the token is at hand and the mode is not set, set it."""
    if "RAY_AUTH_MODE" not in os.environ and (os.environ.get("RAY_AUTH_TOKEN") or TOKEN_FILE.exists()):
        os.environ["RAY_AUTH_MODE"] = "token"


def _connect_error(address: str | None, exc: BaseException) -> HpoError:
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)[:300]
    if address is None:
        return HpoError(f"could not start a local Ray ({first}); `ray start --head` shows what is wrong here")
    if address != "auto":
        # the head's port answered (_check_reachable), yet the client was turned away: with Ray's token
        # authentication that is a missing or wrong token (Ray itself only logs InvalidAuthToken)
        mode = os.environ.get("RAY_AUTH_MODE")
        have = "a token" if os.environ.get("RAY_AUTH_TOKEN") or TOKEN_FILE.exists() else "no token"
        return HpoError(
            f"the Ray cluster at --address {address} answers but refused this process ({first}; RAY_AUTH_MODE="
            f"{mode or 'unset'}, {have}); a cluster with token authentication needs RAY_AUTH_MODE=token and its token "
            f"in RAY_AUTH_TOKEN or {TOKEN_FILE} (copy it from the head: `ray get-auth-token`)"
        )
    return HpoError(
        f"cannot join a Ray cluster with --address auto ({first}); start one with `ray start --head`, give its "
        "HOST:PORT, or drop --address to run on a local Ray"
    )


def cluster_info() -> ClusterInfo:
    """The live nodes of the connected cluster, and this node's address."""
    import ray

    nodes = tuple(
        Node(node_id=n["NodeID"], address=n["NodeManagerAddress"], hostname=n.get("NodeManagerHostname", ""),
             cpus=float(n["Resources"].get("CPU", 0)), gpus=float(n["Resources"].get("GPU", 0)))
        for n in ray.nodes() if n.get("Alive")
    )
    return ClusterInfo(nodes=nodes, driver_address=ray.util.get_node_ip_address())


def check_fits(trial: TrialSection, cluster: ClusterInfo) -> None:
    """One trial (``workers`` bundles of ``cpus_per_worker`` CPUs and ``gpus_per_worker`` GPUs) must fit the
    cluster under its placement strategy, or it would stay PENDING for ever."""
    workers, cpus, gpus = trial.workers, trial.cpus_per_worker, trial.gpus_per_worker
    fix = "lower trial.workers or trial.cpus_per_worker, or add nodes"
    total_cpu = sum(n.cpus for n in cluster.nodes)
    if total_cpu < workers * cpus:
        raise HpoError(
            f"trial.workers × trial.cpus_per_worker = {workers} × {cpus:g} CPUs, but the Ray cluster has "
            f"{total_cpu:g}; {fix}"
        )
    if gpus and sum(n.gpus for n in cluster.nodes) < workers * gpus:
        raise HpoError(
            f"trial.workers × trial.gpus_per_worker = {workers * gpus:g} GPUs, but the Ray cluster has "
            f"{sum(n.gpus for n in cluster.nodes):g}; set trial.gpus_per_worker=0 or run on GPU nodes"
        )

    def ranks_on(node: Node) -> int:
        by_cpu = int(node.cpus // cpus + 1e-9)
        return min(by_cpu, int(node.gpus // gpus + 1e-9)) if gpus else by_cpu

    per_node = [ranks_on(n) for n in cluster.nodes]
    largest = max((n.cpus for n in cluster.nodes), default=0.0)
    if not any(per_node):
        raise HpoError(
            f"trial.cpus_per_worker = {cpus:g}{f' and gpus_per_worker = {gpus:g}' if gpus else ''}: no node of the "
            f"Ray cluster holds one rank (the largest has {largest:g} CPUs); lower it"
        )
    strategy = trial.placement_strategy
    if strategy == "STRICT_SPREAD" and sum(1 for k in per_node if k) < workers:
        raise HpoError(
            f"trial.placement_strategy STRICT_SPREAD puts each of the {workers} ranks on its own node, but only "
            f"{sum(1 for k in per_node if k)} node(s) of the Ray cluster hold a rank; use SPREAD or PACK, or add nodes"
        )
    if strategy == "STRICT_PACK" and max(per_node) < workers:
        raise HpoError(
            f"trial.placement_strategy STRICT_PACK puts all {workers} ranks on one node, but the largest node holds "
            f"{max(per_node)}; use PACK or SPREAD, or lower trial.workers"
        )
    if sum(per_node) < workers:
        raise HpoError(
            f"trial.workers = {workers} ranks of {cpus:g} CPUs each, but the Ray cluster's nodes hold only "
            f"{sum(per_node)} such ranks in all ({', '.join(f'{n.hostname} {n.cpus:g}' for n in cluster.nodes)} CPUs); {fix}"
        )


def is_uri(storage: str) -> bool:
    """Whether ``storage`` is an object-store URI (``s3://``, ``gs://``, ...) rather than a path."""
    scheme = urlparse(storage).scheme
    return len(scheme) > 1 and scheme != "file"


def check_storage(storage: str, cluster: ClusterInfo, field: str = "storage") -> None:
    """On several nodes, a storage path must be the same directory on every node (a shared file system).

    The check writes a marker file there and asks a task on every node whether it sees it. Object-store
    URIs are Tune's to reach; a single node needs nothing.
    """
    if not cluster.multi_node or is_uri(storage):
        return
    path = Path(storage.removeprefix("file://"))
    try:
        path.mkdir(parents=True, exist_ok=True)
        marker = path / f".hpo-probe-{uuid.uuid4().hex}"
        marker.write_text(cluster.driver_address)
    except OSError as exc:
        raise HpoError(f"{field}: cannot write to {path} ({exc.strerror or exc}); choose a writable shared path") from None
    try:
        seen = _on_every_node(_sees, str(marker), cluster)
    finally:
        marker.unlink(missing_ok=True)
    blind = [n for n, ok in zip(cluster.nodes, seen, strict=True) if not ok]
    if blind:
        names = ", ".join(f"{n.hostname} ({n.address})" for n in blind[:3])
        raise HpoError(
            f"{field}: {path} is local to the driver's node: {len(blind)} of the Ray cluster's {len(cluster.nodes)} "
            f"nodes ({names}) do not see it; set {field} to a path every node mounts (a shared file system) or "
            "an object-store URI such as s3://bucket/prefix"
        )


def _sees(marker: str) -> bool:
    return Path(marker).is_file()


def check_data(path: str, cluster: ClusterInfo, field: str = "workload.data.path") -> None:
    """On several nodes, the data file must be the same file on every node (trials start anywhere): a task on each
    node reads its size there, and a node where it is missing, unreadable or of another size is named.

    A path local to the driver's node (``/tmp``, a node-local scratch disk) is the usual cause; a single node needs
    nothing (the data checks already read the file).
    """
    if not cluster.multi_node:
        return
    size = Path(path).stat().st_size
    seen = _on_every_node(_size_of, path, cluster)
    blind = [(n, found) for n, found in zip(cluster.nodes, seen, strict=True) if found != size]
    if blind:
        names = ", ".join(f"{n.hostname} ({n.address}): {found if isinstance(found, str) else f'{found} bytes'}"
                          for n, found in blind[:3])
        raise HpoError(
            f"{field}: {path} ({size} bytes here) is not the same file on {len(blind)} of the Ray cluster's "
            f"{len(cluster.nodes)} nodes ({names}); put it on a file system every node mounts at the same path"
        )


def _size_of(path: str) -> int | str:
    try:
        with open(path, "rb"):  # readable, not just listed
            return os.stat(path).st_size
    except FileNotFoundError:
        return "not found"
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def _on_every_node(task: Callable[[str], Any], argument: str, cluster: ClusterInfo, timeout: float = 120) -> list[Any]:
    """``task(argument)`` run once on each node of ``cluster`` (no CPU held), results in node order."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    remote = ray.remote(num_cpus=0, max_retries=0)(task)
    refs = [remote.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n.node_id, soft=False)).remote(argument)
            for n in cluster.nodes]
    return list(ray.get(refs, timeout=timeout))


def check_tracking_uri(uri: str, cluster: ClusterInfo) -> None:
    """A loopback tracking URI never goes to a remote node (it would log to that node itself)."""
    if not cluster.multi_node:
        return
    if is_loopback_uri(uri):
        raise HpoError(
            f"tracking.uri {uri} is a loopback address, which the other {len(cluster.nodes) - 1} node(s) of the Ray "
            f"cluster cannot reach; give the server's cluster address (e.g. http://{cluster.driver_address}:PORT), "
            "or unset tracking.uri and MLFLOW_TRACKING_URI so that the embedded server starts on the head's address"
        )
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file") or (parsed.scheme.startswith("sqlite") and "memory" not in uri):
        raise HpoError(
            f"tracking.uri {uri} is a local store, which trials on other nodes cannot write to; use an MLflow server "
            "every node reaches (http://HOST:PORT), or unset it so that the embedded server starts on the head's address"
        )


def is_loopback_uri(uri: str) -> bool:
    """Whether an http(s) URI names this machine's loopback (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return False
    host = parsed.hostname
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

