"""Campaign hardening: NAME arguments are names, never paths; `hpo stop` signals only the verified driver; the
stored campaign file means the same files from any directory. No Ray: the driver is a small stand-in process.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from orchestrator.cli import main
from orchestrator.config import absolute_location, load_campaign, name_problem
from orchestrator.runner import request_stop
from orchestrator.state import CampaignDir
from tracking.procs import record
from trainables.errors import HpoError

Hpo = Callable[..., subprocess.CompletedProcess[str]]

BAD_NAMES = ["../x", "a/b", ".", "..", "/etc", "", "x\n", "-x"]

#: Every command taking a campaign NAME, with what else it requires.
NAME_COMMANDS = {
    "status": [], "stop": [], "resume": [], "extend": ["--trials", "1"], "best": [],
    "promote": ["--model", "m"],
}


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


# --- NAME ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
@pytest.mark.parametrize("command", NAME_COMMANDS)
def test_every_name_argument_is_validated(command: str, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    code, out, err = run_cli([command, "--campaigns-dir", str(tmp_path / "campaigns"), *NAME_COMMANDS[command],
                              "--", name], capsys)
    assert code == 2, out + err
    assert err == f"error: campaign NAME {name_problem(name)}\n"
    assert repr(name) in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # nothing created: no campaigns dir, no .hpo


def test_a_bad_name_from_the_shell_is_one_line(hpo: Hpo, tmp_path: Path) -> None:
    done = hpo("stop", "../x", "--campaigns-dir", str(tmp_path / "c"), timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: campaign NAME must be letters") and done.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_one_rule_for_the_file_and_the_argument(tmp_path: Path) -> None:
    for good in ("lhc-tpe", "a.b_c-1", "X"):
        assert name_problem(good) is None
        assert CampaignDir.of(good, tmp_path).root == tmp_path / good
    for bad in BAD_NAMES:
        assert name_problem(bad) is not None
        with pytest.raises(HpoError, match="campaign NAME must be"):
            CampaignDir.existing(bad, tmp_path)
    text = "name: ok\nworkload: {name: lhc_cnn, data: {path: x.h5}}\nsearch: {space: {}, objective: {metric: m, mode: max}}\n"
    path = tmp_path / "c.yaml"
    path.write_text(text.replace("name: ok", "name: '../x'"))
    with pytest.raises(HpoError, match=r"name: must be letters.*but got '\.\./x'"):
        load_campaign(path, check_data=False, check_workload_face=False)


# --- hpo stop ---------------------------------------------------------------------------------------------------


@pytest.fixture
def held(tmp_path: Path) -> Iterator[CampaignDir]:
    """A running campaign whose driver lock this process holds."""
    cdir = CampaignDir.of("held", tmp_path)
    cdir.acquire()
    cdir.update_state(status="running")
    yield cdir
    cdir.release()


def test_acquire_records_who_the_driver_is(held: CampaignDir) -> None:
    state = held.state()
    me = record(state["driver_pid"])
    assert state["driver_create_time"] == me.create_time and tuple(state["driver_cmdline"]) == me.cmdline


@pytest.mark.parametrize("recycled", ["other start time", "other command line"])
def test_stop_leaves_a_recycled_driver_pid_alone(held: CampaignDir, stranger: subprocess.Popen[bytes],
                                                 recycled: str) -> None:
    actual = record(stranger.pid)
    fields = actual.fields("driver_")
    if recycled == "other start time":
        fields["driver_create_time"] = actual.create_time - 3600
    else:
        fields["driver_cmdline"] = [sys.executable, "-m", "orchestrator.cli", "launch", "c.yaml"]
    held.update_state(**fields)
    with pytest.raises(HpoError) as error:
        request_stop("held", campaigns_dir=held.root.parent, timeout=5)
    message = error.value.message
    assert f"driver pid {stranger.pid} in state.json is no longer its driver" in message and "not signalled" in message
    assert "\n" not in message
    time.sleep(0.3)
    assert stranger.poll() is None
    assert held.state()["status"] == "running"  # not marked stopping: nothing was asked of anyone


def test_stop_refuses_an_old_record_without_start_time(held: CampaignDir, stranger: subprocess.Popen[bytes],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    held.update_state(driver_pid=stranger.pid, driver_create_time=None, driver_cmdline=None)
    code, _, err = run_cli(["stop", "held", "--campaigns-dir", str(held.root.parent), "--timeout", "5"], capsys)
    assert code == 2 and err.startswith("error: ") and "cannot be verified" in err and err.count("\n") == 1
    time.sleep(0.3)
    assert stranger.poll() is None


DRIVER = textwrap.dedent("""\
    import signal, sys, time
    from orchestrator.state import CampaignDir
    cdir = CampaignDir.of("real", sys.argv[1])
    cdir.acquire()
    cdir.update_state(status="running")
    asked = []
    signal.signal(signal.SIGUSR1, lambda *_: asked.append(1))
    print("ready", flush=True)
    deadline = time.time() + 60
    while not asked and time.time() < deadline:
        time.sleep(0.05)
    cdir.update_state(status="stopped", driver_pid=None)
