"""Shot boundaries from frame signatures: hard cuts, cross-dissolves, fades through black.

A streaming detector: ``push`` one ``Signature`` per frame, ``finish`` returns the boundaries.
It holds only a window of ``HISTORY + LOOKAHEAD`` signatures, so memory is flat with length.

* Hard cut at frame t: the distance between t-1 and t stands out from the distances around it
  (an adaptive threshold: fast motion and shake raise every distance of their stretch, a cut
  only one), and the picture before the jump does not come back within ``FLASH_FRAMES``
  (a flash, a lightning strike or a flashbulb changes a frame or two, then the scene returns).
  The distance needs both the histogram and the layout (z-scored tiny picture) to change, so a
  global exposure change (flash) or a pan (same histogram, shifted layout) alone is not enough.
* Cross-dissolve over [a, b]: every frame between is a blend of the frames at both ends,
  f(j) = (1 - alpha_j) f(a) + alpha_j f(b), with alpha rising steadily, and the ends differ like
  two shots do. A pan or a zoom is not such a blend once the ends differ that much. The
  boundary is the frame where alpha reaches 1/2. A window that holds a detected cut is not a
  dissolve, so the decision waits until every cut its widest window may hold is known; one
  large step alone does not reject it (camera shake makes them). Both ends must be lit: a
  window ending on a fade's dark ramp would otherwise outscore the dissolve before the fade.
* Fade through black: a run of black frames between two non-black pictures; the boundary is
  the middle of the run (its frames go half to each side), or, for a run of at least
  ``BLACK_SHOT_SECONDS``, the black run is a shot of its own.

Thresholds were set on the edited sequences of ``tests/edits.py`` (``bench/shots.py``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from vidcolor.shots.signature import Signature

CUT, DISSOLVE, FADE = "cut", "dissolve", "fade"

# Distances between frames live in [0, 1]. A cut needs at least this much change...
CUT_MIN_DISTANCE = 0.30
# ... and must exceed the largest of the neighbouring frame-to-frame distances by this factor.
CUT_CONTEXT_RATIO = 2.0
# Neighbouring distances considered on each side of a candidate cut (frames).
CUT_CONTEXT_FRAMES = 6
# A picture that returns within this many frames was a flash, not a cut.
FLASH_FRAMES = 4
# The returning picture counts as "the same" below this distance to the one before the jump.
SAME_PICTURE_DISTANCE = 0.20

# Dissolve windows tried: half-widths in frames (a window spans 2w + 1 frames). 16 frames on
# each side covers dissolves up to ~1.4 s at 24 fps; longer ones still fit piecewise.
DISSOLVE_HALF_WIDTHS = (3, 5, 8, 12, 16)
# The two ends of a dissolve must differ at least like a cut does.
DISSOLVE_MIN_CHANGE = CUT_MIN_DISTANCE
# ... and show different pictures, not one picture at two exposures (a fade from or to black
# is a blend with a flat picture: its ends keep one layout; 0.20 measured on a fade-in).
DISSOLVE_MIN_LAYOUT_CHANGE = 0.5
# Mean distance of the in-between frames to the blend line, as a fraction of the ends'
# difference, above which the window is not a blend. Both shots keep moving during a real
# dissolve, so its frames sit off the line of its two ends too (0.26 measured on a 16-frame
# dissolve between two camera moves; a fast pan gives 0.5-1.1).
DISSOLVE_MAX_RESIDUAL = 0.40
# Mean |alpha_j - linear ramp| above which alpha does not rise steadily.
DISSOLVE_MAX_RAMP_ERROR = 0.20
# A blend of two unrelated pictures has less contrast than either: at alpha = 1/2 its
# variance is about half of theirs (the classic variance curve of dissolves). Minimum
# relative drop of variance in the middle of the window (a pan or zoom keeps it: ~0).
DISSOLVE_MIN_DIP = 0.20
# Evidence (dip times how far the residual is under its bound) below this is no dissolve: an
# object moving across a still background can pass each test narrowly (a cup carried across
# a wall, cup.mp4 at 2-6x speed: 0.000-0.023; dissolves of real footage: 0.39-0.51).
DISSOLVE_MIN_SCORE = 0.03
# Overlapping candidates keep the best scoring one within this many frames.
DISSOLVE_SUPPRESS_FRAMES = 8

# Black picture: mean luma and its spread below these (8-bit: ~15 and ~10 levels).
BLACK_MEAN = 0.06
BLACK_STD = 0.04
# Both ends of a dissolve are lit pictures, not a fade's dark ramp frames: twice the black level.
DISSOLVE_MIN_END_MEAN = 2 * BLACK_MEAN
# A black run at least this long is a shot of its own (a title gap, an act break).
BLACK_SHOT_SECONDS = 2.0
DEFAULT_FPS = 24.0
# Cuts and dissolves found this close to a black run are the fade's own ramps (a fade-in's
# dark, noisy first frames jump; a fade-out is a blend into black): seconds.
FADE_GUARD_SECONDS = 0.5
# Two boundaries closer than this are one transition (the earlier kind wins); frames.
MIN_SHOT_FRAMES = 3

# A dissolve centred at c is decided once every cut its widest window may hold is known.
DISSOLVE_DECISION_DELAY = max(DISSOLVE_SUPPRESS_FRAMES, max(DISSOLVE_HALF_WIDTHS))
# Frames the decision about frame t looks back and ahead (the window the detector holds).
HISTORY = max(DISSOLVE_HALF_WIDTHS) + DISSOLVE_SUPPRESS_FRAMES + 1
LOOKAHEAD = max(max(DISSOLVE_HALF_WIDTHS), CUT_CONTEXT_FRAMES, FLASH_FRAMES)


@dataclass(frozen=True)
class Boundary:
    """The first frame of a new shot, its source time (seconds) and how the previous shot
    ended into it."""

    frame: int
    transition: str | None
    time: float = 0.0


def histogram_distance(a: Signature, b: Signature) -> float:
    """Half the L1 distance of the histograms: 0 same, 1 disjoint."""
    return 0.5 * float(np.abs(a.histogram - b.histogram).sum())


def _zscored(thumb: np.ndarray) -> np.ndarray | None:
    std = float(thumb.std())
    if std < BLACK_STD / 4:
        return None
    return (thumb - thumb.mean()) / std


def layout_distance(a: Signature, b: Signature) -> float:
    """1 - correlation of the tiny pictures, clipped to [0, 1]: exposure changes cancel out.

    A flat picture has no layout: two flat ones are the same, a flat and a textured one differ.
    """
    za, zb = _zscored(a.thumb), _zscored(b.thumb)
    if za is None or zb is None:
        return 0.0 if za is None and zb is None else 1.0
    return float(np.clip(1.0 - (za * zb).mean(), 0.0, 1.0))


def distance(a: Signature, b: Signature) -> float:
    """How different two frames are as shots: both histogram and layout must change."""
    return float(np.sqrt(histogram_distance(a, b) * layout_distance(a, b)))


def is_black(sig: Signature) -> bool:
    return sig.mean < BLACK_MEAN and sig.std < BLACK_STD


def variance_dip(sigs: list[Signature], alpha: np.ndarray) -> float:
    """Relative drop of luma variance in the middle of a window below the variance the two
    ends' blend would keep if the pictures were the same (linear in alpha): 0 for a pan."""
    var_a, var_b = sigs[0].std ** 2, sigs[-1].std ** 2
    expected = (1.0 - alpha) * var_a + alpha * var_b
    actual = np.array([s.std ** 2 for s in sigs[1:-1]])
    middle = np.abs(alpha - 0.5) <= 0.25
    if not middle.any() or expected[middle].min() <= 0.0:
        return 0.0
    return float(1.0 - (actual[middle] / expected[middle]).mean())


