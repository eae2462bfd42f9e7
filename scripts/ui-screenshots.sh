#!/usr/bin/env bash
# PNGs of MLflow's UI for the docs: a campaign's runs table, a trial's page, the Model Registry. See --help.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'EOF'
Usage: scripts/ui-screenshots.sh [--campaign NAME] [--campaigns-dir DIR] [--model NAME] [--out DIR]

Saves three PNGs of MLflow's UI, as headless Chromium (Debian's `chromium`, driven by Playwright) shows
the links that `hpo` prints:
  campaign-runs.png   the campaign's runs table (the link `hpo launch` prints), its row expanded: the
                      trials nested under it, the objective and the searched parameters as columns
  trial-run.png       the best trial's page (the link `hpo best` prints)
  model-registry.png  the registered model's page, its versions and alias (`hpo promote` links to one)

Without --campaign it first runs a small campaign (search_spaces/demo.yaml with 4 trials, on
data/demo_calo.h5, generated when missing) on the tracking server the campaign file resolves to (the
embedded one by default; HPO_HOME or MLFLOW_TRACKING_URI move it), then promotes its best model to
--model. That takes a few minutes on 2 cores.

Options:
  --campaign NAME       photograph this existing campaign instead; --model must then name a registered model
  --campaigns-dir DIR   where campaign state lives (default ./campaigns, or $HPO_CAMPAIGNS_DIR)
  --model NAME          registered model (default demo-lhc-cnn)
  --out DIR             where the PNGs go (default docs/img)
  -h, --help            this text

Needs: `chromium` (apt-get install chromium) and the dev extra (pip install -e '.[dev]', for playwright).
The browser reaches the tracking server's host only.
EOF
}

campaign="" model="demo-lhc-cnn" out="docs/img" campaigns_dir=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --campaign) campaign="$2"; shift 2 ;;
    --campaigns-dir) campaigns_dir=(--campaigns-dir "$2"); shift 2 ;;
    --model) model="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "ui-screenshots.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done

command -v chromium >/dev/null || { echo "ui-screenshots.sh: chromium is not installed (apt-get install chromium)" >&2; exit 2; }
.venv/bin/python -c "import playwright" 2>/dev/null \
  || { echo "ui-screenshots.sh: playwright is not installed (.venv/bin/pip install -e '.[dev]')" >&2; exit 2; }
hpo=(.venv/bin/hpo)

if [[ -z "$campaign" ]]; then
  mkdir -p data
  [[ -f data/demo_calo.h5 ]] || "${hpo[@]}" data generate calo --out data/demo_calo.h5 --events 4000 --seed 1
  campaign="ui-shots-$(date +%Y%m%d-%H%M%S)"
  "${hpo[@]}" launch search_spaces/demo.yaml --set "name=$campaign" --set budget.trials=4 --no-progress "${campaigns_dir[@]}"
  "${hpo[@]}" promote "$campaign" --model "$model" --alias champion "${campaigns_dir[@]}"
fi

# bounded: the browser's waits are 60 s each, three pages
timeout 600 .venv/bin/python scripts/ui_screenshots.py --campaign "$campaign" --model "$model" --out "$out" "${campaigns_dir[@]}"
