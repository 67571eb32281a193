"""The paper's training losses (§3.3), each a pure function returning one value per sample.

Every function returns a (B,) tensor: the training loop averages over the *global* batch, so a
DistributedDataParallel run (gradients averaged over processes) equals one process. Weights
are the paper's §4 values (:data:`PAPER_WEIGHTS`); where the official release differs, the
constant says so. Tensors are (B, C, H, W); ab in raw Lab units, as the networks produce it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vidcolor.motion.flow import warp

# Paper §4: "lambda_perc = 0.001, lambda_context = 0.2, lambda_smooth = 5.0, lambda_adv = 0.2,
# lambda_temporal = 0.02, lambda_L1 = 2.0" (the official train.py defaults are the same).
PAPER_WEIGHTS = {
    "perceptual": 0.001,
    "contextual": 0.2,
    "smoothness": 5.0,
    "adversarial": 0.2,
    "temporal": 0.02,
    "l1": 2.0,
}
LOSS_NAMES = tuple(PAPER_WEIGHTS)

CONTEXTUAL_BANDWIDTH = 0.1  # h of the contextual loss (paper §3.3, ContextualLoss.py)
CONTEXTUAL_MIN_EPS = 1e-5  # d / (min_j d + 1e-5)
CONTEXTUAL_NORM_EPS = 2.22e-16  # feature_normalize's epsilon, as in the correspondence subnet
# Layer weights of the official train.py:656-668: relu5_2 x8, relu4_2 x4, relu3_2 x2 (the latter
# after a 2x2 average pool); the paper only says higher layers weigh more.
CONTEXTUAL_LAYER_WEIGHTS = {"relu3_2": 2.0, "relu4_2": 4.0, "relu5_2": 8.0}
SMOOTHNESS_ALPHA = 10.0  # exp(-|chroma difference|^2 / alpha): the official WeightedAverage_color alpha
# The 8-neighbourhood of paper Eq. 11, as (row, column) offsets.
NEIGHBOURS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0))


def _per_sample_mean(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).mean(dim=1)


def perceptual_loss(pred_relu5_2: torch.Tensor, truth_relu5_2: torch.Tensor) -> torch.Tensor:
    """Paper Eq. 9: MSE between relu5_2 of the output and of the ground truth."""
    return _per_sample_mean((pred_relu5_2 - truth_relu5_2) ** 2)


def contextual_loss(pred: torch.Tensor, reference: torch.Tensor, bandwidth: float = CONTEXTUAL_BANDWIDTH,
                    ) -> torch.Tensor:
    """Paper Eq. 7-8, forward direction: does every output feature find a close reference one?

    Both maps are centred by the reference's channel means and L2-normalised per position;
    d_ij = 1 - cos(pred_i, ref_j); d~ = d / (min_j d + 1e-5); w = exp((1 - d~) / h); A_ij = w
    normalised over j; the loss is -log(mean_i max_j A_ij). The matrix is (HW) x (H'W'), at most
    1296 x 1296 at the paper's 216x384 crops for the layers used, so no chunking is needed.
    """
    if pred.shape[:2] != reference.shape[:2]:
        raise ValueError(f"contextual_loss: pred {tuple(pred.shape)} and reference {tuple(reference.shape)} "
                         f"need the same batch and channels")
    mean = reference.flatten(2).mean(dim=2)[:, :, None]
    x = pred.flatten(2) - mean
    y = reference.flatten(2) - mean
    x = x / (torch.linalg.vector_norm(x, dim=1, keepdim=True) + CONTEXTUAL_NORM_EPS)
    y = y / (torch.linalg.vector_norm(y, dim=1, keepdim=True) + CONTEXTUAL_NORM_EPS)
    distance = 1.0 - x.transpose(1, 2) @ y  # (B, N_pred, N_ref)
    relative = distance / (distance.amin(dim=2, keepdim=True) + CONTEXTUAL_MIN_EPS)
    # exp((1 - d~) / h) normalised over j is a softmax of (1 - d~) / h: same value, no overflow.
    affinity = torch.softmax((1.0 - relative) / bandwidth, dim=2)
    return -torch.log(affinity.amax(dim=2).mean(dim=1))


def contextual_layers(pred: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> torch.Tensor:
    """The official layer mix: 8 x relu5_2 + 4 x relu4_2 + 2 x relu3_2 (2x2 average-pooled)."""
    total = 0.0
    for layer, weight in CONTEXTUAL_LAYER_WEIGHTS.items():
        p, r = pred[layer], reference[layer]
        if layer == "relu3_2":
            p, r = F.avg_pool2d(p, 2), F.avg_pool2d(r, 2)
        total = total + weight * contextual_loss(p, r)
    return total


def neighbour_average(ab: torch.Tensor, guide_ab: torch.Tensor, alpha: float = SMOOTHNESS_ALPHA) -> torch.Tensor:
    """Each pixel's 8 neighbours of ``ab``, weighted by a softmax of -|guide chroma difference|^2 / alpha.

    Neighbours outside the image get no weight (the edge pixels average the neighbours they have).
    """
    height, width = ab.shape[-2:]
    pad_ab = F.pad(ab, (1, 1, 1, 1))
    pad_guide = F.pad(guide_ab, (1, 1, 1, 1))
    inside = F.pad(torch.ones_like(guide_ab[:, :1]), (1, 1, 1, 1))
    logits, values = [], []
    for dy, dx in NEIGHBOURS:
        rows, cols = slice(1 + dy, 1 + dy + height), slice(1 + dx, 1 + dx + width)
        difference = ((pad_guide[..., rows, cols] - guide_ab) ** 2).sum(dim=1, keepdim=True)
        logits.append((-difference / alpha).masked_fill(inside[..., rows, cols] == 0, float("-inf")))
        values.append(pad_ab[..., rows, cols])
    weights = torch.softmax(torch.stack(logits), dim=0)  # (8, B, 1, H, W)
    return (weights * torch.stack(values)).sum(dim=0)


def smoothness_loss(pred_ab: torch.Tensor, truth_ab: torch.Tensor, alpha: float = SMOOTHNESS_ALPHA) -> torch.Tensor:
    """Paper Eq. 11: the output against the weighted mean of its 8 neighbours, weights from the truth's chroma.

    (The official WeightedAverage_color also counts the pixel itself among its 3x3 "neighbours";
    the paper and this function do not.)
    """
    return _per_sample_mean((pred_ab - neighbour_average(pred_ab, truth_ab, alpha)) ** 2)


def temporal_loss(ab_current: torch.Tensor, ab_previous: torch.Tensor, flow: torch.Tensor,
                  mask: torch.Tensor) -> torch.Tensor:
    """Paper Eq. 13: this output carried by the flow onto the previous frame, against the previous output.

    ``flow`` (B, 2, H, W) is (row, col) on the previous frame's grid: pixel p of frame t-1 is at
    p + flow[p] in frame t (``vidcolor.motion.flow`` convention); ``mask`` (B, 1, H, W) is 1
    where that holds (not occluded). Mask-weighted MSE, as the official weighted_mse_loss.
    """
    carried = warp(ab_current, flow)
    return _per_sample_mean(mask * (carried - ab_previous) ** 2)


def l1_loss(pred_ab: torch.Tensor, truth_ab: torch.Tensor, self_reference: torch.Tensor) -> torch.Tensor:
    """Paper Eq. 6: L1 on ab, only for samples whose reference is their own ground truth (flag 1)."""
    return _per_sample_mean((pred_ab - truth_ab).abs()) * self_reference.to(pred_ab.dtype)


def relativistic_lsgan(real: torch.Tensor, fake: torch.Tensor, real_mean: torch.Tensor,
                       fake_mean: torch.Tensor, *, generator: bool) -> torch.Tensor:
    """Paper Eq. 12, relativistic-average LSGAN, per sample; its mean over the batch is the loss.

    Discriminator: [(D_r - mean D_f - 1)^2 + (D_f - mean D_r + 1)^2] / 2; the generator's is the
    mirror image (targets swapped). ``real_mean``/``fake_mean`` are the means over the GLOBAL
    batch (gathered across processes by the caller), which is what makes DDP equal one process.
    """
    target = -1.0 if generator else 1.0
    return ((real - fake_mean - target) ** 2 + (fake - real_mean + target) ** 2) / 2.0
