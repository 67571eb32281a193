"""The fast global smoother (Min et al., TIP 2014): edge-aware smoothing and filling of ab.

The official test script post-processes ab with OpenCV's
``cv2.ximgproc.createFastGlobalSmootherFilter(guide, 500, 4)`` (REFERENCE.md §7). OpenCV is not
a dependency, so this is the same algorithm written from that description:

* neighbour weights ``w = exp(-|g_p - g_q| / sigma)`` on a uint8 guide, between horizontal
  and between vertical neighbours;
* each iteration solves, for every row and then for every column independently, the
  tridiagonal system ``(I + lam * L_w) u = f`` (``L_w`` the 1-D weighted graph Laplacian of the
  line, no neighbour beyond the border) with the Thomas algorithm;
* ``lam`` is multiplied by ``lambda_attenuation`` after each iteration (500, 125, 31.25).

The Thomas recursion is sequential along a line but independent across lines, so each step
below is one vector operation over all lines and channels at once. float32 input is solved
in float32 like OpenCV (within 7.5e-5 of OpenCV's output on the golden data), float64 in
float64. ``normalized_fgs`` divides the smoothed confidence-weighted values by the smoothed
confidence: the classic engine uses it to fill unconfident regions from confident ones.
"""

from __future__ import annotations

import numpy as np
import torch

from vidcolor.color.depth import UINT8_MAX
from vidcolor.color.lab import L_MEAN, L_RANGE

# OpenCV's defaults, used by the official test script (REFERENCE.md §7, test.py:31-33).
OFFICIAL_FGS_LAMBDA = 500.0
OFFICIAL_FGS_SIGMA = 4.0
OFFICIAL_FGS_LAMBDA_ATTENUATION = 0.25
OFFICIAL_FGS_ITERATIONS = 3
# Denominator floor of normalized_fgs: where no confidence reaches a pixel, return 0 rather
# than 0/0.
NORMALIZED_FGS_EPSILON = 1e-8


def luminance_guide(l_centred) -> np.ndarray:
    """The official guide: uint8((L_centred + 50) * 255 / 100), truncating (REFERENCE.md §7).

    ``l_centred`` (H, W) numpy or torch, centred L in [-50, 50]; computed in float32 like the
    official float32 tensor, then clipped to [0, 255] before the cast.
    """
    if isinstance(l_centred, torch.Tensor):
        l_centred = l_centred.detach().to("cpu", torch.float32).numpy()
    l_centred = np.asarray(l_centred, dtype=np.float32)
    if l_centred.ndim != 2:
        raise ValueError(f"luminance_guide: expected (H, W) centred L, got shape "
                         f"{l_centred.shape}")
    scaled = (l_centred + np.float32(L_MEAN)) * np.float32(UINT8_MAX) / np.float32(L_RANGE)
    return np.clip(scaled, 0.0, 255.0).astype(np.uint8)


