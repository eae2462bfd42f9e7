"""Distributed state: the ONLY module that imports Horovod (STYLE.md, convention 5).

Horovod is the part of the stack most likely to be replaced, so everything else talks to this small
interface: :func:`init`, :func:`rank`/:func:`size`/:func:`local_rank`, :func:`distributed_tape`,
:func:`broadcast_variables`, :func:`allreduce_metrics`, :func:`barrier`, and two launchers:
:func:`run_local` (N Gloo ranks on this machine, for ``hpo train``) and :class:`RayWorkers` (ranks as
Ray actors in the current placement group, for campaigns).

Everything works with world size 1 and no launcher: :func:`init` then initialises a one-rank Horovod
(Gloo), so the same training code runs under ``python script.py``, ``hpo train --workers N`` and Ray.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trainables  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
from trainables.errors import HpoError, TrialError

if TYPE_CHECKING:
    import tensorflow as tf

_initialised = False


def _hvd() -> Any:
    import horovod.tensorflow as hvd

    return hvd


def init(threads: int | None = None) -> None:
    """Initialise Horovod and TensorFlow's threading for this rank (idempotent).

    Args:
        threads: TensorFlow intra-op threads, i.e. the cores this rank owns. Two single-threaded ranks
            beat one two-threaded rank on a 2-core node (STACK.md), so campaigns pass
            ``cpus_per_worker``. Inter-op parallelism is set to 1. Must run before any TensorFlow op.
    """
    global _initialised
    if _initialised:
        return
    import tensorflow as tf

    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(int(threads))
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass  # TensorFlow already ran an op in this process (a warm worker): keep its settings
    hvd = _hvd()
    hvd.init()
    if threads:
        bind_cores(int(threads))
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        gpu = gpus[hvd.local_rank() % len(gpus)]
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
            tf.config.set_visible_devices(gpu, "GPU")
        except RuntimeError:
            pass
    _initialised = True


def cores_for(local_rank: int, local_size: int, threads: int, available: Sequence[int], node_cpus: float) -> list[int]:
    """The cores rank ``local_rank`` of this node is pinned to, or ``[]`` to leave the scheduler in charge.

    Ranks are pinned only when this job's ranks on the node hold all of its CPUs (``local_size × threads`` equal
    to ``node_cpus``, the CPUs the node offers: Ray's count for the node, else the cores this process may use)
    and there are that many cores: then no other job shares them, and each rank gets its own ``threads``
    consecutive CPUs of ``available``, in the order given (:func:`_by_core` puts a core's hardware threads
    next to each other, so a rank gets whole cores). Otherwise (several trials per node, oversubscription)
    pinning could stack two jobs on the same cores, so nothing is pinned.
    """
    cores = list(available)
    need = local_size * threads
    if threads < 1 or local_size < 1 or need != node_cpus or need > len(cores) or not 0 <= local_rank < local_size:
        return []
    return cores[local_rank * threads:(local_rank + 1) * threads]


def bind_cores(threads: int) -> list[int]:
    """Pin this rank (every thread of the process) to its own cores where :func:`cores_for` says so.

    A rank with one intra-op thread still runs two busy threads (TensorFlow's inter-op thread and its
    intra-op pool); unpinned, two such ranks on two cores take turns on both, and every allreduce waits for
    the slower. Pinned, 2 ranks × 1 thread ran at 1.17-1.21× the speed of 1 rank × 2 threads on 2 cores,
    unpinned at 0.85-0.97× in the same run (benchmarks/training_throughput.py). ``HPO_BIND_CORES=0`` turns
    it off. Returns the cores, ``[]`` where nothing was pinned.
    """
    if os.environ.get("HPO_BIND_CORES", "1") == "0" or not hasattr(os, "sched_setaffinity"):
        return []
    hvd = _hvd()
    available = _by_core(os.sched_getaffinity(0))
    cores = cores_for(int(hvd.local_rank()), int(hvd.local_size()), threads, available, _node_cpus(len(available)))
    if not cores:
        return []
    for task in os.listdir("/proc/self/task"):  # threads already running (Horovod's, TensorFlow's) and the main one
        with contextlib.suppress(OSError):  # a thread that just ended
            os.sched_setaffinity(int(task), cores)
    return cores


def _by_core(cpus: Iterable[int]) -> list[int]:
    """CPU numbers ordered by (package, physical core, number): the hardware threads of a core side by side.

    Linux often numbers the second threads of all cores after the first ones (0-3 and their siblings 4-7);
    consecutive blocks of the plain order would then give two ranks the same physical cores.
    """
    def key(cpu: int) -> tuple[int, int, int]:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            return int((topology / "physical_package_id").read_text()), int((topology / "core_id").read_text()), cpu
        except (OSError, ValueError):
            return 0, cpu, cpu

    return sorted(cpus, key=key)


def _node_cpus(available: int) -> float:
    """The CPUs this node offers to jobs: Ray's count for this node inside a Ray worker, else ``available``."""
    ray = sys.modules.get("ray")  # a Ray worker has imported it; elsewhere it need not be imported at all
    try:
        if ray is not None and ray.is_initialized():
            node = ray.get_runtime_context().get_node_id()
            return float(next(n["Resources"].get("CPU", 0) for n in ray.nodes() if n["NodeID"] == node))
    except Exception:  # no Ray, or its state cannot be read: treat the node as shared, pin nothing
        return -1.0
    return float(available)


