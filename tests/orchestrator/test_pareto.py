"""Ranking trials: non-dominated sorting against analytic fronts and a brute-force definition, the records
``Campaign.best``/``hpo status`` rank, and the one trial-state enum they read."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from rich.console import Console

from orchestrator.progress import pareto_ranks, pareto_records, ranked_records, render_trials
from orchestrator.state import TrialState, read_json, write_json


def test_two_objectives_both_minimised() -> None:
    points = [(1, 5), (2, 2), (5, 1), (3, 3), (4, 4), (6, 6)]
    assert pareto_ranks(points, ["min", "min"]) == [1, 1, 1, 2, 3, 4]


def test_modes_flip_the_order() -> None:
    points = [(0.9, 0.3), (0.8, 0.2), (0.7, 0.4), (0.95, 0.5)]
    # val_auc max, val_loss min: (0.9, 0.3), (0.8, 0.2) and (0.95, 0.5) trade off; (0.7, 0.4) is dominated by both
    # of the first two
    assert pareto_ranks(points, ["max", "min"]) == [1, 1, 2, 1]
    assert pareto_ranks(points, ["min", "max"]) == [2, 2, 1, 1]  # (0.7, 0.4) now dominates the first two


def test_equal_points_share_a_rank_and_one_objective_is_a_sort() -> None:
    assert pareto_ranks([(1, 1), (1, 1), (2, 0)], ["min", "min"]) == [1, 1, 1]
    assert pareto_ranks([(1, 1), (1, 1), (1, 2)], ["min", "min"]) == [1, 1, 2]
    assert pareto_ranks([(3,), (1,), (2,), (1,)], ["min"]) == [3, 1, 2, 1]
    assert pareto_ranks([], ["min", "max"]) == []


def _brute_force(points: list[tuple[float, ...]], modes: list[str]) -> list[int]:
    """Rank as the longest chain of dominating points above it (the definition, with no peeling)."""
    signed = [[v if m == "min" else -v for v, m in zip(p, modes, strict=True)] for p in points]

    def dominates(a: list[float], b: list[float]) -> bool:
        return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))

    ranks: dict[int, int] = {}

    def rank(i: int) -> int:
        if i not in ranks:
            ranks[i] = 1 + max((rank(j) for j in range(len(points)) if dominates(signed[j], signed[i])), default=0)
        return ranks[i]

    return [rank(i) for i in range(len(points))]


@pytest.mark.parametrize("seed", range(6))
def test_matches_the_definition_on_random_points(seed: int) -> None:
    rng = random.Random(seed)
    n_objectives = 2 + seed % 2
    modes = [rng.choice(["min", "max"]) for _ in range(n_objectives)]
    # few distinct values, so that ties and equal points occur
    points = [tuple(float(rng.randint(0, 6)) for _ in range(n_objectives)) for _ in range(40)]
    assert pareto_ranks(points, modes) == _brute_force(points, modes)


def test_bad_input_names_the_rule() -> None:
    with pytest.raises(ValueError, match="'min' or 'max'"):
        pareto_ranks([(1, 2)], ["min", "maximise"])
    with pytest.raises(ValueError, match="one value per objective"):
        pareto_ranks([(1, 2), (1,)], ["min", "min"])


def _records(*rows: tuple[str, str, list[float | None] | None]) -> dict[str, dict[str, object]]:
    return {tid: {"trial_id": tid, "state": state, "objectives": objectives} for tid, state, objectives in rows}


def test_records_rank_by_front_then_first_objective() -> None:
    records = _records(
        ("a", "FINISHED", [0.80, 0.20]),   # rank 1
        ("b", "STOPPED", [0.90, 0.30]),    # rank 1, better first objective than a
        ("c", "FINISHED", [0.70, 0.25]),   # rank 2 (dominated by a)
        ("d", "FINISHED", [0.85, 0.35]),   # rank 2 (dominated by b), ahead of c by the first objective
        ("e", "FAILED", None),             # never ranked
        ("f", "RUNNING", [0.99, 0.01]),    # not ended: not ranked, however good
        ("g", "FINISHED", [0.95, None]),   # an objective missing
    )
    ranked = pareto_records(records, ["max", "min"], 10)
    assert [(r["trial_id"], r["pareto_rank"]) for r in ranked] == [("b", 1), ("a", 1), ("d", 2), ("c", 2)]
    assert [r["trial_id"] for r in pareto_records(records, ["max", "min"], 3)] == ["b", "a", "d"]
    assert "pareto_rank" not in records["a"]  # copies, the records themselves untouched
    assert ranked_records(records, ["max", "min"], 2) == ranked[:2]
    single = ranked_records(_records(("x", "FINISHED", [0.3]), ("y", "STOPPED", [0.1]), ("z", "FAILED", None)), ["min"], 5)
    assert [r["trial_id"] for r in single] == ["y", "x"]


def test_live_table_footer_names_the_front_for_several_objectives() -> None:
    records = _records(("a", "FINISHED", [0.8, 0.2]), ("b", "FINISHED", [0.9, 0.3]), ("c", "FAILED", None))
    console = Console(record=True, width=200)
    console.print(render_trials(records, ["val_auc", "val_loss"], ["max", "min"], budget=4))
    text = console.export_text()
    assert "3/4 trials done (2 finished, 1 failed)" in text and "Pareto front: 2 trial(s)" in text


def test_trial_states_are_strings_and_say_what_counts() -> None:
    assert [s.value for s in TrialState] == ["PENDING", "RUNNING", "PAUSED", "FINISHED", "STOPPED", "FAILED"]
    assert {s for s in TrialState if s.done} == {TrialState.FINISHED, TrialState.STOPPED, TrialState.FAILED}
    assert {s for s in TrialState if s.scored} == {TrialState.FINISHED, TrialState.STOPPED}
    assert TrialState.of("STOPPED") is TrialState.STOPPED and TrialState.of("TERMINATED") is None
    assert TrialState.FINISHED == "FINISHED" and json.dumps({"state": TrialState.FAILED}) == '{"state": "FAILED"}'
    records = [{"state": s} for s in ["FAILED", "RUNNING", "FINISHED", "FINISHED", "odd"]] + [{}]
    assert list(TrialState.counts(records).items()) == [("RUNNING", 1), ("FINISHED", 2), ("FAILED", 1), ("odd", 1), ("?", 1)]


def test_trials_json_keeps_the_plain_names(tmp_path: Path) -> None:
    path = tmp_path / "trials.json"
    write_json(path, {"t1": {"state": TrialState.STOPPED}, "t2": {"state": TrialState.PAUSED}})
    assert json.loads(path.read_text()) == {"t1": {"state": "STOPPED"}, "t2": {"state": "PAUSED"}}
    assert all(TrialState.of(r["state"]) for r in read_json(path).values())
