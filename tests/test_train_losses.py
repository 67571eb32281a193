"""Each training loss against an independent float64 computation with plain loops (tiny tensors)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vidcolor.train import losses

# float64 throughout: the vectorised and the looped sums differ only by summation order, ~1e-15
# relative on values of order 1-100; 1e-10 leaves room without hiding a wrong formula.
REL = 1e-10


def rng_tensor(seed: int, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(0, scale, shape))


def test_perceptual_is_per_sample_mse():
    a, b = rng_tensor(0, 2, 3, 4, 5), rng_tensor(1, 2, 3, 4, 5)
    expected = [np.mean([(a[n, c, y, x] - b[n, c, y, x]).item() ** 2 for c in range(3) for y in range(4)
                         for x in range(5)]) for n in range(2)]
    assert losses.perceptual_loss(a, b).numpy() == pytest.approx(expected, rel=REL)


def contextual_loops(pred: np.ndarray, ref: np.ndarray, h: float) -> float:
    """Paper Eq. 7-8 / the issue's recipe, one position pair at a time."""
    channels = pred.shape[0]
    x = pred.reshape(channels, -1)
    y = ref.reshape(channels, -1)
    mean = [sum(y[c]) / y.shape[1] for c in range(channels)]
    xs = [[x[c, i] - mean[c] for c in range(channels)] for i in range(x.shape[1])]
    ys = [[y[c, j] - mean[c] for c in range(channels)] for j in range(y.shape[1])]
    xs = [[v / (math.sqrt(sum(u * u for u in vec)) + 2.22e-16) for v in vec] for vec in xs]
    ys = [[v / (math.sqrt(sum(u * u for u in vec)) + 2.22e-16) for v in vec] for vec in ys]
    best = []
    for xi in xs:
        d = [1 - sum(p * q for p, q in zip(xi, yj)) for yj in ys]
        d_min = min(d)
        w = [math.exp((1 - dj / (d_min + 1e-5)) / h) for dj in d]
        best.append(max(wj / sum(w) for wj in w))
    return -math.log(sum(best) / len(best))


def test_contextual_matches_loops():
    pred, ref = rng_tensor(2, 2, 4, 3, 3), rng_tensor(3, 2, 4, 2, 4)
    got = losses.contextual_loss(pred, ref).numpy()
    expected = [contextual_loops(pred[n].numpy(), ref[n].numpy(), losses.CONTEXTUAL_BANDWIDTH) for n in range(2)]
    assert got == pytest.approx(expected, rel=REL)


def test_contextual_is_zero_for_identical_features():
    # Every output feature finds itself: max_j A_ij is near 1, so the loss is near 0; a shuffled
    # reference still matches (context is orderless), an unrelated one does not.
    ref = rng_tensor(4, 1, 8, 4, 4)
    same = losses.contextual_loss(ref, ref).item()
    shuffled = losses.contextual_loss(ref, ref.flip(-1).flip(-2)).item()
    other = losses.contextual_loss(rng_tensor(5, 1, 8, 4, 4), ref).item()
    assert same == pytest.approx(shuffled, rel=1e-9)
    assert same < 0.01 < other


def test_contextual_layer_mix():
    pred = {"relu3_2": rng_tensor(6, 1, 3, 4, 4), "relu4_2": rng_tensor(7, 1, 3, 2, 2), "relu5_2": rng_tensor(8, 1, 3, 2, 2)}
    ref = {k: rng_tensor(9 + i, *v.shape) for i, (k, v) in enumerate(pred.items())}
    pooled = lambda t: t.reshape(1, 3, 2, 2, 2, 2).mean(dim=(3, 5))  # 2x2 average pool by hand
    expected = (2 * losses.contextual_loss(pooled(pred["relu3_2"]), pooled(ref["relu3_2"]))
                + 4 * losses.contextual_loss(pred["relu4_2"], ref["relu4_2"])
                + 8 * losses.contextual_loss(pred["relu5_2"], ref["relu5_2"]))
    assert losses.contextual_layers(pred, ref).item() == pytest.approx(expected.item(), rel=REL)