def rank() -> int:
    """This rank's index (0 when Horovod is not initialised)."""
    return int(_hvd().rank()) if _initialised else 0


def size() -> int:
    """Number of ranks (1 when Horovod is not initialised)."""
    return int(_hvd().size()) if _initialised else 1


def local_rank() -> int:
    """This rank's index on its node."""
    return int(_hvd().local_rank()) if _initialised else 0


def is_chief() -> bool:
    """Rank 0: the one that writes checkpoints, logs and plots."""
    return rank() == 0


def distributed_tape(tape: tf.GradientTape) -> tf.GradientTape:
    """Wrap a gradient tape so that ``tape.gradient`` averages gradients over the ranks."""
    return _hvd().DistributedGradientTape(tape)


def broadcast_variables(variables: Sequence[tf.Variable], root: int = 0) -> None:
    """Copy ``variables`` from rank ``root`` to every rank (model and optimizer state after step 1)."""
    if size() > 1 and variables:
        _hvd().broadcast_variables(list(variables), root_rank=root)


def allreduce_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """Average a dict of scalars over the ranks in one collective; every rank gets the same dict."""
    if size() == 1 or not metrics:
        return {k: float(v) for k, v in metrics.items()}
    import tensorflow as tf

    names = sorted(metrics)
    values = tf.constant([float(metrics[n]) for n in names], dtype=tf.float64)
    averaged = _hvd().allreduce(values, op=_hvd().Average, name="hpo_metrics").numpy()
    return {n: float(v) for n, v in zip(names, averaged, strict=True)}


def average_variables(variables: Sequence[tf.Variable]) -> None:
    """Replace each variable by its average over the ranks (e.g. batch-norm moving statistics, which
    every rank updates from its own batches and gradient averaging never touches)."""
    if size() == 1:
        return
    hvd = _hvd()
    for index, variable in enumerate(variables):
        variable.assign(hvd.allreduce(variable, op=hvd.Average, name=f"hpo_avg_{index}"))


def allreduce_sum(values: Any, name: str) -> Any:
    """Sum a NumPy array over the ranks (for counts and histograms); returns a NumPy array."""
    if size() == 1:
        return values
    import tensorflow as tf

    return _hvd().allreduce(tf.constant(values), op=_hvd().Sum, name=name).numpy()


def allgather(values: Any, name: str) -> Any:
    """Concatenate NumPy arrays from every rank along axis 0 (e.g. validation scores for a ROC)."""
    if size() == 1:
        return values
    import tensorflow as tf

    return _hvd().allgather(tf.constant(values), name=name).numpy()


def barrier() -> None:
    """Wait until every rank gets here."""
    if size() > 1:
        _hvd().join()


def build_info() -> dict[str, str] | None:
    """Horovod's version and what it was built with, or ``None`` if Horovod is not installed."""
    try:
        import horovod
        import horovod.tensorflow as hvd
    except ImportError:
        return None
    frameworks = ["TensorFlow"]
    controllers = [name for name, built in (("Gloo", hvd.gloo_built()), ("MPI", hvd.mpi_built())) if built]
    ops = [name for name, built in (("NCCL", hvd.nccl_built()), ("DDL", hvd.ddl_built()), ("CCL", hvd.ccl_built())) if built]
    return {
        "version": horovod.__version__, "frameworks": ", ".join(frameworks),
        "controllers": ", ".join(controllers) or "none", "tensor_operations": ", ".join(ops) or "CPU only",
    }