def _edge_weights(guide: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """exp(-|g_p - g_q| / sigma) between right neighbours (H, W-1) and down neighbours (H-1, W)."""
    table = np.exp(-np.arange(256, dtype=np.float64) / sigma)
    g = guide.astype(np.int16)
    horizontal = table[np.abs(g[:, 1:] - g[:, :-1])]
    vertical = table[np.abs(g[1:, :] - g[:-1, :])]
    return horizontal, vertical


def _solve_lines(lines, link_weights, lam: float):
    """Solve (I + lam * L_w) u = f along axis 0, in place, for every column of ``lines``.

    ``lines``: (n, C, m) values, a line of length n for each of C x m columns.
    ``link_weights``: (n - 1, m) weights between positions k and k + 1 of each line.
    Works on numpy arrays and torch tensors alike (only indexing and arithmetic).
    """
    n = lines.shape[0]
    if n == 1:
        return lines
    off = -lam * link_weights  # the sub- and super-diagonal, (n - 1, m)
    # Thomas algorithm. Forward sweep: c'_k = c_k / d_k, f'_k = (f_k - a_k f'_{k-1}) / d_k with
    # d_k = b_k - a_k c'_{k-1}; b_k = 1 - a_k - c_k (a row of I + lam * L_w sums to 1).
    c_prime = [None] * (n - 1)
    inv_denominator = 1.0 / (1.0 - off[0])
    c_prime[0] = off[0] * inv_denominator
    lines[0] *= inv_denominator
    for k in range(1, n):
        lower = off[k - 1]
        diagonal = 1.0 - lower - off[k] if k < n - 1 else 1.0 - lower
        inv_denominator = 1.0 / (diagonal - lower * c_prime[k - 1])
        if k < n - 1:
            c_prime[k] = off[k] * inv_denominator
        lines[k] -= lower * lines[k - 1]
        lines[k] *= inv_denominator
    # Back substitution: u_k = f'_k - c'_k u_{k+1}.
    for k in range(n - 2, -1, -1):
        lines[k] -= c_prime[k] * lines[k + 1]
    return lines


def _check_fgs_inputs(image, guide) -> None:
    if image.ndim != 3:
        raise ValueError(f"fgs_filter: image must be (C, H, W), got shape {tuple(image.shape)}")
    if not isinstance(guide, np.ndarray) or guide.dtype != np.uint8 or guide.ndim != 2:
        raise ValueError(
            f"fgs_filter: guide must be a uint8 (H, W) numpy array, got "
            f"{type(guide).__name__} {getattr(guide, 'dtype', '')} {getattr(guide, 'shape', '')}"
        )
    if tuple(guide.shape) != tuple(image.shape[1:]):
        raise ValueError(f"fgs_filter: guide {tuple(guide.shape)} does not match image "
                         f"{tuple(image.shape)}")


def _relayout(array, axes: tuple[int, int, int]):
    """Transpose into a contiguous copy (numpy or torch), so each Thomas step reads one block."""
    if isinstance(array, torch.Tensor):
        return array.permute(*axes).contiguous()
    return np.ascontiguousarray(array.transpose(axes))


def _working_copy(image, horizontal: np.ndarray, vertical: np.ndarray):
    """The image and the weights in the precision and place the solve runs in.

    float32 stays float32 (OpenCV solves in float32 too: 7e-5 from its output on the golden
    data, against 1.5e-4 for a float64 solve) and float64 stays float64. CPU tensors are solved
    as numpy arrays (lower per-operation overhead); other devices in torch where they live.
    """
    if isinstance(image, np.ndarray):
        dtype = np.float64 if image.dtype == np.float64 else np.float32
        return image.astype(dtype), horizontal.astype(dtype), vertical.astype(dtype)
    dtype = torch.float64 if image.dtype == torch.float64 else torch.float32
    if image.device.type == "cpu":
        return _working_copy(image.detach().to(dtype).numpy(), horizontal, vertical)
    work = image.detach().to(dtype, copy=True)
    return (work, torch.from_numpy(horizontal).to(image.device, dtype),
            torch.from_numpy(vertical).to(image.device, dtype))


def fgs_filter(image, guide: np.ndarray, lam: float = OFFICIAL_FGS_LAMBDA,
               sigma: float = OFFICIAL_FGS_SIGMA,
               lambda_attenuation: float = OFFICIAL_FGS_LAMBDA_ATTENUATION,
               iterations: int = OFFICIAL_FGS_ITERATIONS):
    """Fast global smoother of each channel of ``image`` (C, H, W), guided by uint8 ``guide``.

    ``image`` is numpy (float32/float64) or torch (any float dtype and device); the result has
    the same type, dtype and device. Defaults are the official post-processing (REFERENCE.md §7).
    """
    _check_fgs_inputs(image, guide)
    if sigma <= 0 or lam < 0 or iterations < 0:
        raise ValueError(f"fgs_filter: need sigma > 0, lam >= 0, iterations >= 0; got "
                         f"sigma={sigma}, lam={lam}, iterations={iterations}")
    horizontal, vertical = _edge_weights(guide, sigma)
    work, horizontal, vertical = _working_copy(image, horizontal, vertical)
    horizontal = _relayout(horizontal[None], (2, 0, 1))[:, 0]  # (W - 1, H): one row per step
    current_lam = float(lam)
    for _ in range(iterations):
        rows = _solve_lines(_relayout(work, (2, 0, 1)), horizontal, current_lam)  # (W, C, H)
        columns = _solve_lines(_relayout(rows, (2, 1, 0)), vertical, current_lam)  # (H, C, W)
        work = _relayout(columns, (1, 0, 2))
        current_lam *= lambda_attenuation
    if isinstance(image, torch.Tensor):
        result = work if isinstance(work, torch.Tensor) else torch.from_numpy(work)
        return result.to(device=image.device, dtype=image.dtype)
    return work.astype(image.dtype, copy=False)


def normalized_fgs(values, confidence, guide: np.ndarray, **fgs_options):
    """fgs(values * confidence) / fgs(confidence): confidence-weighted edge-aware filling.

    ``values`` (C, H, W), ``confidence`` (H, W) or (1, H, W) >= 0, numpy or torch alike.
    A pixel's result is the average of nearby values weighted by their confidence and by how
    little the guide changes on the way, so confident colours spread into unconfident regions
    up to the guide's edges. One FGS call smooths the C weighted channels and the weight
    together (the tridiagonal coefficients are shared).
    """
    if values.ndim != 3:
        raise ValueError(f"normalized_fgs: values must be (C, H, W), got shape "
                         f"{tuple(values.shape)}")
    weight = confidence.reshape(1, *confidence.shape[-2:])
    if tuple(weight.shape[-2:]) != tuple(values.shape[-2:]) or confidence.ndim not in (2, 3):
        raise ValueError(f"normalized_fgs: confidence {tuple(confidence.shape)} does not match "
                         f"values {tuple(values.shape)}")
    concat = torch.cat if isinstance(values, torch.Tensor) else np.concatenate
    smoothed = fgs_filter(concat([values * weight, weight], 0), guide, **fgs_options)
    denominator = smoothed[-1:]
    if isinstance(denominator, torch.Tensor):
        denominator = denominator.clamp_min(NORMALIZED_FGS_EPSILON)
    else:
        denominator = np.maximum(denominator, NORMALIZED_FGS_EPSILON)
    return smoothed[:-1] / denominator
