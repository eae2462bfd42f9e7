"""MLflow's UI as a person browses it: a real campaign (2 trials, 1 epoch) logs to a real ``mlflow server``, and
Debian's Chromium, headless and driven by Playwright, opens the links that ``hpo launch`` and ``hpo best`` print.

The campaign's link opens the model-training view of its runs table: the campaign's run with the objective as a
column, its trials folded under it until its row is expanded, each trial showing its objective value. The best
trial's link opens its page, which names the campaign's run as its parent. The browser reaches 127.0.0.1 only.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.tracking.campaigns import small_campaign

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
NAME = "ui-browser"
TIMEOUT_MS = 45_000  # every wait in the browser; the UI answers in seconds on an idle machine


def browser_missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return "chromium is not installed (apt-get install chromium; `make test` installs it)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    return None


@contextmanager
def browser_page() -> Iterator[Any]:
    """A page of a fresh headless Chromium whose requests other than to 127.0.0.1 are refused."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, timeout=TIMEOUT_MS, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            page.route("**/*", lambda route: route.continue_() if urlsplit(route.request.url).hostname == "127.0.0.1"
                       else route.abort())
            yield page
        finally:
            browser.close()


def printed_link(output: str, label: str) -> str:
    match = re.search(rf"^\s*{re.escape(label)} (\S+)", output, re.MULTILINE)
    assert match, f"no '{label}' link in:\n{output[-3000:]}"
    link = match.group(1)
    assert urlsplit(link).hostname == "127.0.0.1", link
    assert "workflowType=machine_learning" in link, link
    return link


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory, calo_file: Path, mlflow_server: str,
             hpo: Callable[..., Any]) -> dict[str, Any]:
    why = browser_missing()
    if why:
        if os.environ.get("CI") == "true" and os.geteuid() == 0:
            pytest.fail(f"CI runs as root, so `make test` should have installed Chromium and Playwright: {why}")
        pytest.skip(why)
    root = tmp_path_factory.mktemp("ui-campaigns")
    path = small_campaign(root, NAME, calo_file, mlflow_server)
    launched = hpo("launch", str(path), "--campaigns-dir", str(root), "--no-progress", timeout=900)
    assert launched.returncode == 0, launched.stderr[-3000:]
    best = hpo("best", NAME, "--campaigns-dir", str(root), "--k", "2", timeout=120)
    assert best.returncode == 0, best.stderr[-3000:]
    status = hpo("status", NAME, "--campaigns-dir", str(root), timeout=120)
    assert status.returncode == 0, status.stderr[-3000:]

    from mlflow.tracking import MlflowClient

    c = MlflowClient(mlflow_server)
    experiment = c.get_experiment_by_name(NAME)
    assert experiment is not None
    runs = c.search_runs([experiment.experiment_id], max_results=100)
    parent = next(r for r in runs if r.data.tags.get("hpo.role") == "campaign")
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(trials) == 2, [r.data.tags for r in runs]
    output = launched.stdout + launched.stderr
    return {"link": printed_link(output, "MLflow:"), "run_link": printed_link(output, "campaign run:"),
            "best_out": best.stdout, "status_out": status.stdout, "parent": parent, "trials": trials,
            "experiment": experiment, "output": output}


def test_the_printed_links_agree(campaign: dict[str, Any]) -> None:
    assert campaign["experiment"].tags["mlflow.experimentKind"] == "custom_model_development"
    assert printed_link(campaign["best_out"], "MLflow:") == campaign["link"]
    assert printed_link(campaign["status_out"], "MLflow:") == campaign["link"]
    assert f"/runs/{campaign['parent'].info.run_id}?" in campaign["run_link"]
    assert "View experiment at" not in campaign["output"]  # MLflow's own links, to the GenAI view, are not printed


def shown_value(text: str, actual: float) -> bool:
    """Whether the UI's rounded ``text`` shows ``actual`` (to the digits it shows)."""
    digits = len(text.partition(".")[2])
    return abs(float(text) - actual) <= 0.51 * 10**-digits


def test_campaign_link_shows_trials_nested_with_the_objective_column(campaign: dict[str, Any]) -> None:
    parent, trials = campaign["parent"], campaign["trials"]
    with browser_page() as page:
        page.goto(campaign["link"])
        # the model-training view's runs table on the campaign's saved view, the objective among its columns
        header = page.locator(".ag-header-cell[col-id='metrics.`val_auc`']")
        header.wait_for()
        assert header.inner_text().strip() == "val_auc"
        campaign_row = page.locator(".ag-pinned-left-cols-container .ag-row",
                                    has=page.locator(f"a[href$='/runs/{parent.info.run_id}']"))
        campaign_row.wait_for()
        page.get_by_text("3 matching runs").wait_for()  # the campaign's run and its two trials, nothing else
        rows = page.locator(".ag-pinned-left-cols-container .ag-row")
        assert rows.count() == 1, rows.all_inner_texts()  # the trials are folded under the campaign's run

        campaign_row.locator("button[data-component-id$='runnamecellrenderer.tsx_46']").click()  # its expander
        for trial in trials:
            page.locator(f"a[href$='/runs/{trial.info.run_id}']").wait_for()
        assert rows.count() == 3, rows.all_inner_texts()
        parent_index = int(campaign_row.get_attribute("row-index") or -1)
        for trial in trials:
            row = page.locator(".ag-pinned-left-cols-container .ag-row",
                               has=page.locator(f"a[href$='/runs/{trial.info.run_id}']"))
            index = row.get_attribute("row-index")
            assert int(index or -1) in (parent_index + 1, parent_index + 2), (index, parent_index)
            assert row.locator("button[data-component-id$='runnamecellrenderer.tsx_46']").count() == 0  # a leaf
            cell = page.locator(f".ag-row[row-index='{index}'] [col-id='metrics.`val_auc`']")  # pinned or not
            text = cell.inner_text().strip()
            assert shown_value(text, trial.data.metrics["val_auc"]), (text, trial.data.metrics)


def test_best_trial_link_opens_its_page_under_the_campaign(campaign: dict[str, Any]) -> None:
    link = printed_link(campaign["best_out"], "best trial:")
    best = max(campaign["trials"], key=lambda r: r.data.metrics["val_auc"])
    assert f"/runs/{best.info.run_id}?" in link
    with browser_page() as page:
        page.goto(link)
        page.get_by_text("Parent run", exact=True).wait_for()
        page.locator(f"a[href*='/runs/{campaign['parent'].info.run_id}']").first.wait_for()  # the parent's link
        about = page.locator("body").inner_text()
        assert campaign["parent"].info.run_name in about and best.info.run_id in about
        assert "val_auc" in about
