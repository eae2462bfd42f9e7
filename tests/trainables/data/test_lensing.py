"""CosmoGAN-like convergence maps: determinism, layout, sizes, memory, physics (C_ℓ, skewness), bad files, CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from trainables.data import lensing
from trainables.data.checks import check_file, check_for_training
from trainables.data.generate import write_lensing
from trainables.data.spec import DataConfig
from trainables.errors import DataError, HpoError
from trainables.metrics.spectra import power_spectrum_2d

PIXEL_RAD = float(np.radians(lensing.PIXEL_ARCMIN / 60))


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def skewness(x: np.ndarray) -> float:
    d = x.astype(np.float64) - x.mean()
    return float((d**3).mean() / (d**2).mean() ** 1.5)


@pytest.fixture(scope="module")
def maps(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """600 maps of 64² over 3 cosmologies (under a second)."""
    return write_lensing(tmp_path_factory.mktemp("lensing") / "lensing.h5", events=600, cosmologies=3, seed=7,
                         progress=False)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """50 fiducial maps, the original that the bad-file tests break."""
    return write_lensing(tmp_path_factory.mktemp("lensing") / "small.h5", events=50, seed=3, progress=False)


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    a = write_lensing(tmp_path / "a.h5", events=300, cosmologies=2, seed=3, progress=False)  # two chunks
    b = write_lensing(tmp_path / "b.h5", events=300, cosmologies=2, seed=3, progress=False)
    c = write_lensing(tmp_path / "c.h5", events=300, cosmologies=2, seed=4, progress=False)
    assert sha(a) == sha(b) != sha(c)
    assert not (tmp_path / "a.h5.partial").exists()


def test_layout_dtypes_and_attributes(maps: Path) -> None:
    with h5py.File(maps) as f:
        assert f["maps"].shape == (600, 64, 64) and f["maps"].dtype == np.float32
        assert f["maps"].compression == "lzf" and f["maps"].chunks == (16, 64, 64)
        assert f["params"].shape == (600, 2) and f["params"].dtype == np.float32
        assert f["cosmology"].shape == (600,) and f["cosmology"].dtype == np.int32
        assert f.attrs["hpo.kind"] == "lensing" and f.attrs["hpo.seed"] == 7
        assert json.loads(f.attrs["hpo.params"])["cosmologies"] == 3
        assert f.attrs["hpo.param.pixel_arcmin"] == pytest.approx(3.5 * 60 / 256)
        assert f.attrs["hpo.param.shift"] == 0.04 and f.attrs["hpo.param.galaxy_density"] == 0.0
        table = f.attrs["cosmologies"]
        index, params = f["cosmology"][:], f["params"][:]
    assert table.shape == (3, 2) and tuple(table[0]) == (0.3, 0.8)
    assert (np.abs(table[1:, 0] - 0.3) <= 0.1).all() and (np.abs(table[1:, 1] - 0.8) <= 0.2).all()
    assert (index == np.arange(600) % 3).all()  # evenly spread, every prefix balanced
    np.testing.assert_allclose(params, table[index], rtol=1e-6)
    facts = check_file(maps).facts
    assert facts["map"] == "64×64" and facts["cosmologies"] == 3 and facts["shift λ"] == 0.04
    assert facts["κ min"] >= -0.04 and facts["κ skewness"] > 1


@pytest.mark.parametrize("size", [128, 256])
def test_sizes_honoured(tmp_path: Path, size: int) -> None:
    path = write_lensing(tmp_path / f"l{size}.h5", events=5, size=size, seed=1, progress=False)
    summary = check_file(path)
    assert summary.datasets["maps"] == ((5, size, size), "float32") and summary.facts["map"] == f"{size}×{size}"
    assert summary.facts["cosmologies"] == 1


@pytest.mark.parametrize("kwargs, message", [
    ({"size": 100}, "--size for lensing must be 64, 128 or 256, but got 100"),
    ({"cosmologies": 0}, r"--cosmologies must be between 1 and --events \(2\), but got 0"),
    ({"cosmologies": 5}, r"--cosmologies must be between 1 and --events \(2\), but got 5"),
    ({"galaxy_density": -1.0}, "--galaxy-density must be >= 0"),
    ({"shift": 0.0}, r"shift \(the lognormal λ\) must be > 0"),
])
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"events": 2, **kwargs}
    with pytest.raises(HpoError, match=message):
        write_lensing(tmp_path / "bad.h5", progress=False, **args)
    assert not (tmp_path / "bad.h5").exists()


def test_measured_power_spectrum_follows_the_input(tmp_path: Path) -> None:
    """The maps' C_ℓ (shared estimator) follows the input C_ℓ in every bin, per cosmology."""
    path = write_lensing(tmp_path / "cl.h5", events=400, cosmologies=2, seed=5, progress=False)
    with h5py.File(path) as f:
        kappa, index, table = f["maps"][:], f["cosmology"][:], f.attrs["cosmologies"]
    for c in range(2):
        ell, cl = power_spectrum_2d(kappa[index == c].astype(np.float64), pixel_size=PIXEL_RAD)
        measured = cl.mean(axis=0)
        expected = lensing.angular_power(ell, *table[c])
        ratio = measured / expected
        assert np.abs(ratio - 1).max() < 0.12, (c, ratio)  # 200 maps; the largest scales have few modes
        assert np.abs(ratio[len(ratio) // 2:] - 1).max() < 0.04, (c, ratio)  # many modes: close to 1


def test_sigma8_scales_the_spectrum_and_omega_m_its_shape() -> None:
    ell = np.array([100.0, 1000.0, 10000.0])
    base = lensing.angular_power(ell, 0.3, 0.8)
    np.testing.assert_allclose(lensing.angular_power(ell, 0.3, 1.0) / base, (1.0 / 0.8) ** 2)
    ratio = lensing.angular_power(ell, 0.4, 0.8) / base
    assert ratio[0] == pytest.approx((0.4 / 0.3) ** 0.5, rel=0.01) and ratio[2] > ratio[1] > ratio[0]


def test_maps_are_skewed_shifted_lognormal(small: Path) -> None:
    """κ ≥ −λ, mean 0, positively skewed (the lognormal's skewness for σ_g² ≈ 0.31 is about 2)."""
    with h5py.File(small) as f:
        kappa = f["maps"][:]
    assert kappa.min() >= -0.04 * (1 + 1e-6)
    assert abs(float(kappa.mean())) < 1e-3 and 0.02 < float(kappa.std()) < 0.03
    assert 1.5 < skewness(kappa) < 2.6
    _, sigma2 = lensing.gaussian_spectrum(0.3, 0.8, 64)
    lognormal = (np.exp(sigma2) + 2) * np.sqrt(np.exp(sigma2) - 1)
    assert skewness(kappa) == pytest.approx(lognormal, rel=0.15)


def test_shape_noise(tmp_path: Path) -> None:
    """With n_gal = 30 per arcmin², Gaussian noise σ = 0.26/√(n_gal A_pix) is added: maps go below −λ."""
    path = write_lensing(tmp_path / "noisy.h5", events=50, seed=3, galaxy_density=30.0, progress=False)
    with h5py.File(path) as f:
        noisy = f["maps"][:]
    sigma_noise = 0.26 / np.sqrt(30.0 * lensing.PIXEL_ARCMIN**2)
    assert float(noisy.std()) == pytest.approx(np.hypot(0.0241, sigma_noise), rel=0.05)
    assert noisy.min() < -0.04
    assert check_file(path).events == 50  # no κ >= -λ check for noisy maps


@pytest.mark.slow
def test_memory_bounded_for_many_256_maps(tmp_path: Path, peak_rss_mib: Any) -> None:
    """2000 maps of 256² (512 MiB uncompressed) stream in chunks: peak RSS far below that."""
    code = (
        "import sys\n"
        "from trainables.data.generate import write_lensing\n"
        "write_lensing(sys.argv[1], events=2000, size=256, cosmologies=4, seed=2, progress=False)\n"
    )
    peak_mib = peak_rss_mib(code, str(tmp_path / "big.h5"))
    assert peak_mib < 256, f"peak RSS {peak_mib:.0f} MiB"
    summary = check_file(tmp_path / "big.h5")
    assert summary.events == 2000 and summary.facts["cosmologies"] == 4


def test_check_for_training(small: Path) -> None:
    cfg = DataConfig(path=str(small))
    assert check_for_training(cfg, "lensing", batch_size=16, workers=2).events == 50
    with pytest.raises(DataError, match=r"40 training events per rank with 1 rank\(s\), fewer than one batch of 64"):
        check_for_training(cfg, "lensing", batch_size=64, workers=1)


def test_cli_default_size_and_cosmologies(tmp_path: Path) -> None:
    from orchestrator.cli.data import command

    runner = CliRunner()
    out = tmp_path / "cli.h5"
    result = runner.invoke(command, ["generate", "lensing", "--out", str(out), "--events", "12", "--cosmologies", "4",
                                     "--quiet"])
    assert result.exit_code == 0, result.output
    assert "'cosmologies': 4" in result.output
    assert check_file(out).datasets["maps"][0] == (12, 64, 64)
    result = runner.invoke(command, ["generate", "lensing", "--out", str(out), "--events", "2", "--signal-fraction", "0.3"])
    assert isinstance(result.exception, HpoError)
    assert "--signal-fraction applies to calo data only, not lensing" in str(result.exception)


def test_public_bare_kappa_accepted(tmp_path: Path) -> None:
    """A bare (N, S, S) ``kappa`` (or ``maps``) dataset, no attributes: lensing, no shift check."""
    path = tmp_path / "public.h5"
    with h5py.File(path, "w") as f:
        f["kappa"] = np.random.default_rng(0).normal(0, 0.02, (6, 32, 32)).astype(np.float32)
    summary = check_file(path)
    assert summary.kind == "lensing" and summary.events == 6 and "cosmologies" not in summary.facts


# --- every bad-data case, one test each -------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.h5: file not found"):
        check_file(tmp_path / "nope.h5", "lensing")


def test_missing_key(small: Path, broken: Any) -> None:
    path = broken(small, lambda f: f.__delitem__("params"))
    with pytest.raises(DataError, match=r"broken\.h5:params: missing dataset; a lensing file needs maps, params, cosmology"):
        check_file(path)


def test_wrong_rank(small: Path, broken: Any) -> None:
    path = broken(small, broken.replace("maps", np.zeros((50, 4096), np.float32)))
    with pytest.raises(DataError, match=r"broken\.h5:maps: expected rank 3, but got shape \(50, 4096\)"):
        check_file(path)


def test_wrong_dtype(small: Path, broken: Any) -> None:
    path = broken(small, broken.replace("cosmology", np.zeros(50, np.float32)))
    with pytest.raises(DataError, match=r"broken\.h5:cosmology: expected a numeric dtype \(iu\), but got float32"):
        check_file(path)


def test_not_square(small: Path, broken: Any) -> None:
    path = broken(small, broken.replace("maps", np.zeros((50, 64, 32), np.float32)))
    with pytest.raises(DataError, match=r"broken\.h5:maps: maps must be square \(N, S, S\), but got \(50, 64, 32\)"):
        check_file(path)


def test_wrong_number_of_parameters(small: Path, broken: Any) -> None:
    path = broken(small, broken.replace("params", np.zeros((50, 3), np.float32)))
    with pytest.raises(DataError, match=r"broken\.h5:params: expected shape \(N, 2\) for \(Omega_m, sigma_8\)"):
        check_file(path)


def test_length_mismatch(small: Path, broken: Any) -> None:
    path = broken(small, broken.replace("cosmology", np.zeros(49, np.int32)))
    with pytest.raises(DataError, match=r"broken\.h5:cosmology: has 49 events but maps has 50; they must match"):
        check_file(path)


def test_nan_values(small: Path, broken: Any) -> None:
    path = broken(small, lambda f: f["maps"].__setitem__((31, 5, 5), np.nan))
    with pytest.raises(DataError, match=r"broken\.h5:maps: NaN or Inf values \(first at event 31\)"):
        check_file(path)


def test_kappa_below_minus_shift(small: Path, broken: Any) -> None:
    path = broken(small, lambda f: f["maps"].__setitem__((9, 0, 0), -0.1))
    with pytest.raises(DataError, match=r"broken\.h5:maps: κ = -0\.1 at event 9 is below -shift = -0\.04"):
        check_file(path)


def test_cosmology_index_out_of_range(small: Path, broken: Any) -> None:
    path = broken(small, lambda f: f["cosmology"].__setitem__(4, 1))
    with pytest.raises(DataError, match=r"broken\.h5:cosmology: cosmology index 1 at event 4; indices must be 0 to 0"):
        check_file(path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.h5"
    with h5py.File(path, "w") as f:
        f.attrs["hpo.kind"] = "lensing"
        f.create_dataset("maps", shape=(0, 64, 64), dtype=np.float32)
        f.create_dataset("params", shape=(0, 2), dtype=np.float32)
        f.create_dataset("cosmology", shape=(0,), dtype=np.int32)
    with pytest.raises(DataError, match=r"empty\.h5:maps: the file holds no events"):
        check_file(path)


def test_wrong_kind(small: Path) -> None:
    with pytest.raises(DataError, match=r"small\.h5: the file holds lensing data, not calo; pass --kind lensing"):
        check_file(small, "calo")
