"""Session fixtures shared by the test packages: a real MLflow server and small generated data files.

Everything here is real: ``mlflow server`` runs as a subprocess on 127.0.0.1 (its own process group,
stopped at the end), the data files come from our generators.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URI of a real ``mlflow server`` (SQLite + local artifacts) on a free port."""
    from tracking.server import start_server, stop_group

    directory = tmp_path_factory.mktemp("mlflow")
    info = start_server(directory=directory)
    yield info.uri
    stop_group(info.pid)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A real PostgreSQL server of the session's own (:class:`tests.services.PostgresServer`), on 127.0.0.1."""
    from tests.services import PostgresServer, why_no_postgres

    why = why_no_postgres()
    if why is not None:
        if os.environ.get("CI") == "true" and os.geteuid() == 0:
            pytest.fail(f"CI runs as root, so `make test` should have installed PostgreSQL: {why}")
        pytest.skip(why)
    server = PostgresServer.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_mlflow_server(postgres: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URI of a real ``mlflow server`` whose store is a database on the session's PostgreSQL server."""
    from tracking.server import start_server, stop_group

    store = postgres.create_database("mlflow_tests")
    info = start_server(directory=tmp_path_factory.mktemp("mlflow-pg"), backend_store_uri=store)
    yield info.uri
    stop_group(info.pid)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def store_server(request: pytest.FixtureRequest) -> str:
    """The tracking server of each kind of store in turn: SQLite (the embedded default) and PostgreSQL (a group's)."""
    return str(request.getfixturevalue("mlflow_server" if request.param == "sqlite" else "postgres_mlflow_server"))


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated process leading its own process group: where a recycled pid of a driver or a server would stand,
    for the tests that a stale record's pid is left alone."""
    process = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield process
    if process.poll() is None:
        process.kill()
    process.wait()


@pytest.fixture(scope="session")
def calo_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small calorimeter data set (1200 events, 64×64)."""
    from trainables.data.generate import write_calo

    return write_calo(tmp_path_factory.mktemp("data") / "calo.h5", events=1200, seed=5, progress=False)


@pytest.fixture(scope="session")
def cosmo3d_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small set of dark-matter cubes (160 cubes of 32³, 4 redshift channels)."""
    from trainables.data.generate import write_cosmo3d

    return write_cosmo3d(tmp_path_factory.mktemp("data") / "cosmo3d.h5", events=160, seed=5, progress=False)


@pytest.fixture(scope="session")
def lensing_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small set of convergence maps (640 maps of 64²)."""
    from trainables.data.generate import write_lensing

    return write_lensing(tmp_path_factory.mktemp("data") / "lensing.h5", events=640, seed=5, progress=False)


@pytest.fixture(scope="session")
def hpo() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``hpo(*args, env=None, timeout=600)``: run the ``hpo`` CLI in its own process (as users do), output captured.

    ``env`` defaults to this process's environment; output is unbuffered either way.
    """

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], capture_output=True, text=True,
                              env={**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"}, timeout=timeout)

    return run


@pytest.fixture(scope="session")
def peak_rss_mib() -> Callable[..., float]:
    """``peak_rss_mib(code, *argv, timeout=300)``: run Python ``code`` in a child process and return that
    child's own peak RSS in MiB, for memory-bound tests.

    It reads the child's VmHWM: ``ru_maxrss`` survives fork and exec and so reports the pytest parent's
    peak (over 1 GiB once TensorFlow is loaded) instead of the child's.
    """
    prelude = (
        "import resource\n"
        "def _peak_rss_kib():\n"
        "    try:\n"
        "        with open('/proc/self/status') as f:\n"
        "            return next(int(line.split()[1]) for line in f if line.startswith('VmHWM:'))\n"
        "    except OSError:\n"
        "        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
    )

    def run(code: str, *argv: str, timeout: float = 300) -> float:
        script = prelude + code + "\nprint(_peak_rss_kib())\n"
        proc = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return int(proc.stdout.split()[-1]) / 1024

    return run


class BrokenH5:
    """Copies of a good data file with one edit each, for the bad-data tests of every data kind."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.count = 0

    def __call__(self, original: Path, edit: Callable[[Any], None]) -> Path:
        """A copy of ``original`` after ``edit(h5py.File opened r+)``."""
        import h5py

        self.count += 1
        path = self.directory / f"edit-{self.count}" / "broken.h5"
        path.parent.mkdir()
        path.write_bytes(Path(original).read_bytes())
        with h5py.File(path, "r+") as f:
            edit(f)
        return path

    @staticmethod
    def replace(key: str, data: Any) -> Callable[[Any], None]:
        """An edit that replaces dataset ``key`` by ``data`` (any shape or dtype)."""

        def edit(f: Any) -> None:
            del f[key]
            f[key] = data

        return edit


@pytest.fixture
def broken(tmp_path: Path) -> BrokenH5:
    """``broken(original, edit)``: a broken copy of a data file; ``broken.replace(key, data)``: an edit."""
    return BrokenH5(tmp_path)
