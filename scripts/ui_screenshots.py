"""PNGs of MLflow's UI for the docs (run by scripts/ui-screenshots.sh, which says how; see its --help).

Opens, in Debian's headless Chromium driven by Playwright, the links that ``hpo`` prints for an existing
campaign: its runs table with the campaign's row expanded (campaign-runs.png), its best trial's page
(trial-run.png) and a registered model's page (model-registry.png). The browser reaches the tracking
server's host only.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from urllib.parse import urlsplit

TIMEOUT_MS = 60_000  # each wait in the browser
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
EXPANDER = "button[data-component-id$='runnamecellrenderer.tsx_46']"  # a parent run's expander in the runs table
ASSISTANT_CLOSE = "[data-component-id='mlflow.assistant.chat_panel.close']"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaign", required=True, help="campaign name (its state under --campaigns-dir)")
    parser.add_argument("--campaigns-dir", default=None, help="where campaign state lives (default ./campaigns)")
    parser.add_argument("--model", required=True, help="registered model to show")
    parser.add_argument("--out", type=Path, default=Path("docs/img"), help="directory of the PNGs")
    args = parser.parse_args(argv)

    from orchestrator.state import CampaignDir, read_json
    from tracking import ui
    from tracking.registry import best_trials, campaign_runs

    cdir = CampaignDir.existing(args.campaign, args.campaigns_dir)
    recorded = read_json(cdir.tracking_file, {}) or {}
    uri, experiment = recorded["uri"], recorded["experiment"]
    c, experiment_id, parent, _, uid = campaign_runs(uri, experiment, args.campaign, recorded.get("parent_run_id"))
    ranked, _ = best_trials(uri, experiment, args.campaign, k=1, parent_run_id=parent)
    if not ranked:
        print(f"campaign {args.campaign} has no trial with its objective yet", file=sys.stderr)
        return 1
    links = {
        "campaign-runs.png": ui.campaign_url(uri, experiment_id, uid, ui.saved_view(c, experiment_id, uid)),
        "trial-run.png": ui.run_url(uri, experiment_id, ranked[0].run_id),
        "model-registry.png": ui.model_url(uri, args.model),
    }
    if any(link is None for link in links.values()):
        print(f"{uri} is not an HTTP tracking server: no UI to photograph", file=sys.stderr)
        return 1
    host = urlsplit(str(links["trial-run.png"])).hostname
    args.out.mkdir(parents=True, exist_ok=True)

    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, timeout=TIMEOUT_MS, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 860}, device_scale_factor=1)
            page.set_default_timeout(TIMEOUT_MS)
            page.route("**/*", lambda route: route.continue_() if urlsplit(route.request.url).hostname == host
                       else route.abort())
            for name, link in links.items():
                page.goto(str(link))
                if name == "campaign-runs.png":
                    row = page.locator(".ag-pinned-left-cols-container .ag-row", has=page.locator(f"a[href$='/runs/{parent}']"))
                    row.locator(EXPANDER).click()
                    page.locator(".ag-pinned-left-cols-container .ag-row").nth(1).wait_for()
                elif name == "trial-run.png":
                    page.locator(f"a[href*='/runs/{parent}']").first.wait_for()  # "Parent run": the campaign's
                else:
                    page.get_by_text("Version 1", exact=False).first.wait_for()
                close = page.locator(ASSISTANT_CLOSE)
                if close.count():  # the chat panel: nothing of the campaign's
                    close.first.click()
                page.wait_for_timeout(1500)  # let charts and fonts settle
                page.screenshot(path=str(args.out / name))
                print(f"{args.out / name}: {link}")
        finally:
            browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
