"""Pinning ranks to cores: each rank of a job that holds all of a node's cores gets its own; otherwise none."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trainables.distributed import cores_for, run_local


def test_ranks_that_hold_all_cores_get_their_own() -> None:
    assert [cores_for(r, 2, 1, [0, 1], 2) for r in range(2)] == [[0], [1]]
    assert [cores_for(r, 2, 2, [4, 5, 6, 7], 4) for r in range(2)] == [[4, 5], [6, 7]]
    assert cores_for(1, 2, 1, [3, 1], 2) == [1]  # the CPUs this process may use, in the order given


def test_a_cores_hardware_threads_stay_together(monkeypatch: pytest.MonkeyPatch) -> None:
    """With SMT numbered 0-3 then siblings 4-7, a 4-thread rank gets two whole cores, not four halves."""
    from trainables import distributed

    core_of = {0: 0, 1: 1, 2: 2, 3: 3, 4: 0, 5: 1, 6: 2, 7: 3}
    real_read = Path.read_text

    def read_text(self: Path, *args: object, **kwargs: object) -> str:
        if self.parent.name == "topology" and self.parent.parent.name.startswith("cpu"):
            cpu = int(self.parent.parent.name[3:])
            return f"{core_of[cpu]}\n" if self.name == "core_id" else "0\n"
        return real_read(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", read_text)
    order = distributed._by_core(range(8))
    assert order == [0, 4, 1, 5, 2, 6, 3, 7]
    assert [cores_for(r, 2, 4, order, 8) for r in range(2)] == [[0, 4, 1, 5], [2, 6, 3, 7]]


@pytest.mark.parametrize(("local_rank", "local_size", "threads", "available", "node_cpus"), [
    (0, 2, 1, [0, 1, 2, 3], 4),  # 2 of 4 cores: another trial may run beside it
    (0, 1, 1, [0, 1], 2),        # a single one-thread rank on 2 cores
    (0, 4, 1, [0, 1], 4),        # more ranks than cores (Ray told it has 4 CPUs)
    (0, 2, 1, [0, 1], -1.0),     # the node's CPUs are unknown
    (0, 2, 0, [0, 1], 0),        # no thread count
])
def test_a_job_that_may_share_its_node_is_not_pinned(local_rank: int, local_size: int, threads: int,
                                                     available: list[int], node_cpus: float) -> None:
    assert cores_for(local_rank, local_size, threads, available, node_cpus) == []


def _affinity() -> dict[str, object]:
    from trainables import distributed

    distributed.init(1)
    threads = {int(t): sorted(os.sched_getaffinity(int(t))) for t in os.listdir("/proc/self/task")}
    return {"rank": distributed.rank(), "process": sorted(os.sched_getaffinity(0)), "threads": threads}


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="core affinity is Linux-only")
def test_two_real_ranks_filling_the_machine_are_pinned_one_core_each_with_all_their_threads() -> None:
    available = sorted(os.sched_getaffinity(0))
    results = sorted(run_local(_affinity, np=2, threads=1), key=lambda r: r["rank"])
    if len(available) != 2:  # a larger machine: 2 × 1 does not hold it all, so nothing may be pinned
        assert all(r["process"] == available for r in results)
        return
    assert [r["process"] for r in results] == [[available[0]], [available[1]]]
    for r in results:
        assert set(map(tuple, r["threads"].values())) == {tuple(r["process"])}, r  # Horovod's and TF's threads too


# --- which network interface a rank's Gloo uses (pure) ------------------------------------------------------

INTERFACES = {"lo": ["127.0.0.1"], "ens4": ["198.18.0.2"], "ib0": ["10.1.0.2"]}


def test_a_job_across_nodes_uses_the_interface_of_the_nodes_ray_address() -> None:
    from trainables.distributed import choose_nic

    assert choose_nic("198.18.0.2", INTERFACES) == "ens4"
    assert choose_nic("10.1.0.2", INTERFACES) == "ib0"
    assert choose_nic("192.0.2.9", INTERFACES) is None  # no interface carries it: Gloo's own default


def test_a_job_on_one_node_stays_on_loopback() -> None:
    from trainables.distributed import choose_nic

    assert choose_nic("198.18.0.2", INTERFACES, spans_nodes=False) == "lo"


def test_trial_nics_takes_the_first_present_and_names_the_nodes_interfaces_when_none_is() -> None:
    from trainables.distributed import choose_nic
    from trainables.errors import TrialError

    assert choose_nic("198.18.0.2", INTERFACES, allowed=["eth0", "ib0"]) == "ib0"
    with pytest.raises(TrialError) as info:
        choose_nic("198.18.0.2", INTERFACES, allowed=["eth0"])
    assert "trial.nics ['eth0']" in info.value.message and "ens4, ib0, lo" in info.value.message


def test_a_dead_ranks_stderr_gives_its_reason_without_log_prefix_or_stack() -> None:
    from trainables.distributed import first_error_line

    gloo = ("[2026-12-02 02:02:20,177 E 14055 14154] logging.cc:118: Unhandled exception: N4gloo11IoExceptionE. "
            "what(): [/tmp/gloo/transport/tcp/pair.cc:799] connect [127.0.0.1]:944: Connection refused "
            "/venv/lib/python3.11/site-packages/ray/_raylet.so(+0x1812b9a) [0x7f064fa12b9a] ray::operator<<()")
    assert first_error_line(f"noise\n{gloo}\nFatal Python error: Aborted\n") == (
        "what(): [/tmp/gloo/transport/tcp/pair.cc:799] connect [127.0.0.1]:944: Connection refused")
    assert first_error_line("a\nFatal Python error: Segmentation fault\n") == "Fatal Python error: Segmentation fault"
    assert first_error_line("all is well\n") is None
