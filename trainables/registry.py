"""The workload registry: one explicit dict of built-in workloads, plus user workloads.

A workload is a module with a fixed face (see ``docs/workloads.md``). It is named in a campaign file by
``workload.name``, which is one of:

* a built-in name (the keys of :data:`BUILTIN_WORKLOADS`);
* a name registered by an installed package under the entry-point group ``hpo.workloads``
  (``[project.entry-points."hpo.workloads"] my_model = "my_pkg.my_workload"``);
* a dotted module path (``my_pkg.my_workload``) importable in the trial's environment.

Names are checked without importing anything heavy (:func:`check_workload`), so ``hpo validate`` stays
fast; :func:`load_workload` imports the module (and with it TensorFlow).
"""

from __future__ import annotations

import importlib
import importlib.util
from importlib.metadata import entry_points
from types import ModuleType

from trainables.errors import HpoError

#: Built-in workloads: registry name -> module path. The module name is the registry key.
BUILTIN_WORKLOADS: dict[str, str] = {
    "lhc_cnn": "trainables.lhc_cnn",
    "cosmoflow": "trainables.cosmoflow",
    "cosmogan": "trainables.cosmogan",
}

ENTRY_POINT_GROUP = "hpo.workloads"


def _entry_point_workloads() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def workload_names() -> list[str]:
    """All registered names: built-ins first, then installed entry points."""
    names = list(BUILTIN_WORKLOADS)
    names += [n for n in sorted(_entry_point_workloads()) if n not in BUILTIN_WORKLOADS]
    return names


def workload_module_path(name: str) -> str:
    """The module path a workload name refers to, without importing it.

    Raises:
        HpoError: the name is neither registered nor an importable dotted module path.
    """
    if name in BUILTIN_WORKLOADS:
        return BUILTIN_WORKLOADS[name]
    registered = _entry_point_workloads()
    if name in registered:
        return registered[name].split(":", 1)[0]
    if "." in name:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if found:
            return name
        raise HpoError(
            f"workload module '{name}' cannot be found on the Python path; install the package that "
            "provides it or fix the dotted path"
        )
    raise HpoError(
        f"unknown workload '{name}'; valid names are {', '.join(workload_names())}, or a dotted module "
        "path to your own workload (see docs/workloads.md)"
    )


def check_workload(name: str) -> None:
    """Raise :class:`HpoError` if ``name`` does not name a workload (imports nothing heavy)."""
    workload_module_path(name)


def load_workload(name: str) -> ModuleType:
    """Import the workload module named ``name`` and check that it has a workload's face."""
    from trainables.workload import check_face

    module = importlib.import_module(workload_module_path(name))
    check_face(module)
    return module