# --- launchers -------------------------------------------------------------------------------------------


def run_local(fn: Callable[..., Any], *, np: int, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None,
              threads: int | None = None) -> list[Any]:
    """Run ``fn(*args, **kwargs)`` on ``np`` Gloo ranks on this machine; return every rank's result.

    With ``np == 1`` it runs in this process (no launcher). Otherwise Horovod's own launcher starts
    ``np`` processes; an exception in any rank is raised here with that rank's message.
    """
    env = {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    os.environ.update(env)
    if np == 1:
        init(threads)
        return [fn(*args, **(kwargs or {}))]
    from horovod.runner import run as hvd_run

    try:
        return list(hvd_run(fn, args=tuple(args), kwargs=dict(kwargs or {}), num_proc=np, hosts=f"localhost:{np}",
                            use_gloo=True, verbose=0))
    except RuntimeError as exc:
        raise TrialError(f"a Horovod rank failed: {_innermost(exc)}") from exc


def _innermost(exc: BaseException) -> str:
    text = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in reversed(text):
        if not line.startswith(("File ", "^", "~", "Traceback")):
            return line[-500:]
    return type(exc).__name__


#: Lines of a dead rank's stderr that say why it died, most telling first (Gloo's C++ exceptions end in
#: ``what():``; signals and Python's fatal errors name themselves).
_DEATH_MARKERS = ("what():", "Fatal Python error", "Error:", "error:", "SIGSEGV", "SIGABRT", "SIGBUS", "Aborted",
                  "Unable to", "Connection", "Killed")
_STACK_FRAME = re.compile(r"\s/\S+\.so[.\d]*\(")


@dataclass(frozen=True)
class RankPlacement:
    """Where one rank of a job runs: recorded on the trial's MLflow run and named in its errors."""

    rank: int
    host: str  # the node's hostname, as the rank sees it
    address: str  # the node's Ray address: what the other ranks reach it by
    interface: str | None  # the network interface its Gloo (and NCCL) traffic uses; None: Gloo's default
    pid: int
    node_id: str
    log: str | None = None  # the rank's stderr file on its node (Ray's worker log)

    def describe(self) -> str:
        """``node2 198.18.0.2 eth0 pid 1234``."""
        return f"{self.host} {self.address} {self.interface or '-'} pid {self.pid}"


def choose_nic(address: str, interfaces: Mapping[str, Sequence[str]], allowed: Sequence[str] = (),
               spans_nodes: bool = True, host: str = "") -> str | None:
    """The network interface a rank's Gloo should use (pure: ``interfaces`` maps names to IPv4 addresses).

    - ``allowed`` (``trial.nics``): the first of them that exists on this node; an error when none does.
    - A job on one node: loopback, as Horovod itself chooses.
    - A job across nodes: the interface that carries this node's Ray address, which the other nodes reach.
      Horovod would resolve the hostname instead (loopback or nothing on many clusters) and give every rank
      the same interface name (which differs between nodes on many clusters); both failed here (STACK.md).
      ``None`` when no interface carries it (Gloo then falls back to the hostname).
    """
    if allowed:
        for name in allowed:
            if name in interfaces:
                return name
        raise TrialError(
            f"trial.nics {list(allowed)}: none of these interfaces exists on {host or 'the node'} ({address}), "
            f"which has {', '.join(sorted(interfaces))}; list one of those, or drop trial.nics to use the interface "
            "that carries each node's Ray address"
        )
    if not spans_nodes:
        return next((name for name, addrs in interfaces.items() if "127.0.0.1" in addrs), None)
    return next((name for name, addrs in interfaces.items() if address in addrs), None)


def first_error_line(text: str) -> str | None:
    """The line of a dead process's stderr that says why it died, or ``None``.

    From a C++ exception's line, only its ``what():`` message is kept, without Ray's log prefix before it and
    the stack trace glued after it.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for marker in _DEATH_MARKERS:
        for line in lines:
            if marker in line:
                if marker == "what():":
                    line = _STACK_FRAME.split(line[line.index(marker):], maxsplit=1)[0].strip()
                return line[:500]
    return None


def _rank_network(nics: Sequence[str], spans_nodes: bool, timeout_s: int) -> RankPlacement:
    """On each rank, before Horovod starts: choose its interface, and say where it runs."""
    import socket

    import psutil
    import ray

    address = ray.util.get_node_ip_address()
    interfaces = {name: [a.address for a in addrs if a.family == socket.AF_INET]
                  for name, addrs in psutil.net_if_addrs().items()}
    nic = choose_nic(address, interfaces, nics, spans_nodes, host=socket.gethostname())
    for variable in ("HOROVOD_GLOO_IFACE", "NCCL_SOCKET_IFNAME"):
        if nic:
            os.environ[variable] = nic
        else:
            os.environ.pop(variable, None)
    os.environ["HOROVOD_GLOO_TIMEOUT_SECONDS"] = str(int(timeout_s))
    try:
        log: str | None = os.readlink("/proc/self/fd/2")
    except OSError:
        log = None
    return RankPlacement(rank=int(os.environ.get("HOROVOD_RANK", 0)), host=socket.gethostname(), address=address,
                         interface=nic, pid=os.getpid(), node_id=ray.get_runtime_context().get_node_id(),
                         log=log if log and log.startswith("/") else None)


def _tail(path: str, size: int = 64 * 1024) -> str:
    """The end of a file on this node (a dead rank's stderr)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - size))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _process_state(pid: int) -> str | None:
    """psutil's status of process ``pid`` on this node ("stopped", "zombie", "running", ...), or "gone"."""
    import psutil

    try:
        return str(psutil.Process(pid).status())
    except psutil.NoSuchProcess:
        return "gone"


def _kill_process(pid: int) -> None:
    """SIGKILL process ``pid`` on this node (a stopped process cannot handle anything gentler)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


class RayWorkers:
    """Horovod ranks as Ray actors in the current placement group (``horovod.ray.RayExecutor``).

    Used from a Ray Tune trainable: :meth:`start` once, :meth:`run` per epoch or setup, :meth:`shutdown`
    when the actor goes. The ranks are warm processes: a campaign reuses them across trials.

    The ranks may sit on different nodes. Each chooses its own network interface (:func:`choose_nic`) before
    Horovod starts, and :attr:`placement` says where each runs. When a rank fails, :meth:`run` raises a
    :class:`TrialError` naming the rank, its host and address, and the first telling line of its error: the
    Python exception, or for a rank that died (a Gloo abort, a signal) the line of its stderr that says why,
    fetched from its node, or that its node was lost.
    """

    def __init__(self, num_workers: int, cpus_per_worker: float = 1, gpus_per_worker: float = 0, timeout_s: int = 120,
                 nics: Sequence[str] = ()) -> None:
        self.num_workers = num_workers
        self.cpus_per_worker = cpus_per_worker
        self.gpus_per_worker = gpus_per_worker
        self.timeout_s = timeout_s
        self.nics = tuple(nics)
        self.placement: list[RankPlacement] = []
        self._executor: Any = None

    def start(self) -> None:
        """Start the ranks (Ray actors), choose their interfaces; Horovod initialises on the first trial."""
        import ray
        from horovod.ray import RayExecutor

        # nics={"lo"} keeps Horovod from probing interfaces between hosts by hostname (which fails where names
        # resolve to loopback or not at all); every rank then sets its own interface in _rank_network
        settings = RayExecutor.create_settings(timeout_s=self.timeout_s, nics={"lo"})
        kwargs: dict[str, Any] = {"num_workers": self.num_workers, "cpus_per_worker": self.cpus_per_worker,
                                  "use_current_placement_group": True}
        if self.gpus_per_worker:
            kwargs.update(use_gpu=True, gpus_per_worker=self.gpus_per_worker)
        self._executor = RayExecutor(settings, **kwargs)
        self._executor.start(extra_env_vars={"HOROVOD_GLOO_TIMEOUT_SECONDS": str(int(self.timeout_s))})
        nodes = set(ray.get([worker.node_id.remote() for worker in self._workers()]))
        self.placement = self.run(_rank_network, args=[self.nics, len(nodes) > 1, self.timeout_s])

    def _workers(self) -> list[Any]:
        adapter = getattr(self._executor, "adapter", None)
        return list(getattr(adapter, "workers", []) or [])

    def run(self, fn: Callable[..., Any], args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, *,
            timeout: float | None = None, what: str = "") -> list[Any]:
        """Run ``fn`` on every rank; return the results in rank order.

        Args:
            timeout: seconds every rank has to finish (None: no deadline). A rank that misses it is taken for
                hung: the ranks still running are killed, and the error names them.
            what: what ``fn`` does, for that error ("epoch 3").

        Raises:
            TrialError: a rank raised, died or missed the deadline; the message names it (see the class docstring).
        """
        import ray

        if self._executor is None:
            raise HpoError("RayWorkers.run called before start()")
        refs = self._executor.run_remote(fn, args=list(args or []), kwargs=dict(kwargs or {}))
        try:
            return list(ray.get(refs, timeout=timeout))
        except ray.exceptions.GetTimeoutError:
            raise TrialError(self._hung(refs, timeout or 0, what)) from None
        except ray.exceptions.RayError as exc:
            raise TrialError(self._diagnose(refs, exc)) from exc

    def _hung(self, refs: Sequence[Any], timeout: float, what: str) -> str:
        """One line about ranks that missed a deadline: the stopped or dead ones first (the others wait for them in
        a collective); then kill every rank still running, so that the retry starts on fresh ones."""
        import ray

        _, waiting = ray.wait(list(refs), num_returns=len(refs), timeout=0)
        late = [i for i, ref in enumerate(refs) if ref in waiting]
        states = self._on_nodes(_process_state, late)
        culprits = [i for i in late if states.get(i) not in ("running", "sleeping", "disk-sleep", None)]
        blamed = culprits or late
        described = ", ".join(f"{self._where(i)} (pid {self.placement[i].pid if i < len(self.placement) else '?'}, "
                              f"{states.get(i) or 'state unknown'})" for i in blamed)
        others = [i for i in late if i not in blamed]
        waiting_text = f"; rank(s) {', '.join(map(str, others))} waited for it" if others else ""
        self._on_nodes(_kill_process, late)
        return (f"{what or 'the ranks'} did not finish within {timeout:g} s (trial.epoch_timeout): "
                f"{described}{waiting_text}")

    def _on_nodes(self, fn: Callable[[int], Any], ranks: Sequence[int]) -> dict[int, Any]:
        """``fn(pid)`` for each rank in ``ranks``, run on that rank's node; rank -> result (None where it failed)."""
        return {i: self._on_node(i, fn, self.placement[i].pid) for i in ranks if i < len(self.placement)}

    def _on_node(self, index: int, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` run on the node of rank ``index``; None when that node cannot answer."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        task = ray.remote(num_cpus=0, max_retries=0)(fn).options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(self.placement[index].node_id, soft=False))
        try:
            return ray.get(task.remote(*args), timeout=30)
        except Exception:  # the node went away while asked
            return None

    def _diagnose(self, refs: Sequence[Any], first: BaseException) -> str:
        """One line: which rank failed first, where, and why (a death beats the errors it caused in its peers)."""
        import ray

        died: list[tuple[int, BaseException]] = []
        raised: list[tuple[int, BaseException]] = []
        for index, ref in enumerate(refs):
            ready, _ = ray.wait([ref], timeout=2)
            if not ready:
                continue  # still blocked in a collective: a bystander
            try:
                ray.get(ref)
            except ray.exceptions.RayActorError as exc:
                died.append((index, exc))
            except ray.exceptions.RayError as exc:
                raised.append((index, exc))
        if died:
            index, death = died[0]
            return f"{self._where(index)} died: {self._death_reason(index, death)}"
        if raised:
            index, error = raised[0]
            cause = getattr(error, "cause", None)  # a RayTaskError carries the rank's own exception
            return f"{self._where(index)}: {_innermost(cause if isinstance(cause, BaseException) else error)}"
        return _innermost(first)

    def _where(self, index: int) -> str:
        if index < len(self.placement):
            p = self.placement[index]
            return f"rank {index} on {p.host} ({p.address})"
        return f"rank {index}"

    def _death_reason(self, index: int, exc: BaseException) -> str:
        """The first telling line of the dead rank's stderr, read on its node; or that the node is gone."""
        import ray

        if index >= len(self.placement):
            return _innermost(exc)
        p = self.placement[index]
        if not any(n["NodeID"] == p.node_id and n["Alive"] for n in ray.nodes()):
            return f"its node {p.host} ({p.address}) was lost"
        if p.log:
            line = first_error_line(self._on_node(index, _tail, p.log) or "")
            if line:
                return line
        return _innermost(exc)

    def shutdown(self) -> None:
        """Stop the ranks, also ranks stuck in a collective with a dead peer (they are killed)."""
        import ray

        if self._executor is not None:
            workers = self._workers()
            self._executor.shutdown()
            for worker in workers:
                with contextlib.suppress(Exception):
                    ray.kill(worker)
            self._executor = None
            self.placement = []
