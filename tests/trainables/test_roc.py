"""Weighted ROC metrics against hand-computed and analytic cases."""

from __future__ import annotations

import numpy as np
import pytest

from trainables.metrics import auc, roc_curve, selection_point, tpr_at_fpr


def test_perfect_classifier_has_auc_one() -> None:
    labels = np.r_[np.ones(50), np.zeros(50)]
    scores = np.r_[np.linspace(0.6, 1, 50), np.linspace(0, 0.4, 50)]
    fpr, tpr, _ = roc_curve(scores, labels)
    assert auc(fpr, tpr) == pytest.approx(1.0)
    assert tpr_at_fpr(scores, labels, None, 1e-3) == pytest.approx(1.0)


def test_random_scores_have_auc_one_half() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200_000)
    fpr, tpr, _ = roc_curve(rng.random(labels.size), labels)
    assert auc(fpr, tpr) == pytest.approx(0.5, abs=0.01)


def test_known_weighted_roc_by_hand() -> None:
    # scores (desc): 0.9 S w1, 0.8 B w2, 0.7 S w3, 0.1 B w2  -> P = 4, N = 4
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    labels = np.array([1, 0, 1, 0])
    weights = np.array([1.0, 2.0, 3.0, 2.0])
    fpr, tpr, thr = roc_curve(scores, labels, weights)
    np.testing.assert_allclose(tpr, [0, 0.25, 0.25, 1.0, 1.0])
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1.0])
    np.testing.assert_allclose(thr[1:], [0.9, 0.8, 0.7, 0.1])
    assert auc(fpr, tpr) == pytest.approx(0.5 * 0.25 + 0.5 * 1.0)
    assert tpr_at_fpr(scores, labels, weights, 0.25) == pytest.approx(0.25)  # on the vertical step at fpr 0


def test_ties_form_one_step_whatever_the_order() -> None:
    scores = np.array([0.5, 0.5, 0.5, 0.5])
    labels = np.array([1, 0, 1, 0])
    fpr, tpr, _ = roc_curve(scores, labels)
    np.testing.assert_allclose(fpr, [0, 1])
    np.testing.assert_allclose(tpr, [0, 1])
    fpr2, _, _ = roc_curve(scores[::-1], labels[::-1])
    np.testing.assert_allclose(fpr2, fpr)


def test_weights_change_the_false_positive_rate() -> None:
    scores = np.array([0.9, 0.8, 0.2])
    labels = np.array([1, 0, 0])
    heavy = np.array([1.0, 1000.0, 1.0])
    assert selection_point(scores > 0.5, labels, heavy) == pytest.approx((1.0, 1000 / 1001))
    assert selection_point(scores > 0.5, labels) == pytest.approx((1.0, 0.5))


def test_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="one length"):
        roc_curve(np.zeros(3), np.zeros(2))
