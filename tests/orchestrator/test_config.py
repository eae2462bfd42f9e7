"""Campaign-file validation: every bad-input case gets one line naming file, line and field; exit 2."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.config import load_campaign, parse_duration
from orchestrator.schedulers import ASHA
from trainables.errors import HpoError

VALID = """\
name: test-campaign
workload:
  name: lhc_cnn
  data: {path: DATA}
search:
  space:
    learning_rate: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
    conv_blocks: {type: int, low: 1, high: 3}
    optimizer: {type: categorical, choices: [adam, sgd]}
    momentum: {type: float, low: 0.0, high: 0.9, when: {optimizer: sgd}}
  sampler: {name: tpe, n_startup_trials: 2}
  scheduler: {name: asha, grace_period: 1}
  objective: {metric: val_auc, mode: max}
budget: {trials: 4}
trial: {workers: 2, epochs: 3}
"""


@pytest.fixture
def write_campaign(tmp_path: Path) -> Callable[[str], Path]:
    """Write campaign text (``DATA`` replaced by an existing file) and return its path."""
    data = tmp_path / "data.h5"
    data.write_bytes(b"")

    def write(text: str = VALID, name: str = "campaign.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text.replace("DATA", str(data)))
        return path

    return write


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def validate(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code, _, err = run_cli(["validate", str(path), "--quick", *extra], capsys)
    return code, err


def test_valid_file_loads(write_campaign: Callable[..., Path]) -> None:
    campaign = load_campaign(write_campaign(), check_workload_face=False)
    c = campaign.config
    assert c.name == "test-campaign" and c.trial.workers == 2 and c.budget.trials == 4
    assert isinstance(c.search.scheduler, ASHA) and c.search.sampler.name == "tpe"
    assert campaign.metric == "val_auc" and campaign.mode == "max"
    assert campaign.space.searched == ["learning_rate", "conv_blocks", "optimizer", "momentum"]
    assert Path(c.workload.data.path).is_absolute()


def test_valid_file_cli_summary(write_campaign: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["validate", str(write_campaign()), "--quick"], capsys)
    assert code == 0, err
    assert "test-campaign" in out and "momentum" in out and "optimizer = sgd" in out and "valid campaign file" in out


def test_models_are_frozen(write_campaign: Callable[..., Path]) -> None:
    c = load_campaign(write_campaign(), check_workload_face=False).config
    with pytest.raises(Exception, match="frozen"):
        c.trial.workers = 3  # type: ignore[misc]


def test_overrides_apply_with_types(write_campaign: Callable[..., Path]) -> None:
    c = load_campaign(
        write_campaign(), ["trial.workers=4", "search.sampler.name=cmaes", "budget.time=1h30m", "seed=3"],
        check_workload_face=False,
    ).config
    assert c.trial.workers == 4 and c.search.sampler.name == "cmaes" and c.budget.time == 5400 and c.seed == 3


def test_shorthand_sampler_and_scheduler_names(write_campaign: Callable[..., Path]) -> None:
    text = VALID.replace("sampler: {name: tpe, n_startup_trials: 2}", "sampler: random").replace(
        "scheduler: {name: asha, grace_period: 1}", "scheduler: median"
    )
    c = load_campaign(write_campaign(text), check_workload_face=False).config
    assert c.search.sampler.name == "random" and c.search.scheduler.name == "median"


def test_space_from_separate_file(write_campaign: Callable[..., Path], tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("lr: {type: float, low: 0.1, high: 0.01}\n")
    start = VALID.index("  space:\n")
    end = VALID.index("  sampler:")
    text = VALID[:start] + f"  space: {space}\n" + VALID[end:]
    with pytest.raises(HpoError) as info:
        load_campaign(write_campaign(text), check_workload_face=False)
    assert info.value.message.startswith(f"{space}:1: lr: `low <= high` must hold")


@pytest.mark.parametrize(
    ("value", "seconds"), [("90s", 90), ("45m", 2700), ("2h", 7200), ("1h30m", 5400), ("1d", 86400), (600, 600)]
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


# --- every bad-input case of the issue, each its own test ------------------------------------------------


def expect_error(
    write_campaign: Callable[..., Path], capsys: pytest.CaptureFixture[str], text: str, *fragments: str, extra: tuple[str, ...] = ()
) -> str:
    path = write_campaign(text)
    code, err = validate(path, capsys, *extra)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    message = lines[0]
    assert message.startswith("error: ")
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_yaml_syntax_error(write_campaign: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    message = expect_error(write_campaign, capsys, VALID.replace("budget: {trials: 4}", "budget: {trials: 4"), "YAML syntax error")
    assert "campaign.yaml:" in message


def test_duplicate_key(write_campaign: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    expect_error(write_campaign, capsys, VALID + "budget: {trials: 5}\n", "campaign.yaml:16: budget: duplicate key (first written on line 14)")


def test_unknown_top_level_key(write_campaign: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    expect_error(write_campaign, capsys, VALID + "concurency: 2\n", "campaign.yaml:16: concurency: unknown key", "concurrency")


def test_unknown_nested_key(write_campaign: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    expect_error(
        write_campaign, capsys, VALID.replace("trial: {workers: 2, epochs: 3}", "trial: {workers: 2, epoch: 3}"),
        "campaign.yaml:15: trial.epoch: unknown key", "epochs",
    )


def test_unknown_sampler_option(write_campaign: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    expect_error(
        write_campaign, capsys, VALID.replace("n_startup_trials: 2", "n_startup: 2"),
        "campaign.yaml:11: search.sampler.n_startup: unknown key", "sampler 'tpe' accepts", "n_startup_trials",
    )


def test_missing_required_key(write_campaign: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    expect_error(write_campaign, capsys, VALID.replace("budget: {trials: 4}\n", ""), "budget: required key is missing")


def test_missing_nested_required_key(write_campaign: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    expect_error(
        write_campaign, capsys, VALID.replace("objective: {metric: val_auc, mode: max}", "objective: {metric: val_auc}"),
        "search.objective[0].mode: required key is missing",
    )


def test_wrong_type(write_campaign: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    expect_error(
        write_campaign, capsys, VALID.replace("epochs: 3", "epochs: three"),
        "campaign.yaml:15: trial.epochs:", "valid integer", "'three'",
    )


def test_wrong_mode_value(write_campaign: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    expect_error(
        write_campaign, capsys, VALID.replace("mode: max", "mode: maximise"), "search.objective[0].mode:", "'min' or 'max'"
    )


def test_low_greater_than_high(write_campaign: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    expect_error(
        write_campaign, capsys, VALID.replace("{type: int, low: 1, high: 3}", "{type: int, low: 3, high: 1}"),
        "campaign.yaml:8: search.space.conv_blocks: `low <= high` must hold, but got (low=3, high=1)",
    )


def test_log_with_nonpositive_low(write_campaign: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    expect_error(
        write_campaign, capsys, VALID.replace("low: 1.0e-4, high: 1.0e-2, log: true", "low: 0.0, high: 1.0e-2, log: true"),
        "campaign.yaml:7: search.space.learning_rate: `log: true` needs `low > 0`, but got (low=0.0)",
    )


def test_step_not_dividing_range(write_campaign: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    expect_error(
        write_campaign, capsys, VALID.replace("{type: int, low: 1, high: 3}", "{type: int, low: 1, high: 8, step: 2}"),
        "search.space.conv_blocks: `step` must divide `high - low` exactly", "use high=7",
    )


def test_empty_categorical(write_campaign: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    expect_error(
        write_campaign, capsys, VALID.replace("choices: [adam, sgd]", "choices: []").replace(", when: {optimizer: sgd}", ""),
        "campaign.yaml:9: search.space.optimizer: `choices` must list at least one value",
    )


def test_condition_on_missing_parameter(write_campaign: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    expect_error(
        write_campaign, capsys, VALID.replace("when: {optimizer: sgd}", "when: {optimiser: sgd}"),
        "campaign.yaml:10: search.space.momentum.when.optimiser: condition on 'optimiser', which is not a parameter",
        "valid names are",
    )


def test_condition_on_impossible_value(write_campaign: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    expect_error(
        write_campaign, capsys, VALID.replace("when: {optimizer: sgd}", "when: {optimizer: SGD}"),
        "search.space.momentum.when.optimizer: 'optimizer' can never be 'SGD'; its values are ['adam', 'sgd']",
    )


def test_circular_conditions(write_campaign: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    text = VALID.replace(
        "optimizer: {type: categorical, choices: [adam, sgd]}",
        "optimizer: {type: categorical, choices: [adam, sgd], when: {momentum: 0.5}}",
    )
    expect_error(write_campaign, capsys, text, "circular condition", "optimizer -> momentum -> optimizer")


def test_unknown_sampler(write_campaign: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    expect_error(
        write_campaign, capsys, VALID.replace("name: tpe", "name: bayes"),
        "campaign.yaml:11: search.sampler: unknown sampler 'bayes'; valid names are tpe, random, grid, cmaes, gp, qmc, nsga2",
    )


def test_unknown_scheduler(write_campaign: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    expect_error(
        write_campaign, capsys, VALID.replace("name: asha", "name: bohb"),
        "search.scheduler: unknown scheduler 'bohb'; valid names are fifo, asha, hyperband, median, pbt",
    )


def test_unknown_workload(write_campaign: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    expect_error(
        write_campaign, capsys, VALID.replace("name: lhc_cnn", "name: resnet"),
        "campaign.yaml:3: workload.name: unknown workload 'resnet'; valid names are lhc_cnn, cosmoflow, cosmogan",
    )


def test_unknown_workload_module_path(write_campaign: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    expect_error(
        write_campaign, capsys, VALID.replace("name: lhc_cnn", "name: my_lab.models.nope"),
        "workload.name: workload module 'my_lab.models.nope' cannot be found",
    )


def test_nsga2_with_one_objective(write_campaign: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    expect_error(
        write_campaign, capsys,
        VALID.replace("sampler: {name: tpe, n_startup_trials: 2}", "sampler: nsga2").replace("{name: asha, grace_period: 1}", "fifo"),
        "search: sampler 'nsga2' optimises several objectives, but got one (val_auc)",
    )


def test_single_objective_sampler_with_several_objectives(write_campaign: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    text = VALID.replace("sampler: {name: tpe, n_startup_trials: 2}", "sampler: cmaes").replace(
        "{name: asha, grace_period: 1}", "fifo"
    ).replace("objective: {metric: val_auc, mode: max}", "objective: [{metric: val_auc, mode: max}, {metric: hpo.core_seconds, mode: min}]")
    expect_error(write_campaign, capsys, text, "sampler 'cmaes' handles one objective, but got 2")


def test_scheduler_with_several_objectives(write_campaign: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    text = VALID.replace("objective: {metric: val_auc, mode: max}", "objective: [{metric: val_auc, mode: max}, {metric: val_loss, mode: min}]")
    expect_error(write_campaign, capsys, text, "scheduler 'asha' stops trials on one metric, but got 2 objectives", "fifo")


def test_workers_below_one(write_campaign: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    expect_error(
        write_campaign, capsys, VALID.replace("workers: 2", "workers: 0"),
        "campaign.yaml:15: trial.workers: Input should be greater than or equal to 1",
    )


def test_negative_trial_budget(write_campaign: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    expect_error(
        write_campaign, capsys, VALID.replace("trials: 4", "trials: -3"),
        "campaign.yaml:14: budget.trials: Input should be greater than or equal to 1",
    )


def test_negative_time_budget(write_campaign: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    expect_error(
        write_campaign, capsys, VALID.replace("trials: 4", "trials: 4, time: -10m"), "budget.time:", "duration"
    )


def test_grace_period_beyond_epochs(write_campaign: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    expect_error(
        write_campaign, capsys, VALID.replace("grace_period: 1", "grace_period: 5"),
        "search.scheduler.grace_period (5) exceeds trial.epochs (3)",
    )


def test_missing_data_file(write_campaign: Callable[..., Path], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    text = VALID.replace("data: {path: DATA}", f"data: {{path: {tmp_path / 'nope.h5'}}}")
    code, _, err = run_cli(["validate", str(write_campaign(text)), "--quick"], capsys)
    assert code == 2 and "campaign.yaml:4: workload.data.path: data file" in err and "hpo data generate" in err


def test_bad_split(write_campaign: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    expect_error(
        write_campaign, capsys, VALID.replace("data: {path: DATA}", "data: {path: DATA, split: [0.8, 0.3, 0.1]}"),
        "workload.data: split fractions must sum to 1",
    )


def test_bad_campaign_name(write_campaign: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    expect_error(write_campaign, capsys, VALID.replace("name: test-campaign", "name: 'my campaign/1'"), "campaign.yaml:1: name:")


def test_parameter_both_fixed_and_searched(write_campaign: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    expect_error(
        write_campaign, capsys, VALID.replace("data: {path: DATA}", "data: {path: DATA}\n  params: {conv_blocks: 2}"),
        "workload.params.conv_blocks: also in search.space",
    )


def test_bad_override_is_reported_as_override(write_campaign: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    expect_error(write_campaign, capsys, VALID, "--set trial.workers=0: trial.workers:", extra=("--set", "trial.workers=0"))
    expect_error(write_campaign, capsys, VALID, "--set 'trial.workers': expected PATH=VALUE", extra=("--set", "trial.workers"))


def test_missing_campaign_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_cli(["validate", str(tmp_path / "nope.yaml")], capsys)
    assert code == 2 and "nope.yaml: campaign file not found" in err


def test_not_a_mapping(write_campaign: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    expect_error(write_campaign, capsys, "- just\n- a list\n", "a campaign file must be a YAML mapping")


def test_grid_sampler_needs_steps(write_campaign: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    expect_error(
        write_campaign, capsys, VALID.replace("name: tpe, n_startup_trials: 2", "name: grid"),
        ["search.space.learning_rate: the grid sampler cannot enumerate", "the grid sampler needs"][1],
    )


def test_pbt_mutates_only_searched_parameters(write_campaign: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    text = VALID.replace("{name: asha, grace_period: 1}", "{name: pbt, mutate: [dropout]}")
    expect_error(write_campaign, capsys, text, "search.scheduler.mutate: 'dropout' is not a searched parameter")


@pytest.mark.parametrize("path", sorted(Path(__file__).parents[2].joinpath("search_spaces").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_search_spaces_are_valid(path: Path) -> None:
    """Every campaign we ship validates against its workload (data files are made by the user)."""
    loaded = load_campaign(path, [], check_data=False, check_workload_face=True)
    assert loaded.config.name and loaded.config.workload.name in ("lhc_cnn", "cosmoflow", "cosmogan")
