#!/usr/bin/env bash
# `make demo`: a real, small campaign on the embedded default (local Ray, local MLflow server over SQLite).
# Generates a small synthetic LHC calorimeter data set, runs search_spaces/demo.yaml (TPE + ASHA, 2 Horovod
# ranks per trial), prints the best trials from MLflow and promotes the best model to the Model Registry.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
hpo=(.venv/bin/hpo)

mkdir -p data
if [[ ! -f data/demo_calo.h5 ]]; then
  "${hpo[@]}" data generate calo --out data/demo_calo.h5 --events 4000 --seed 1
fi
"${hpo[@]}" data check data/demo_calo.h5

# A new name each time: every demo run stays visible in MLflow and under campaigns/.
name="demo-$(date +%Y%m%d-%H%M%S)"
"${hpo[@]}" validate search_spaces/demo.yaml --set "name=$name"
"${hpo[@]}" launch search_spaces/demo.yaml --set "name=$name" ${HPO_DEMO_ARGS:-}
"${hpo[@]}" status "$name"
"${hpo[@]}" best "$name" --k 3
"${hpo[@]}" promote "$name" --model demo-lhc-cnn --alias champion
"${hpo[@]}" models
"${hpo[@]}" server --status || true
echo
echo "Demo finished: campaign '$name' (state in campaigns/$name)."
echo "Open the 'MLflow:' links above in a browser: the campaign's runs table (expand its run to see the trials,"
echo "the objective as a column), the best trial's page, the registered model. The embedded server keeps running"
echo "(stop it with: .venv/bin/hpo server --stop); scripts/ui-screenshots.sh shows what the pages look like."
