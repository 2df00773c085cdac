"""Paired comparison of a quantized file with its float source: exact McNemar and the loss interval."""

from __future__ import annotations

import numpy as np
import pytest

from edgemaker.evaluate.metrics import evaluate_predictions, paired_loss
from edgemaker.export.stage import accuracy_warnings


def _eval(right: list[bool]):
    """An evaluation over two classes where sample i is right iff right[i]."""
    truth = ["a"] * len(right)
    proba = np.array([[0.9, 0.1] if r else [0.1, 0.9] for r in right])
    return evaluate_predictions(["a", "b"], truth, proba)


def test_one_flip_in_twelve_is_not_significant_and_many_are():
    small = paired_loss(_eval([True] * 12), _eval([False] + [True] * 11))
    assert (small.lost, small.gained) == (1, 0) and small.p_value == 1.0
    assert small.interval[0] <= 0 < small.interval[1] and small.loss == pytest.approx(1 / 12)
    big = paired_loss(_eval([True] * 300), _eval([False] * 9 + [True] * 291))
    assert big.p_value == pytest.approx(2 / 2**9) and big.interval[0] > 0
    same = paired_loss(_eval([True, False]), _eval([True, False]))
    assert same.p_value == 1.0 and same.interval == (0.0, 0.0)


def test_mcnemar_and_interval_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(5):
        a, b = rng.random(200) < 0.9, rng.random(200) < 0.87
        r = paired_loss(_eval(list(a)), _eval(list(b)))
        k, n = r.lost, r.lost + r.gained
        test = stats.binomtest(k, n, 0.5)
        assert r.p_value == pytest.approx(test.pvalue, rel=1e-6)
        ci = test.proportion_ci(0.95, method="exact")
        assert r.interval[0] == pytest.approx(n / 200 * (2 * ci.low - 1), abs=1e-6)
        assert r.interval[1] == pytest.approx(n / 200 * (2 * ci.high - 1), abs=1e-6)


def test_warning_only_for_a_real_loss():
    def export(fmt, acc, vs):
        return {"format": fmt, "quantization": "none" if "fp32" in fmt else "int8", "test_accuracy": acc,
                "vs_float": vs.to_dict()}

    fp32 = _eval([True] * 12)
    noise = paired_loss(fp32, _eval([False] + [True] * 11))
    assert accuracy_warnings([export("onnx-fp32", 1.0, paired_loss(fp32, fp32)), export("onnx-int8", 0.9167, noise)],
                              fp32, "image") == []
    big_fp32 = _eval([True] * 300)
    real = paired_loss(big_fp32, _eval([False] * 9 + [True] * 291))
    warnings = accuracy_warnings([export("onnx-int8", 0.97, real)], big_fp32, "image")
    assert len(warnings) == 1 and "McNemar p = 0.004" in warnings[0] and "9 right only in fp32" in warnings[0]
