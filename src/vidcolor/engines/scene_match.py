"""Which reference shows the shot's scene: keypoints of the luminance, geometrically verified.

Both engines rank a shot's references with this (``Engine.reference_match``). The gray frames
can be compared with colour references through luminance only, and the engines' own
similarities do not separate scenes: the classic engine's mean confidence is high against any
textured picture, and its mutual-nearest-neighbour fraction ranked the right reference first
in 15 of 23 synthetic shots (bench/shots.py) and 57 of 58 real and synthetic queries at
640x480 (bench/reference_matching.py --mutual); the devc network's confidence has no
calibration without the real weights. Local keypoints survive what separates a shot's frames from another
moment of the same scene (camera moves, zoom, exposure), and a reference of another scene only
yields matches that no single geometric transform explains.

The score: SIFT keypoints of the contrast-stretched luminance at :data:`ANALYSIS_WIDTH`,
matched with Lowe's ratio test and one-to-one, then the fraction of the frame's keypoints that
a RANSAC homography keeps (the dominant plane of a hand-held shot). Measured by
``bench/reference_matching.py`` on real footage and synthetic scenes at 640x480: right
references score 0.077 and up, other scenes' 0.043 and below, and the right one ranked first
in every order given (at 90x160 too, where scores are lower: 0.030+ against 0.014-).
A weak layout term (correlation of small, normalised thumbnails) breaks ties among references
no keypoint tells apart (a textureless shot), too small to overturn keypoint evidence.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from vidcolor.color.lab import L_MEAN, L_RANGE

# Keypoints are found on the luminance resized to this width: detail finer than a 320-pixel
# picture is not needed to tell scenes apart, and SIFT's cost stays flat with resolution.
ANALYSIS_WIDTH = 320
MAX_KEYPOINTS = 800
# Luminance is stretched between these percentiles first, so a frame fading in or an exposure
# change keeps its keypoints (SIFT's contrast threshold is absolute).
STRETCH_PERCENTILES = (1.0, 99.0)
# Lowe's ratio test (Lowe 2004 uses 0.8): the best match must be clearly better than the next.
RATIO = 0.8
# RANSAC needs a few matches to mean anything; the reprojection tolerance is in analysis pixels
# (6 of 320: a hand-held shot's parallax off the dominant plane).
MIN_MATCHES = 8
RANSAC_TOLERANCE = 6.0
# Frames of the shot's first batch that are compared: its first and last.
FRAMES_COMPARED = 2
# Thumbnail of the layout term, and the weight that keeps it a tie-breaker: it adds at most
# LAYOUT_WEIGHT, a tenth of the smallest gap measured between the right and the best wrong
# reference's scores (0.019, synthetic scenes at 90x160).
THUMBNAIL = (24, 32)
LAYOUT_SHIFTS = (-2, 0, 2)  # thumbnail cells, each axis: a small camera move
LAYOUT_WEIGHT = 2e-3
# A best score below this means no reference shows the shot's scene: the midpoint between the
# right scene's lowest score (0.077) and another scene's highest (0.043) on real footage and
# synthetic scenes at 640x480 (bench/reference_matching.py). Frames far under ANALYSIS_WIDTH
# score lower and may be warned about with the right reference.
LOW_SCENE_MATCH = 0.06


@dataclass(frozen=True)
class SceneKeys:
    """One picture's keypoint positions (K, 2) and SIFT descriptors (K, 128), in analysis
    pixels, and its normalised thumbnail."""

    points: np.ndarray
    descriptors: np.ndarray | None
    thumbnail: np.ndarray


def _analysis_gray(centred_l: torch.Tensor) -> np.ndarray:
    """(h, w) centred L -> uint8 luminance, stretched, at ANALYSIS_WIDTH."""
    l = ((centred_l.detach().float().cpu() + L_MEAN) / L_RANGE).numpy()
    lo, hi = np.percentile(l, STRETCH_PERCENTILES)
    gray = np.clip((l - lo) / max(float(hi - lo), 1e-3), 0.0, 1.0) * 255.0
    scale = ANALYSIS_WIDTH / gray.shape[1]
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    size = (ANALYSIS_WIDTH, max(1, round(gray.shape[0] * scale)))
    return cv2.resize(gray.astype(np.float32), size, interpolation=interpolation).round() \
        .astype(np.uint8)


def _thumbnail(gray: np.ndarray) -> np.ndarray:
    small = cv2.resize(gray.astype(np.float32), THUMBNAIL[::-1], interpolation=cv2.INTER_AREA)
    return (small - small.mean()) / (small.std() + 1e-6)


def describe(centred_l: torch.Tensor) -> SceneKeys:
    """Keypoints of one picture: centred L (1, 1, h, w) or (h, w)."""
    gray = _analysis_gray(centred_l.reshape(centred_l.shape[-2:]))
    keypoints, descriptors = cv2.SIFT_create(nfeatures=MAX_KEYPOINTS).detectAndCompute(gray, None)
    points = np.float32([k.pt for k in keypoints]).reshape(-1, 2)
    return SceneKeys(points, descriptors, _thumbnail(gray))


def verified_fraction(frame: SceneKeys, reference: SceneKeys) -> float:
    """The fraction of the frame's keypoints whose one-to-one ratio-test match a single
    homography onto the reference explains."""
    if frame.descriptors is None or reference.descriptors is None \
            or len(frame.points) < MIN_MATCHES or len(reference.points) < 2:
        return 0.0
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(frame.descriptors, reference.descriptors, k=2)
    best: dict[int, cv2.DMatch] = {}  # one frame keypoint per reference keypoint: the closest
    for pair in pairs:
        if len(pair) == 2 and pair[0].distance < RATIO * pair[1].distance:
            match = pair[0]
            if match.trainIdx not in best or match.distance < best[match.trainIdx].distance:
                best[match.trainIdx] = match
    if len(best) < MIN_MATCHES:
        return 0.0
    matches = sorted(best.values(), key=lambda m: m.trainIdx)  # RANSAC sees a fixed order
    source = frame.points[[m.queryIdx for m in matches]]
    target = reference.points[[m.trainIdx for m in matches]]
    cv2.setRNGSeed(0)  # RANSAC's samples: the same score on every run
    _, inliers = cv2.findHomography(source, target, cv2.RANSAC, RANSAC_TOLERANCE)
    return 0.0 if inliers is None else float(inliers.sum()) / len(frame.points)


def layout_similarity(frame: SceneKeys, reference: SceneKeys) -> float:
    """The best correlation of the two thumbnails over small shifts, in [-1, 1]."""
    a, b = frame.thumbnail, reference.thumbnail
    if a.shape != b.shape:
        b = cv2.resize(b, a.shape[::-1], interpolation=cv2.INTER_AREA)
    best = -1.0
    h, w = a.shape
    for dy in LAYOUT_SHIFTS:
        for dx in LAYOUT_SHIFTS:
            x = a[max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx)]
            y = b[max(0, -dy):h + min(0, -dy), max(0, -dx):w + min(0, -dx)]
            x, y = x - x.mean(), y - y.mean()
            best = max(best, float((x * y).sum() / (np.sqrt((x * x).sum() * (y * y).sum()) + 1e-9)))
    return best


def describe_frames(frames_l: torch.Tensor) -> list[SceneKeys]:
    """Keypoints of the batch's compared frames ((B, 1, h, w) centred L): its first and last."""
    count = int(frames_l.shape[0])
    picked = sorted({round(i * (count - 1) / max(1, FRAMES_COMPARED - 1))
                     for i in range(min(count, FRAMES_COMPARED))})
    return [describe(frames_l[i, 0]) for i in picked]


def match_described(frames: list[SceneKeys], reference: SceneKeys) -> float:
    """The mean verified keypoint fraction over the frames, plus the layout tie-breaker (at
    most LAYOUT_WEIGHT)."""
    return float(np.mean([verified_fraction(frame, reference) + LAYOUT_WEIGHT
                          * (layout_similarity(frame, reference) + 1.0) / 2.0
                          for frame in frames]))


def scene_match(frames_l: torch.Tensor, reference: SceneKeys) -> float:
    """How well a reference shows the scene of these frames ((B, 1, h, w) centred L)."""
    return match_described(describe_frames(frames_l), reference)
