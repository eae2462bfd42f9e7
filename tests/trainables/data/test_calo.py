"""Calorimeter generator, reader and checks: determinism, layout, shards, learnability, bad files."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from trainables.data.checks import check_file, check_for_training
from trainables.data.generate import write_calo
from trainables.data.readers import load_arrays, make_datasets, split_indices
from trainables.data.spec import DataConfig
from trainables.errors import DataError, HpoError
from trainables.metrics import auc, roc_curve


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    a = write_calo(tmp_path / "a.h5", events=300, seed=3, progress=False)
    b = write_calo(tmp_path / "b.h5", events=300, seed=3, progress=False)
    c = write_calo(tmp_path / "c.h5", events=300, seed=4, progress=False)
    assert sha(a) == sha(b) != sha(c)


def test_public_layout_and_attributes(calo_file: Path) -> None:
    with h5py.File(calo_file) as f:
        g = f["all_events"]
        for key in ("hist", "histEM", "histtrack"):
            assert g[key].shape == (1200, 64, 64) and g[key].dtype == np.float32
        for key in ("y", "weight", "normalized_weight", "passSR4J", "passSR5J", "passSR", "HT", "n_jets"):
            assert g[key].shape == (1200,)
        assert f.attrs["hpo.kind"] == "calo" and f.attrs["hpo.seed"] == 5
        assert json.loads(f.attrs["hpo.params"])["events"] == 1200
        assert (g["passSR"][:] == (g["passSR4J"][:] | g["passSR5J"][:])).all()
        assert (g["histEM"][:50] <= g["hist"][:50] + 1e-3).all()  # EM energy is part of the total


@pytest.mark.slow
def test_size_224_honoured(tmp_path: Path) -> None:
    path = write_calo(tmp_path / "big.h5", events=40, size=224, seed=1, progress=False)
    assert check_file(path).datasets["all_events/hist"][0] == (40, 224, 224)


def test_physics_selection_working_point(calo_file: Path) -> None:
    """The cut-based selection sits at a low weighted FPR and keeps part of the signal (SCIENCE.md)."""
    facts = check_file(calo_file).facts
    assert 0.05 < facts["selection TPR (weighted)"] < 0.5
    assert facts["selection FPR (weighted)"] < 2e-3


def test_high_level_variables_are_learnable(calo_file: Path) -> None:
    """A logistic regression on (HT, n_jets, leading-jet pT, Σ m_J) separates signal from background."""
    with h5py.File(calo_file) as f:
        g = f["all_events"]
        x = np.stack([g[k][:] for k in ("HT", "n_jets", "lead_jet_pt", "sum_jet_mass")], axis=1).astype(np.float64)
        y = g["y"][:]
    x = (x - x.mean(0)) / (x.std(0) + 1e-9)
    w = np.zeros(x.shape[1])
    b = 0.0
    for _ in range(500):
        p = 1 / (1 + np.exp(-(x @ w + b)))
        w -= 0.5 * x.T @ (p - y) / len(y)
        b -= 0.5 * float(np.mean(p - y))
    fpr, tpr, _ = roc_curve(x @ w + b, y)
    assert auc(fpr, tpr) > 0.8


@pytest.mark.slow
def test_memory_bounded_for_100k_events(tmp_path: Path, peak_rss_mib: Any) -> None:
    """Generation streams in chunks: peak RSS stays far below the file's uncompressed size (~5 GiB)."""
    code = (
        "import sys\n"
        "from trainables.data.generate import write_calo\n"
        "write_calo(sys.argv[1], events=100_000, seed=2, progress=False)\n"
    )
    peak_mib = peak_rss_mib(code, str(tmp_path / "big.h5"), timeout=900)
    assert peak_mib < 1024, f"peak RSS {peak_mib:.0f} MiB"
    assert check_file(tmp_path / "big.h5").events == 100_000


def test_split_is_deterministic_and_disjoint() -> None:
    a = split_indices(1000, (0.8, 0.1, 0.1), seed=1)
    b = split_indices(1000, (0.8, 0.1, 0.1), seed=1)
    assert all((a[k] == b[k]).all() for k in a)
    assert len(set(a["train"]) | set(a["val"]) | set(a["test"])) == 1000
    assert a["train"].size == 800 and a["val"].size == 100
    assert not (split_indices(1000, (0.8, 0.1, 0.1), seed=2)["val"] == a["val"]).all()


