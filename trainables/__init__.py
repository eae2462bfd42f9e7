"""Trainables: what runs inside one trial.

One module per built-in workload (``lhc_cnn``, ``cosmoflow``, ``cosmogan``), the shared Horovod training
loop, the science data (synthetic generators, HDF5 readers, data-file checks), the physics metrics and the
plots. Everything here works without Ray, MLflow or the orchestrator: a trial is a plain function of
(hyperparameters, data config, report callback).

May import: TensorFlow (through ``tf_keras``), h5py, NumPy, matplotlib, pydantic. Horovod only in
``trainables.distributed``. Never imports ``orchestrator`` or ``tracking``.

Importing this package is cheap: it does not import TensorFlow. It does set ``TF_USE_LEGACY_KERAS=1``
so that whatever imports TensorFlow afterwards, in this process, gets Keras 2 (``tf_keras``), which
Horovod needs (Keras 3 variables break ``DistributedGradientTape``).
"""

from __future__ import annotations

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
