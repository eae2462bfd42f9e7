"""Science data: synthetic generators in the public layouts, HDF5 → ``tf.data`` readers, data-file checks.

``spec`` holds :class:`DataConfig`, the ``workload.data`` section of a campaign file (the orchestrator
embeds it in its schema). Generators, readers and checks are per kind: ``calo`` (LHC calorimeter images),
``cosmo3d`` (dark-matter density cubes) and ``lensing`` (weak-lensing convergence maps).
"""

from __future__ import annotations

from trainables.data.spec import DATA_KINDS, DataConfig

__all__ = ["DATA_KINDS", "DataConfig"]
