"""``hpo version``: versions of the whole stack."""

from __future__ import annotations

import click


@click.command("version")
def command() -> None:
    """Print the versions of this package, Python, TensorFlow, Horovod (with its controllers), Ray, Optuna and MLflow.

    Imports TensorFlow and Horovod, so it takes a few seconds; use it to check an installation.
    """
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from rich.console import Console
    from rich.table import Table

    import orchestrator

    table = Table(title="hpo stack", title_justify="left")
    table.add_column("component")
    table.add_column("version")
    table.add_column("details")
    table.add_row("hpo-orchestrator", orchestrator.__version__, "")
    table.add_row("python", platform.python_version(), platform.platform())

    def dist(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "[red]not installed[/]"

    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    table.add_row("tensorflow", tf.__version__, f"{len(gpus)} GPU(s) visible" if gpus else "CPU only")
    table.add_row("tf-keras", dist("tf-keras"), "Keras 2 (TF_USE_LEGACY_KERAS=1)")
    from trainables.distributed import build_info

    info = build_info()
    if info is None:
        table.add_row("horovod", "[red]not installed[/]", "run `make install`")
    else:
        table.add_row("horovod", info["version"], f"frameworks: {info['frameworks']}; controllers: {info['controllers']}; "
                      f"tensor ops: {info['tensor_operations']}")
    for name in ("ray", "optuna", "mlflow", "h5py", "numpy", "pydantic"):
        table.add_row(name, dist(name), "")
    Console().print(table)