def test_shards_are_disjoint_equal_and_normalised(calo_file: Path) -> None:
    cfg = DataConfig(path=str(calo_file))
    labels = []
    for rank in range(2):
        splits = make_datasets(cfg, "calo", batch_size=32, seed=0, rank=rank, size=2)
        batches = list(splits.train)
        assert len(batches) == splits.steps_per_epoch == (960 // 2) // 32
        x = np.concatenate([b["x"].numpy() for b in batches])
        assert x.shape[1:] == (64, 64, 3) and x.min() >= 0 and x.max() <= 1.0 + 1e-6
        labels.append(np.concatenate([b["y"].numpy() for b in batches]))
    # the two ranks' streams differ (disjoint shards), and a rank's epochs are shuffled differently
    assert not np.array_equal(labels[0], labels[1])
    splits = make_datasets(cfg, "calo", batch_size=32, seed=0, rank=0, size=1)
    assert splits.train_for_epoch is not None
    e0 = np.concatenate([b["y"].numpy() for b in splits.train_for_epoch(0)])
    e0_again = np.concatenate([b["y"].numpy() for b in splits.train_for_epoch(0)])
    e1 = np.concatenate([b["y"].numpy() for b in splits.train_for_epoch(1)])
    assert np.array_equal(e0, e0_again) and not np.array_equal(e0, e1)
    assert sum(int(b["x"].shape[0]) for b in splits.val) == splits.n_val == 120


def test_a_warm_workers_next_trial_reuses_the_pipelines_unless_something_changed(tmp_path: Path) -> None:
    path = write_calo(tmp_path / "c.h5", events=300, seed=3, progress=False)
    cfg = DataConfig(path=str(path))
    first = make_datasets(cfg, "calo", batch_size=16, seed=0)
    assert make_datasets(cfg, "calo", batch_size=16, seed=0) is first
    # the reused pipelines still give a whole epoch each time they are iterated
    assert sum(int(b["x"].shape[0]) for b in first.val) == sum(int(b["x"].shape[0]) for b in first.val) == first.n_val
    assert make_datasets(cfg, "calo", batch_size=32, seed=0) is not first
    second = make_datasets(cfg, "calo", batch_size=16, seed=0)
    assert second is not first and make_datasets(cfg, "calo", batch_size=16, seed=1) is not second
    third = make_datasets(cfg, "calo", batch_size=16, seed=1)
    write_calo(path, events=400, seed=4, progress=False)  # the file rewritten between two trials
    os.utime(path, (time.time() + 5, time.time() + 5))  # a new modification time even on a coarse clock
    fresh = make_datasets(cfg, "calo", batch_size=16, seed=1)
    assert fresh is not third and fresh.n_train + fresh.n_val + fresh.n_test == 400


def test_load_arrays_matches_split(calo_file: Path) -> None:
    cfg = DataConfig(path=str(calo_file))
    arrays = load_arrays(cfg, "calo", "val", seed=0, keys=["y", "weight"])
    with h5py.File(calo_file) as f:
        expected = f["all_events/y"][:][split_indices(1200, cfg.split, 0)["val"]]
    assert np.array_equal(arrays["y"], expected)


def test_unknown_reader_option(calo_file: Path) -> None:
    with pytest.raises(HpoError, match="channels must be 1 or 3"):
        make_datasets(DataConfig(path=str(calo_file)), "calo", batch_size=8, seed=0, options={"channels": 2})


# --- every bad-data case, one test each -------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope.h5: file not found"):
        check_file(tmp_path / "nope.h5")


def test_not_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "text.h5"
    path.write_text("not hdf5")
    with pytest.raises(DataError, match=r"text\.h5: not an HDF5 file"):
        check_file(path)


def test_missing_key(calo_file: Path, broken: Any) -> None:
    path = broken(calo_file, lambda f: f["all_events"].__delitem__("histEM"))
    with pytest.raises(DataError, match=r"broken.h5:all_events/histEM: missing dataset"):
        check_file(path)


def test_wrong_rank(calo_file: Path, broken: Any) -> None:
    def edit(f: h5py.File) -> None:
        del f["all_events/hist"]
        f["all_events"].create_dataset("hist", data=np.zeros((1200, 64), np.float32))

    with pytest.raises(DataError, match=r"all_events/hist: expected rank 3, but got shape \(1200, 64\)"):
        check_file(broken(calo_file, edit))


def test_wrong_dtype(calo_file: Path, broken: Any) -> None:
    def edit(f: h5py.File) -> None:
        del f["all_events/weight"]
        f["all_events"].create_dataset("weight", data=np.array(["x"] * 1200, dtype="S1"))

    with pytest.raises(DataError, match=r"all_events/weight: expected a numeric dtype"):
        check_file(broken(calo_file, edit))


def test_label_weight_length_mismatch(calo_file: Path, broken: Any) -> None:
    def edit(f: h5py.File) -> None:
        del f["all_events/weight"]
        f["all_events"].create_dataset("weight", data=np.ones(1199, np.float32))

    with pytest.raises(DataError, match=r"all_events/weight: has 1199 events but all_events/hist has 1200"):
        check_file(broken(calo_file, edit))


def test_nan_values(calo_file: Path, broken: Any) -> None:
    def edit(f: h5py.File) -> None:
        f["all_events/histtrack"][700, 3, 3] = np.nan

    with pytest.raises(DataError, match=r"all_events/histtrack: NaN or Inf values \(first at event 700\)"):
        check_file(broken(calo_file, edit))


def test_inf_weight(calo_file: Path, broken: Any) -> None:
    def edit(f: h5py.File) -> None:
        f["all_events/weight"][5] = np.inf

    with pytest.raises(DataError, match=r"all_events/weight: NaN or Inf values \(first at event 5\)"):
        check_file(broken(calo_file, edit))


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.h5"
    with h5py.File(path, "w") as f:
        f.attrs["hpo.kind"] = "calo"
        g = f.create_group("all_events")
        for key in ("hist", "histEM", "histtrack"):
            g.create_dataset(key, shape=(0, 64, 64), dtype=np.float32)
        for key in ("y", "weight"):
            g.create_dataset(key, shape=(0,), dtype=np.float32)
    with pytest.raises(DataError, match=r"empty\.h5:all_events/hist: the file holds no events"):
        check_file(path)


def test_bad_labels(calo_file: Path, broken: Any) -> None:
    with pytest.raises(DataError, match="labels must be 0"):
        check_file(broken(calo_file, lambda f: f["all_events/y"].__setitem__(0, 2.0)))


def test_too_small_for_batch_and_workers(calo_file: Path) -> None:
    cfg = DataConfig(path=str(calo_file), max_events=100)
    with pytest.raises(DataError, match=r"80 training events per rank with 1 rank\(s\), fewer than one batch of 128"):
        check_for_training(cfg, "calo", batch_size=128, workers=1)
    check_for_training(cfg, "calo", batch_size=16, workers=2)


def test_wrong_kind(calo_file: Path) -> None:
    with pytest.raises(HpoError, match=r"checks for data kind 'lensing' are not available|holds calo data"):
        check_file(calo_file, "lensing")
