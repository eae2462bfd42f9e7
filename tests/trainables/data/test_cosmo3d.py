"""CosmoFlow-like cubes: determinism, layout, sizes, memory, physics (P(k), learnability), bad files, CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from trainables.data import cosmo3d
from trainables.data.checks import check_file, check_for_training
from trainables.data.generate import write_cosmo3d
from trainables.data.spec import DataConfig
from trainables.errors import DataError, HpoError
from trainables.metrics.spectra import power_spectrum_3d


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def cubes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 cubes of 32³ (about 4 s): enough for a least-squares fit of σ_8 on P(k) features."""
    return write_cosmo3d(tmp_path_factory.mktemp("cosmo") / "cosmo3d.h5", events=300, seed=11, progress=False)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 cubes of 32³, the original that the bad-file tests break."""
    return write_cosmo3d(tmp_path_factory.mktemp("cosmo") / "small.h5", events=40, seed=3, progress=False)


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    a = write_cosmo3d(tmp_path / "a.h5", events=70, seed=3, progress=False)  # two chunks of 64 + 6
    b = write_cosmo3d(tmp_path / "b.h5", events=70, seed=3, progress=False)
    c = write_cosmo3d(tmp_path / "c.h5", events=70, seed=4, progress=False)
    assert sha(a) == sha(b) != sha(c)
    assert not (tmp_path / "a.h5.partial").exists()


def test_layout_dtypes_and_attributes(cubes: Path) -> None:
    with h5py.File(cubes) as f:
        assert f["x"].shape == (300, 32, 32, 32, 4) and f["x"].dtype == np.int16
        assert f["x"].chunks == (1, 32, 32, 32, 4) and f["x"].compression == "lzf"
        assert f["unitPar"].shape == f["physPar"].shape == (300, 4)
        assert f["unitPar"].dtype == f["physPar"].dtype == np.float32
        u, phys = f["unitPar"][:], f["physPar"][:]
        assert f.attrs["hpo.kind"] == "cosmo3d" and f.attrs["hpo.seed"] == 11
        assert json.loads(f.attrs["hpo.params"])["events"] == 300
        assert f.attrs["hpo.param.box_size"] == 128.0 and f.attrs["hpo.param.mean_count"] == 64.0
        assert list(f.attrs["hpo.param.redshifts"]) == [0.0, 0.5, 1.5, 3.0]
        assert list(f.attrs["hpo.param.fiducial"]) == [0.3, 0.8, 0.96, 70.0]
        counts = f["x"][:20]
    # u uniform in [-1, 1] for Ω_m, σ_8, n_s; H_0 fixed at the fiducial
    assert np.abs(u[:, :3]).max() <= 1 and np.abs(u[:, :3]).max() > 0.95 and (u[:, 3] == 0).all()
    assert abs(float(u[:, 1].mean())) < 0.15 and 0.5 < float(u[:, 1].std()) < 0.65  # U(-1, 1): std 0.577
    np.testing.assert_allclose(phys, np.array([0.3, 0.8, 0.96, 70.0]) * (1 + 0.1 * u), rtol=1e-6)
    # mean count n̄ = 64 per cell in every channel (lognormal mean 1); structure grows towards z = 0
    assert counts.min() >= 0
    np.testing.assert_allclose(counts.mean(axis=(0, 1, 2, 3)), 64, rtol=0.05)
    spread = (counts / counts.mean(axis=(1, 2, 3), keepdims=True)).std(axis=(0, 1, 2, 3))
    assert (np.diff(spread) < 0).all() and spread[0] > 2 * spread[3]
    facts = check_file(cubes).facts
    assert facts["cube"] == "32³" and facts["channels"] == 4
    assert facts["u ranges"]["H_0"] == [0.0, 0.0] and facts["u ranges"]["sigma_8"][0] < -0.95


def test_size_64_honoured(tmp_path: Path) -> None:
    path = write_cosmo3d(tmp_path / "c64.h5", events=3, size=64, seed=1, progress=False)
    summary = check_file(path)
    assert summary.datasets["x"] == ((3, 64, 64, 64, 4), "int16")
    assert summary.facts["cube"] == "64³"
    with h5py.File(path) as f:
        assert f.attrs["hpo.param.mean_count"] == 8.0  # one particle per (Mpc/h)³ in 2 Mpc/h cells


@pytest.mark.parametrize("kwargs, message", [
    ({"size": 48}, "--size for cosmo3d must be 32, 64 or 128, but got 48"),
    ({"events": 0}, "--events must be at least 1, but got 0"),
    ({"box_size": -1.0}, "box_size must be > 0"),
])
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"events": 2, **kwargs}
    with pytest.raises(HpoError, match=message):
        write_cosmo3d(tmp_path / "bad.h5", progress=False, **args)
    assert not (tmp_path / "bad.h5").exists()


def test_sigma8_normalisation_and_growth() -> None:
    """A fixes σ(8 Mpc/h) = σ_8; BBKS T → 1 on large scales; D(0) = 1 and D falls with z."""
    k = np.exp(cosmo3d._LOG_K)
    for om, s8, ns in ((0.3, 0.8, 0.96), (0.33, 0.72, 1.05)):
        p = cosmo3d.power_spectrum(k, om, s8, ns)[0]
        sigma = np.sqrt(np.sum(k**3 * p * cosmo3d.tophat(8 * k) ** 2) * np.log(k[1] / k[0]) / (2 * np.pi**2))
        assert sigma == pytest.approx(s8, rel=2e-3)
    assert cosmo3d.bbks(np.array([1e-5]), 0.21)[0] == pytest.approx(1, abs=1e-3)
    d = cosmo3d.growth(cosmo3d.REDSHIFTS, np.array([0.3]))[0]
    assert d[0] == 1 and (np.diff(d) < 0).all()
    assert 0.25 < d[3] < 0.4  # roughly 1/(1+z) in matter domination, a bit more for ΛCDM at z = 3


def test_gaussian_field_measures_back_its_power_spectrum() -> None:
    """Fields drawn from P(k) measure back to P(k) with the shared estimator (SCIENCE.md, estimators)."""
    size, box = 32, cosmo3d.BOX_SIZE
    power = cosmo3d.mode_power(size, box, cosmo3d.physical(np.zeros((1, 4))))[0]
    rng = np.random.default_rng(0)
    fields = np.stack([cosmo3d.gaussian_field(rng, power, size, box) for _ in range(40)])
    k, p = power_spectrum_3d(fields, box_size=box)
    measured = p.mean(axis=0)
    expected = cosmo3d.power_spectrum(k, 0.3, 0.8, 0.96)[0]
    ratio = measured / expected
    assert np.abs(ratio[1:] - 1).max() < 0.12, ratio  # the first bin has a handful of modes only
    # the variance used for the lognormal's mean correction is the fields' variance
    assert fields.var() == pytest.approx(float(cosmo3d.field_variance(power, size, box)), rel=0.05)


def test_sigma8_is_learnable_from_the_power_spectrum(cubes: Path) -> None:
    """Least squares of u(σ_8) on log P(k) of the z = 0 channel recovers σ_8 on held-out cubes.

    The field is y = log(1 + counts) (CosmoFlow's preprocessing, the reader's default) as a contrast
    y/ȳ − 1; the raw counts' P(k) is far noisier at z = 0 (lognormal tails: correlation ≈ 0.75 only).
    """
    with h5py.File(cubes) as f:
        y = np.log1p(f["x"][:, ..., 0].astype(np.float64))
        u = f["unitPar"][:].astype(np.float64)
    _, p = power_spectrum_3d(y / y.mean(axis=(1, 2, 3), keepdims=True) - 1, box_size=cosmo3d.BOX_SIZE,
                             bins=np.geomspace(2 * np.pi / 128, np.pi * 32 / 128, 9))
    features = np.c_[np.log(p), np.ones(len(p))]
    train, test = slice(0, 200), slice(200, None)
    correlation = {}
    for j, name in enumerate(("Omega_m", "sigma_8", "n_s")):
        w, *_ = np.linalg.lstsq(features[train], u[train, j], rcond=None)
        correlation[name] = float(np.corrcoef(features[test] @ w, u[test, j])[0, 1])
    assert correlation["sigma_8"] > 0.9, correlation  # 0.96 here; 0.95-0.96 over seeds 11-15
    assert correlation["n_s"] > 0.6, correlation  # the tilt, from the same 8 bins


@pytest.mark.slow
def test_memory_bounded_for_128_cubes(tmp_path: Path, peak_rss_mib: Any) -> None:
    """40 cubes of 128³ (640 MiB uncompressed) stream one cube at a time: peak RSS far below that."""
    code = (
        "import sys\n"
        "from trainables.data.generate import write_cosmo3d\n"
        "write_cosmo3d(sys.argv[1], events=40, size=128, seed=2, progress=False)\n"
    )
    peak_mib = peak_rss_mib(code, str(tmp_path / "big.h5"))
    assert peak_mib < 320, f"peak RSS {peak_mib:.0f} MiB"
    summary = check_file(tmp_path / "big.h5")
    assert summary.events == 40 and summary.datasets["x"][0] == (40, 128, 128, 128, 4)
    assert summary.facts["mean count per cell"] == pytest.approx(1.0, rel=0.1)  # n̄ = 1 in 1 Mpc/h cells


def test_check_for_training(small: Path) -> None:
    cfg = DataConfig(path=str(small))
    assert check_for_training(cfg, "cosmo3d", batch_size=8, workers=2).events == 40
    with pytest.raises(DataError, match=r"32 training events per rank with 1 rank\(s\), fewer than one batch of 64"):
        check_for_training(cfg, "cosmo3d", batch_size=64, workers=1)


def test_cli_default_size_and_flags(tmp_path: Path) -> None:
    from orchestrator.cli.data import command

    runner = CliRunner()
    out = tmp_path / "cli.h5"
    result = runner.invoke(command, ["generate", "cosmo3d", "--out", str(out), "--events", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "2 events" in result.output and check_file(out).datasets["x"][0] == (2, 32, 32, 32, 4)
    result = runner.invoke(command, ["generate", "cosmo3d", "--out", str(out), "--events", "2", "--cosmologies", "3"])
    assert isinstance(result.exception, HpoError)
    assert "--cosmologies applies to lensing data only, not cosmo3d" in str(result.exception)


# --- public layouts ----------------------------------------------------------------------------------


def test_public_raw_universe_is_cut_into_subcubes(tmp_path: Path) -> None:
    """A raw CosmoFlow universe (full (D, D, D, 4), unitPar (4,)) counts as (D/128)³ sub-cubes."""
    path = tmp_path / "universe.h5"
    with h5py.File(path, "w") as f:
        full = f.create_dataset("full", shape=(256, 256, 256, 4), dtype=np.int16, chunks=(32, 32, 32, 4),
                                compression="lzf")
        zeros = np.zeros((32, 256, 256, 4), np.int16)
        for i in range(0, 256, 32):  # every chunk written (a chunk never written is an interrupted writer's file)
            full[i:i + 32] = zeros
        full[:32, :32, :32] = np.random.default_rng(0).poisson(1.0, (32, 32, 32, 4))
        f["unitPar"] = np.array([0.1, -0.5, 0.9, 0.0], np.float32)
    summary = check_file(path)
    assert summary.kind == "cosmo3d" and summary.events == 8
    assert summary.facts["cube"] == "128³" and summary.facts["u ranges"]["sigma_8"] == [-0.5, -0.5]
    with h5py.File(path, "r+") as f:
        f["unitPar"][1] = 1.5
    with pytest.raises(DataError, match=r"universe\.h5:unitPar: u for sigma_8 is 1\.5 at event 0, outside \[-1, 1\]"):
        check_file(path)


def test_public_mlperf_layout_accepted(tmp_path: Path) -> None:
    path = tmp_path / "mlperf.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.ones((5, 16, 16, 16, 4), np.int16)
        f["y"] = np.zeros((5, 4), np.float32)
    summary = check_file(path)
    assert summary.kind == "cosmo3d" and summary.events == 5 and set(summary.datasets) == {"x", "y"}


# --- every bad-data case, one test each -------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.h5: file not found"):
        check_file(tmp_path / "nope.h5", "cosmo3d")


def test_missing_key(small: Path, broken: Any) -> None:
    path = broken(small, lambda f: f.__delitem__("unitPar"))
    with pytest.raises(DataError, match=r"broken\.h5:unitPar: missing dataset; a cosmo3d file needs x, unitPar, physPar"):
        check_file(path)


def test_wrong_rank(small: Path, broken: Any) -> None:
    path = broken(small, broken.replace("x", np.zeros((40, 32, 32, 32), np.int16)))
    with pytest.raises(DataError, match=r"broken\.h5:x: expected rank 5, but got shape \(40, 32, 32, 32\)"):
        check_file(path)


def test_wrong_dtype(small: Path, broken: Any) -> None:
    path = broken(small, broken.replace("unitPar", np.zeros((40, 4), np.int32)))
    with pytest.raises(DataError, match=r"broken\.h5:unitPar: expected a numeric dtype \(f\), but got int32"):
        check_file(path)


def test_not_cubic(small: Path, broken: Any) -> None:
    path = broken(small, broken.replace("x", np.zeros((40, 32, 32, 16, 4), np.int16)))
    with pytest.raises(DataError, match=r"broken\.h5:x: cubes must be S×S×S×channels, but got \(40, 32, 32, 16, 4\)"):
        check_file(path)


def test_wrong_number_of_parameters(small: Path, broken: Any) -> None:
    path = broken(small, broken.replace("physPar", np.zeros((40, 3), np.float32)))
    with pytest.raises(DataError, match=r"broken\.h5:physPar: expected shape \(N, 4\) for \(Omega_m, sigma_8, n_s, H_0\)"):
        check_file(path)


def test_length_mismatch(small: Path, broken: Any) -> None:
    path = broken(small, broken.replace("physPar", np.zeros((39, 4), np.float32)))
    with pytest.raises(DataError, match=r"broken\.h5:physPar: has 39 events but x has 40; they must match"):
        check_file(path)


def test_nan_parameters(small: Path, broken: Any) -> None:
    path = broken(small, lambda f: f["unitPar"].__setitem__((17, 2), np.nan))
    with pytest.raises(DataError, match=r"broken\.h5:unitPar: NaN or Inf values \(first at event 17\)"):
        check_file(path)


def test_inf_counts_in_float_cubes(small: Path, broken: Any) -> None:
    data = np.ones((40, 32, 32, 32, 4), np.float32)
    data[33, 1, 2, 3, 0] = np.inf
    with pytest.raises(DataError, match=r"broken\.h5:x: NaN or Inf values \(first at event 33\)"):
        check_file(broken(small, broken.replace("x", data)))


def test_negative_counts(small: Path, broken: Any) -> None:
    path = broken(small, lambda f: f["x"].__setitem__((12, 0, 0, 0, 1), -3))
    with pytest.raises(DataError, match=r"broken\.h5:x: negative particle counts \(first at event 12\)"):
        check_file(path)


def test_u_out_of_range(small: Path, broken: Any) -> None:
    path = broken(small, lambda f: f["unitPar"].__setitem__((7, 1), 2.5))
    with pytest.raises(DataError, match=r"broken\.h5:unitPar: u for sigma_8 is 2\.5 at event 7, outside \[-1, 1\]"):
        check_file(path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.h5"
    with h5py.File(path, "w") as f:
        f.attrs["hpo.kind"] = "cosmo3d"
        f.create_dataset("x", shape=(0, 32, 32, 32, 4), dtype=np.int16)
        f.create_dataset("unitPar", shape=(0, 4), dtype=np.float32)
        f.create_dataset("physPar", shape=(0, 4), dtype=np.float32)
    with pytest.raises(DataError, match=r"empty\.h5:x: the file holds no events"):
        check_file(path)


def test_wrong_kind(small: Path) -> None:
    with pytest.raises(DataError, match=r"small\.h5: the file holds cosmo3d data, not lensing; pass --kind cosmo3d"):
        check_file(small, "lensing")


def test_baseline_cli_beats_the_mean_on_every_parameter(cubes: Path, tmp_path: Path) -> None:
    """`hpo data baseline`: ridge on log-density P(k), std and skewness of all channels, on the trial split."""
    from orchestrator.cli.data import command

    out = tmp_path / "baseline.json"
    result = CliRunner().invoke(command, ["baseline", str(cubes), "--json", str(out)])
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    assert (figures["train_cubes"], figures["val_cubes"]) == (240, 30)
    for name in ("Omega_m", "sigma_8", "n_s"):
        assert figures["baseline"][f"mae_{name}"] < 0.7 * figures["mean"][f"mae_{name}"], figures
        assert name in result.output
    assert figures["mean"]["mae"] > 0.4  # predicting the mean: ≈ 0.5 for u ~ U[-1, 1]


def test_baseline_of_another_kind_is_a_one_line_error(tmp_path: Path) -> None:
    from orchestrator.cli import main
    from trainables.data.generate import write_lensing

    maps = write_lensing(tmp_path / "maps.h5", events=4, seed=1, progress=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "baseline", str(maps)])
    assert exit_info.value.code == 2