@dataclass
class _Dissolve:
    score: float
    boundary: int
    start: int
    end: int
    time: float


class ShotDetector:
    """Streaming detector: ``push`` each frame's signature in order, then ``finish``."""

    def __init__(self, fps: float | None = None):
        self.fps = float(fps) if fps else DEFAULT_FPS
        self._window: deque[Signature] = deque(maxlen=HISTORY + LOOKAHEAD + 1)
        self._times: deque[float] = deque(maxlen=HISTORY + LOOKAHEAD + 1)
        self._steps: dict[int, float] = {}  # distance(t-1, t), for t in the window
        self._dissolves: dict[int, _Dissolve | None] = {}  # candidate by centre frame
        self._count = 0
        self._first_time: float | None = None
        self._black_start: int | None = None
        self._black_start_time = 0.0
        self._black_runs: list[tuple[int, int]] = []
        self._boundaries: list[Boundary] = []
        self._cuts: deque[int] = deque(maxlen=64)

    # -- window access -------------------------------------------------------------------------

    def _sig(self, index: int) -> Signature | None:
        first = self._count - len(self._window)
        if first <= index < self._count:
            return self._window[index - first]
        return None

    def _time(self, index: int) -> float:
        first = self._count - len(self._times)
        return self._times[index - first]

    def _step(self, index: int) -> float | None:
        return self._steps.get(index)

    def _add(self, frame: int, transition: str, time: float | None = None) -> None:
        self._boundaries.append(Boundary(frame, transition,
                                         self._time(frame) if time is None else time))

    # -- streaming -----------------------------------------------------------------------------

    def push(self, sig: Signature, time: float | None = None) -> None:
        """Add the next frame; ``time`` is its source time in seconds (default index / fps)."""
        self._window.append(sig)
        self._times.append(self._count / self.fps if time is None else float(time))
        if self._count == 0:
            self._first_time = self._times[0]
        index = self._count
        self._count += 1
        if index > 0:
            self._steps[index] = distance(self._sig(index - 1), sig)
        for old in [k for k in self._steps if k <= index - len(self._window)]:
            del self._steps[old]
        ready = index - LOOKAHEAD
        if ready >= 0:
            self._decide(ready)

    def finish(self) -> list[Boundary]:
        """All boundaries, in order, merged where two are closer than ``MIN_SHOT_FRAMES``."""
        for index in range(max(0, self._count - LOOKAHEAD), self._count):
            self._decide(index)
        for centre in range(max(0, self._count - DISSOLVE_DECISION_DELAY), self._count):
            self._decide_dissolve(centre)
        if self._black_start is not None:
            self._black_runs.append((self._black_start, self._count))
        guard = FADE_GUARD_SECONDS * self.fps
        merged: list[Boundary] = []
        for boundary in sorted(self._boundaries, key=lambda b: b.frame):
            if boundary.frame <= 0 or boundary.frame >= self._count:
                continue
            if boundary.transition != FADE and any(
                    start - guard <= boundary.frame <= end + guard
                    for start, end in self._black_runs):
                continue
            if merged and boundary.frame - merged[-1].frame < MIN_SHOT_FRAMES:
                continue
            merged.append(boundary)
        return merged

    @property
    def frame_count(self) -> int:
        return self._count

    def first_time(self) -> float | None:
        return self._first_time

    def last_time(self) -> float | None:
        return self._times[-1] if self._times else None

    # -- decisions -----------------------------------------------------------------------------

    def _decide(self, t: int) -> None:
        sig = self._sig(t)
        self._track_black(t, sig)
        if self._is_cut(t):
            self._add(t, CUT)
            self._cuts.append(t)
        self._dissolves[t] = self._best_dissolve(t)
        self._decide_dissolve(t - DISSOLVE_DECISION_DELAY)
        for old in [k for k in self._dissolves
                    if k < t - DISSOLVE_DECISION_DELAY - DISSOLVE_SUPPRESS_FRAMES - 1]:
            del self._dissolves[old]

    def _track_black(self, t: int, sig: Signature) -> None:
        if is_black(sig):
            if self._black_start is None:
                self._black_start, self._black_start_time = t, self._time(t)
            return
        start, self._black_start = self._black_start, None
        if start is None:
            return
        self._black_runs.append((start, t))
        if start == 0:
            return  # black leader before the first picture
        if t - start >= BLACK_SHOT_SECONDS * self.fps:
            self._add(start, FADE, self._black_start_time)
            self._add(t, FADE)
        else:
            middle = (start + t) // 2  # may lie before the window: time from the run's start
            self._add(middle, FADE, self._black_start_time + (middle - start) / self.fps)

    def _is_cut(self, t: int) -> bool:
        step = self._step(t)
        if step is None or step < CUT_MIN_DISTANCE:
            return False
        before, after = self._sig(t - 1), self._sig(t)
        if is_black(before) or is_black(after):
            return False  # fades are handled by the black runs
        context = [self._step(j) for j in range(t - CUT_CONTEXT_FRAMES, t + CUT_CONTEXT_FRAMES + 1)
                   if j != t and self._step(j) is not None]
        if context and step < CUT_CONTEXT_RATIO * max(context):
            return False
        for k in range(1, FLASH_FRAMES + 1):
            later = self._sig(t + k)
            if later is not None and distance(before, later) < SAME_PICTURE_DISTANCE:
                return False
        return True

    def _best_dissolve(self, t: int) -> _Dissolve | None:
        best = None
        for w in DISSOLVE_HALF_WIDTHS:
            candidate = self._dissolve_at(t, w)
            if candidate is not None and (best is None or candidate.score > best.score):
                best = candidate
        return best

    def _dissolve_at(self, t: int, w: int) -> _Dissolve | None:
        a, b = t - w, t + w
        sigs = [self._sig(j) for j in range(a, b + 1)]
        if any(s is None for s in sigs) or any(is_black(s) for s in sigs):
            return None
        if min(sigs[0].mean, sigs[-1].mean) < DISSOLVE_MIN_END_MEAN:
            return None  # it ends on a fade's dark ramp
        if distance(sigs[0], sigs[-1]) < DISSOLVE_MIN_CHANGE \
                or layout_distance(sigs[0], sigs[-1]) < DISSOLVE_MIN_LAYOUT_CHANGE:
            return None
        if any(self._step(j) is None for j in range(a + 1, b + 1)):
            return None
        start, end = sigs[0].thumb.ravel(), sigs[-1].thumb.ravel()
        delta = end - start
        norm2 = float(delta @ delta)
        if norm2 <= 0.0:
            return None
        inner = np.stack([s.thumb.ravel() for s in sigs[1:-1]]) - start
        alpha = inner @ delta / norm2
        residual = float((np.linalg.norm(inner - alpha[:, None] * delta, axis=1)
                          / np.sqrt(norm2)).mean())
        ramp = np.arange(1, 2 * w) / (2 * w)
        ramp_error = float(np.abs(alpha - ramp).mean())
        dip = variance_dip(sigs, np.clip(alpha, 0.0, 1.0))
        if residual >= DISSOLVE_MAX_RESIDUAL or ramp_error >= DISSOLVE_MAX_RAMP_ERROR \
                or dip < DISSOLVE_MIN_DIP:
            return None
        score = dip * (1.0 - residual / DISSOLVE_MAX_RESIDUAL)
        if score < DISSOLVE_MIN_SCORE:
            return None
        half = np.nonzero(alpha >= 0.5)[0]
        boundary = a + 1 + int(half[0]) if half.size else b
        return _Dissolve(score=float(score), boundary=boundary, start=a, end=b,
                         time=self._time(boundary))

    def _decide_dissolve(self, c: int) -> None:
        candidate = self._dissolves.get(c)
        if candidate is None:
            return
        if self._spans_cut(candidate):
            return
        for k in range(c - DISSOLVE_SUPPRESS_FRAMES, c + DISSOLVE_SUPPRESS_FRAMES + 1):
            other = self._dissolves.get(k)
            if k == c or other is None or self._spans_cut(other):
                continue
            if other.score > candidate.score or (other.score == candidate.score and k < c):
                return
        self._add(candidate.boundary, DISSOLVE, candidate.time)

    def _spans_cut(self, candidate: _Dissolve) -> bool:
        return any(candidate.start <= cut <= candidate.end for cut in self._cuts)