def smoothness_loops(pred: np.ndarray, truth: np.ndarray, alpha: float) -> float:
    _, height, width = pred.shape
    total = 0.0
    for y in range(height):
        for x in range(width):
            neighbours = [(y + dy, x + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                          if (dy, dx) != (0, 0) and 0 <= y + dy < height and 0 <= x + dx < width]
            logits = [-sum((truth[c, q[0], q[1]] - truth[c, y, x]) ** 2 for c in range(2)) / alpha for q in neighbours]
            top = max(logits)
            w = [math.exp(v - top) for v in logits]
            w = [v / sum(w) for v in w]
            for c in range(2):
                average = sum(wq * pred[c, q[0], q[1]] for wq, q in zip(w, neighbours))
                total += (pred[c, y, x] - average) ** 2
    return total / (2 * height * width)


def test_smoothness_matches_loops():
    pred, truth = rng_tensor(10, 2, 2, 4, 5, scale=20), rng_tensor(11, 2, 2, 4, 5, scale=5)
    got = losses.smoothness_loss(pred, truth).numpy()
    expected = [smoothness_loops(pred[n].numpy(), truth[n].numpy(), losses.SMOOTHNESS_ALPHA) for n in range(2)]
    assert got == pytest.approx(expected, rel=REL)


def test_smoothness_zero_on_flat_chroma():
    flat = torch.full((1, 2, 5, 6), 12.0, dtype=torch.float64)
    assert losses.smoothness_loss(flat, rng_tensor(12, 1, 2, 5, 6)).item() == pytest.approx(0.0, abs=1e-20)


def bilinear_loops(image: np.ndarray, y: float, x: float) -> np.ndarray:
    """Bilinear sample with edge clamping (grid_sample border, align_corners=True)."""
    height, width = image.shape[-2:]
    y, x = min(max(y, 0.0), height - 1.0), min(max(x, 0.0), width - 1.0)
    y0, x0 = int(math.floor(y)), int(math.floor(x))
    y1, x1 = min(y0 + 1, height - 1), min(x0 + 1, width - 1)
    fy, fx = y - y0, x - x0
    return ((1 - fy) * (1 - fx) * image[:, y0, x0] + (1 - fy) * fx * image[:, y0, x1]
            + fy * (1 - fx) * image[:, y1, x0] + fy * fx * image[:, y1, x1])


def test_temporal_matches_loops():
    current, previous = rng_tensor(13, 2, 2, 4, 5, scale=30), rng_tensor(14, 2, 2, 4, 5, scale=30)
    flow = rng_tensor(15, 2, 2, 4, 5, scale=1.5)
    mask = torch.from_numpy((np.random.default_rng(16).random((2, 1, 4, 5)) > 0.3).astype(np.float64))
    got = losses.temporal_loss(current, previous, flow, mask).numpy()
    expected = []
    for n in range(2):
        total = 0.0
        for y in range(4):
            for x in range(5):
                carried = bilinear_loops(current[n].numpy(), y + flow[n, 0, y, x].item(), x + flow[n, 1, y, x].item())
                total += mask[n, 0, y, x].item() * sum((carried - previous[n, :, y, x].numpy()) ** 2)
        expected.append(total / (2 * 4 * 5))
    assert got == pytest.approx(expected, rel=REL)


def test_l1_only_for_self_references():
    pred, truth = rng_tensor(17, 3, 2, 2, 3), rng_tensor(18, 3, 2, 2, 3)
    flags = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    got = losses.l1_loss(pred, truth, flags).numpy()
    expected = [flags[n].item() * np.mean(np.abs(pred[n].numpy() - truth[n].numpy())) for n in range(3)]
    assert got == pytest.approx(expected, rel=REL)


@pytest.mark.parametrize("generator", [False, True])
def test_relativistic_lsgan_matches_eq12(generator):
    real, fake = rng_tensor(19, 4), rng_tensor(20, 4)
    got = losses.relativistic_lsgan(real, fake, real.mean(), fake.mean(), generator=generator).mean().item()
    r, f = real.tolist(), fake.tolist()
    mean_r, mean_f = sum(r) / 4, sum(f) / 4
    if generator:  # targets swapped: the fake should look "more real than the average real"
        expected = (sum((x - mean_f + 1) ** 2 for x in r) / 4 + sum((x - mean_r - 1) ** 2 for x in f) / 4) / 2
    else:
        expected = (sum((x - mean_f - 1) ** 2 for x in r) / 4 + sum((x - mean_r + 1) ** 2 for x in f) / 4) / 2
    assert got == pytest.approx(expected, rel=REL)


def test_relativistic_gradient_through_global_means():
    # What DDP relies on: the loss over a batch split in two halves, each with the GLOBAL means,
    # averaged, has the gradient of the loss over the whole batch.
    real = rng_tensor(21, 4).requires_grad_()
    fake = rng_tensor(22, 4).requires_grad_()
    whole = losses.relativistic_lsgan(real, fake, real.mean(), fake.mean(), generator=False).mean()
    grad_whole = torch.autograd.grad(whole, (real, fake))
    halves = [losses.relativistic_lsgan(real[s], fake[s], real.mean(), fake.mean(), generator=False).mean()
              for s in (slice(0, 2), slice(2, 4))]
    grad_halves = torch.autograd.grad((halves[0] + halves[1]) / 2, (real, fake))
    for a, b in zip(grad_whole, grad_halves):
        assert torch.allclose(a, b, rtol=REL, atol=0)