""")


def test_stop_signals_the_verified_driver(tmp_path: Path) -> None:
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert driver.stdout is not None and driver.stdout.readline().strip() == "ready"
        message = request_stop("real", campaigns_dir=tmp_path, timeout=30)
        assert message.startswith("campaign 'real' stopped (status stopped)"), message
        assert driver.wait(timeout=30) == 0
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.wait()


# --- the stored campaign file --------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project directory with a campaign file naming everything by relative path; the current directory."""
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    (root / "data" / "calo.h5").write_bytes(b"")
    (root / "spaces").mkdir()
    (root / "spaces" / "lr.yaml").write_text("learning_rate: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}\n")
    (root / "campaign.yaml").write_text(textwrap.dedent("""\
        name: paths
        workload: {name: lhc_cnn, data: {path: data/calo.h5}}
        search:
          space: spaces/lr.yaml
          objective: {metric: val_auc, mode: max}
        budget: {trials: 2}
        storage: tune-results
        tracking: {uri: "sqlite:///mlflow.db"}
    """))
    monkeypatch.chdir(root)
    return root


def test_the_stored_campaign_file_holds_absolute_paths(project: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    spec = load_campaign("campaign.yaml", check_workload_face=False)
    cdir = CampaignDir.of(spec.config.name, tmp_path / "campaigns")
    cdir.root.mkdir(parents=True)
    cdir.config_file.write_text(yaml.safe_dump(spec.raw, sort_keys=False))  # what runner.launch stores
    stored = yaml.safe_load(cdir.config_file.read_text())
    assert stored["workload"]["data"]["path"] == str(project / "data" / "calo.h5")
    assert stored["search"]["space"] == str(project / "spaces" / "lr.yaml")
    assert stored["storage"] == str(project / "tune-results")
    assert stored["tracking"]["uri"] == f"sqlite:///{project / 'mlflow.db'}"
    assert stored["budget"] == {"trials": 2} and "trial" not in stored  # only paths change; no defaults added

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # `hpo resume` from another directory
    again = load_campaign(cdir.config_file, check_workload_face=False)  # the data check passes: the file is found
    assert again.config == spec.config and again.space.params == spec.space.params
    code, _, err = run_cli(["validate", str(cdir.config_file), "--quick"], capsys)
    assert code == 0, err
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize(("given", "resolved"), [
    ("data/x.h5", "{cwd}/data/x.h5"),
    ("/abs/x", "/abs/x"),
    ("file:rel/store", "file://{cwd}/rel/store"),
    ("file:///abs/store", "file:///abs/store"),
    ("sqlite:///mlflow.db", "sqlite:///{cwd}/mlflow.db"),
    ("sqlite:///mlflow.db?timeout=30", "sqlite:///{cwd}/mlflow.db?timeout=30"),
    ("sqlite:////abs/mlflow.db", "sqlite:////abs/mlflow.db"),
    ("sqlite:///:memory:", "sqlite:///:memory:"),
    ("sqlite://", "sqlite://"),
    ("s3://bucket/prefix", "s3://bucket/prefix"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ("postgresql://u@h/db", "postgresql://u@h/db"),
])
def test_absolute_location(given: str, resolved: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert absolute_location(given) == resolved.format(cwd=tmp_path)
