"""A small real campaign file, for the tracking tests that need a campaign's runs (the UI, authentication)."""

from __future__ import annotations

from pathlib import Path

#: 2 trials of 1 epoch on 1 Horovod rank: a real campaign that takes about a minute on 2 cores.
SMALL_CAMPAIGN = """\
name: {name}
workload:
  name: lhc_cnn
  data: {{path: {data}}}
  params: {{batch_size: 64, conv_blocks: 2, filters: 8, dense_units: 16}}
search:
  space:
    learning_rate: {{type: float, low: 1.0e-3, high: 3.0e-3, log: true}}
    optimizer: {{type: categorical, choices: [adam, sgd]}}
  sampler: {{name: random}}
  objective: {{metric: val_auc, mode: max}}
budget: {{trials: 2}}
trial: {{workers: 1, epochs: 1}}
tracking: {{uri: {uri}}}
seed: 3
"""


def small_campaign(directory: Path, name: str, data: Path, uri: str) -> Path:
    """Write ``directory/NAME.yaml`` (:data:`SMALL_CAMPAIGN` on ``data``, tracked at ``uri``); returns its path."""
    path = directory / f"{name}.yaml"
    path.write_text(SMALL_CAMPAIGN.format(name=name, data=data, uri=uri))
    return path
