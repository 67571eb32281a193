"""Comparisons that hold on every processor: tolerances derived from the arithmetic.

numpy and torch pick vector kernels (exp, pow, cbrt, BLAS blockings) by processor, so the last
bits of a float chain move between machines. Golden data made on one machine is therefore
compared within a few ulps, values truncated to integers after float work may move by one
level where the float sits within a few ulps of an integer, and an argmax may flip where two
candidates tie within the rounding of their scores.
"""

from __future__ import annotations

import numpy as np
import torch

F64_EPS = float(np.finfo(np.float64).eps)  # 2.2e-16: one ulp of 1.0 in float64
F32_EPS = float(np.finfo(np.float32).eps)  # 1.2e-7: one ulp of 1.0 in float32
UINT8_TOP = 256.0  # values truncated to uint8 lie in [0, 256)


def as_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def assert_close(actual, expected, atol: float, what: str = "") -> None:
    """|actual - expected| <= atol everywhere, shapes equal."""
    actual, expected = as_numpy(actual), as_numpy(expected)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=atol, err_msg=what)


def assert_truncated_close(actual, expected, before_truncation, near: float,
                           max_fraction: float = 0.01) -> int:
    """Integers made by truncating float work, against integers made on another machine.

    Equal, except by one level where the float value (``before_truncation``, computed here)
    lies within ``near`` of an integer: there another processor's last bit can land on either
    side. The differing values are counted and must stay under ``max_fraction`` of the array,
    so a real error cannot hide behind the tolerance. Returns the count.
    """
    actual, expected = as_numpy(actual).astype(np.int64), as_numpy(expected).astype(np.int64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    diff = actual - expected
    assert np.abs(diff).max(initial=0) <= 1, f"differs by {np.abs(diff).max()} levels"
    value = as_numpy(before_truncation).astype(np.float64)
    near_integer = np.abs(value - np.round(value)) <= near
    assert near_integer[diff != 0].all(), "a value differs that is not within rounding of an integer"
    count = int(np.count_nonzero(diff))
    assert count <= max_fraction * diff.size, f"{count} of {diff.size} values differ"
    return count


def top_two_gap(scores: torch.Tensor) -> torch.Tensor:
    """Best minus runner-up score of each row of a (rows, candidates) matrix."""
    top = torch.topk(scores, 2, dim=1).values
    return top[:, 0] - top[:, 1]


def assert_same_choice(scores: torch.Tensor, chosen: torch.Tensor, expected: torch.Tensor,
                       score_tol: float) -> torch.Tensor:
    """Two argmax results over the same (rows, candidates) scores agree up to near-ties.

    Where the indices differ, the scores they point at must agree within ``score_tol`` (the
    rounding of a score): then either choice is a correct maximum. Returns the rows that agree.
    """
    chosen_scores = scores.gather(1, chosen.view(-1, 1)).flatten()
    expected_scores = scores.gather(1, expected.view(-1, 1)).flatten()
    worst = float((chosen_scores - expected_scores).abs().max())
    assert worst <= score_tol, f"a different pick whose score differs by {worst:.3g} > {score_tol:.3g}"
    return chosen.flatten() == expected.flatten()
