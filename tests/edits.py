"""Edited sequences with known shot boundaries, made from the photographs scikit-image ships.

Each shot is a camera move over one photograph (``vidcolor.demo.clip``'s camera), joined to the
next by a hard cut, a cross-dissolve or a fade through black; one scene comes back later. Some
shots carry the hard negatives a detector must not call cuts: a fast pan, camera shake, a
flash, cel animation (flat shapes jumping on twos). ``score`` matches detected boundaries to the
truth (F1 per transition type). Used by tests/test_shots*.py and bench/shots.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from vidcolor.demo.clip import _photo, _view, luminance_only

CUT, DISSOLVE, FADE = "cut", "dissolve", "fade"
# How far a detected boundary may sit from the true one: a cut must be exact to a frame; a
# gradual transition may land anywhere in its middle half.
CUT_TOLERANCE = 1


@dataclass(frozen=True)
class ShotSpec:
    """A camera move over ``scene`` for ``frames`` frames. ``effect``: None, "fast_pan",
    "shake", "flash" or "animation" (then ``scene`` is ignored)."""

    scene: str
    frames: int
    centre: tuple[tuple[float, float], tuple[float, float]] = ((0.5, 0.45), (0.5, 0.55))
    zoom: tuple[float, float] = (1.3, 1.5)
    effect: str | None = None


@dataclass(frozen=True)
class TransitionSpec:
    kind: str  # cut | dissolve | fade
    frames: int = 0  # dissolve: blended frames; fade: frames out (and in)
    black: int = 0  # fade: fully black frames between


@dataclass(frozen=True)
class TrueBoundary:
    frame: int
    kind: str
    tolerance: int


@dataclass
class Edit:
    """The rendered sequence: colour truth frames, the true boundaries, each frame's shot."""

    frames: list[np.ndarray]
    boundaries: list[TrueBoundary]
    shot_of_frame: list[int]
    scenes: list[str]  # scene of each shot
    negatives: list[tuple[int, int, str]] = field(default_factory=list)  # (start, end, effect)

    @property
    def shot_starts(self) -> list[int]:
        return [0] + [b.frame for b in self.boundaries]


def _to_uint8(view) -> np.ndarray:
    return (view[0].permute(1, 2, 0) * 255.0 + 0.5).clamp(0, 255).byte().numpy()


def _lerp(a, b, t):
    if isinstance(a, tuple):
        return tuple(x + (y - x) * t for x, y in zip(a, b))
    return a + (b - a) * t


def _animation_frames(frames: int, size: tuple[int, int], seed: int) -> list[np.ndarray]:
    """Cel animation: flat shapes on a flat background, drawn on twos (each drawing held two
    frames) and jumping a tenth of the frame between drawings."""
    rng = np.random.default_rng(seed)
    h, w = size
    y, x = np.mgrid[0:h, 0:w]
    background = rng.integers(40, 220, 3).astype(np.uint8)
    shapes = [(rng.uniform(0.2, 0.8, 2), rng.uniform(0.1, 0.2), rng.integers(0, 255, 3))
              for _ in range(3)]
    out = []
    for i in range(frames):
        drawing = i // 2
        frame = np.empty((h, w, 3), np.uint8)
        frame[:] = background
        frame[int(h * 0.75):] = 255 - background  # ground
        for k, (centre, radius, color) in enumerate(shapes):
            cy = (centre[0] + 0.1 * np.sin(drawing * 0.9 + k)) * h
            cx = (centre[1] + 0.1 * drawing * (1 if k % 2 else -1)) % 1.0 * w
            mask = ((y - cy) / (radius * h)) ** 2 + ((x - cx) / (radius * w * 0.7)) ** 2 < 1
            frame[mask] = color
        out.append(frame)
    return out


def render_shot(spec: ShotSpec, size: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    if spec.effect == "animation":
        return _animation_frames(spec.frames, size, seed)
    photo = _photo(spec.scene)
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(spec.frames):
        t = i / max(1, spec.frames - 1)
        centre = _lerp(*spec.centre, t)
        if spec.effect == "shake":  # hand-held jitter: 3 % of the photo per frame
            centre = (centre[0] + rng.normal(0, 0.03), centre[1] + rng.normal(0, 0.03))
        frame = _to_uint8(_view(photo, size, centre, _lerp(*spec.zoom, t)))
        if spec.effect == "flash" and i in (spec.frames // 2, spec.frames // 2 + 1):
            frame = (0.45 * frame + 0.55 * 255).astype(np.uint8)  # a white flash, two frames
        frames.append(frame)
    return frames


def _blend(a: np.ndarray, b: np.ndarray, alpha: float) -> np.ndarray:
    return (a.astype(np.float32) * (1 - alpha) + b.astype(np.float32) * alpha + 0.5).astype(np.uint8)


def make_edit(shots: Sequence[ShotSpec], transitions: Sequence[TransitionSpec],
              size: tuple[int, int], seed: int = 0) -> Edit:
    """Render ``shots`` and join them by ``transitions`` (``join_shots``)."""
    return join_shots([render_shot(spec, size, seed + i) for i, spec in enumerate(shots)],
                      transitions, [s.scene for s in shots], [s.effect for s in shots])


def join_shots(shot_frames: Sequence[list[np.ndarray]], transitions: Sequence[TransitionSpec],
               scenes: Sequence[str], effects: Sequence[str | None] | None = None) -> Edit:
    """Join shots' frames by ``transitions`` (one fewer). A dissolve of n frames blends the
    last n frames of one shot with the first n of the next; a fade darkens the last n, inserts
    ``black`` black frames, and brightens the next shot's first n."""
    if len(transitions) != len(shot_frames) - 1:
        raise ValueError("one transition between each pair of shots")
    effects = effects or [None] * len(shot_frames)
    out: list[np.ndarray] = []
    shot_of: list[int] = []
    boundaries: list[TrueBoundary] = []
    negatives: list[tuple[int, int, str]] = []
    for index, (frames, effect) in enumerate(zip(shot_frames, effects)):
        frames = list(frames)
        if index == 0:
            start = 0
            out += frames
            shot_of += [0] * len(frames)
        else:
            tr = transitions[index - 1]
            if tr.kind == CUT:
                start = len(out)
                boundaries.append(TrueBoundary(start, CUT, CUT_TOLERANCE))
                out += frames
                shot_of += [index] * len(frames)
            elif tr.kind == DISSOLVE:
                n = tr.frames
                first = len(out) - n
                for k in range(n):
                    alpha = (k + 1) / (n + 1)
                    out[first + k] = _blend(out[first + k], frames[k], alpha)
                    if alpha >= 0.5:
                        shot_of[first + k] = index
                boundary = first + next(k for k in range(n) if (k + 1) / (n + 1) >= 0.5)
                boundaries.append(TrueBoundary(boundary, DISSOLVE, max(CUT_TOLERANCE, n // 4)))
                out += frames[n:]
                shot_of += [index] * (len(frames) - n)
                start = first
            elif tr.kind == FADE:
                n = tr.frames
                for k in range(n):  # fade out: the last n frames darken to nearly black
                    out[-n + k] = _blend(out[-n + k], np.zeros_like(frames[0]), (k + 1) / (n + 1))
                black_start = len(out)
                out += [np.zeros_like(frames[0]) for _ in range(tr.black)]
                boundary = black_start + tr.black // 2
                shot_of += [index - 1] * (tr.black // 2) + [index] * (tr.black - tr.black // 2)
                faded = [_blend(np.zeros_like(f), f, (k + 1) / (n + 1)) if k < n else f
                         for k, f in enumerate(frames)]
                boundaries.append(TrueBoundary(boundary, FADE, max(CUT_TOLERANCE,
                                                                   (tr.black + n) // 2)))
                start = len(out)
                out += faded
                shot_of += [index] * len(frames)
            else:
                raise ValueError(f"unknown transition {tr.kind}")
        if effect:
            negatives.append((start, len(out), effect))
    return Edit(out, boundaries, shot_of, list(scenes), negatives)


def standard_edit(size: tuple[int, int] = (90, 160), shot_frames: int = 24, seed: int = 0) -> Edit:
    """Eight shots over six scenes (coffee comes back as shot 5, astronaut as shot 8): three cuts,
    two dissolves, one fade, and a fast pan, shake, flash and animation inside shots."""
    n = shot_frames
    shots = [
        ShotSpec("coffee", n, ((0.55, 0.35), (0.50, 0.55)), (1.2, 1.5)),
        ShotSpec("astronaut", n, ((0.45, 0.15), (0.45, 0.85)), (2.2, 2.2), "fast_pan"),
        ShotSpec("rocket", n, ((0.5, 0.5), (0.5, 0.5)), (1.4, 1.4), "shake"),
        ShotSpec("chelsea", n, ((0.45, 0.5), (0.5, 0.55)), (1.1, 1.3), "flash"),
        ShotSpec("coffee", n, ((0.45, 0.65), (0.50, 0.45)), (1.6, 1.8)),
        ShotSpec("immunohistochemistry", n, ((0.5, 0.5), (0.45, 0.55)), (1.0, 1.6)),
        ShotSpec("animation", n, effect="animation"),
        ShotSpec("astronaut", n, ((0.35, 0.5), (0.40, 0.5)), (1.5, 1.3)),
    ]
    transitions = [
        TransitionSpec(CUT),
        TransitionSpec(DISSOLVE, frames=12),
        TransitionSpec(FADE, frames=6, black=4),
        TransitionSpec(CUT),
        TransitionSpec(DISSOLVE, frames=16),
        TransitionSpec(CUT),
        TransitionSpec(CUT),
    ]
    return make_edit(shots, transitions, size, seed)


def write_edit(path: str | Path, edit: Edit, fps: int = 24, audio: bool = False,
               gray: bool = True) -> Path:
    """Write the sequence as H.264 mp4 (the L of the truth when ``gray``), with an AAC tone."""
    import av

    from vidcolor.demo.clip import AUDIO_SAMPLE_RATE, _write_tone

    path = Path(path)
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.height, video.width = edit.frames[0].shape[:2]
        video.pix_fmt = "yuv420p"
        video.options = {"crf": "12", "preset": "veryfast"}
        stream = None
        if audio:
            stream = container.add_stream("aac", rate=AUDIO_SAMPLE_RATE)
            stream.layout = "mono"
        for rgb in edit.frames:
            picture = luminance_only(rgb) if gray else rgb
            container.mux(video.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        container.mux(video.encode())
        if stream is not None:
            _write_tone(container, stream, seconds=len(edit.frames) / fps)
    return path


@dataclass
class Score:
    true_positives: int = 0
    false_negatives: int = 0
    false_positives: int = 0

    @property
    def f1(self) -> float:
        denominator = 2 * self.true_positives + self.false_negatives + self.false_positives
        return 1.0 if denominator == 0 else 2 * self.true_positives / denominator


def score(truth: Sequence[TrueBoundary], detected: Sequence[tuple[int, str | None]]
          ) -> dict[str, Score]:
    """F1 per transition type and "all". A detection matches the nearest unmatched true
    boundary within its tolerance (whatever kind was detected); unmatched detections count as
    false positives of the kind they were labelled."""
    scores = {kind: Score() for kind in (CUT, DISSOLVE, FADE, "all")}
    unmatched = list(detected)
    for boundary in truth:
        near = [d for d in unmatched if abs(d[0] - boundary.frame) <= boundary.tolerance]
        if near:
            unmatched.remove(min(near, key=lambda d: abs(d[0] - boundary.frame)))
            scores[boundary.kind].true_positives += 1
            scores["all"].true_positives += 1
        else:
            scores[boundary.kind].false_negatives += 1
            scores["all"].false_negatives += 1
    for frame, kind in unmatched:
        scores.get(kind or CUT, scores[CUT]).false_positives += 1
        scores["all"].false_positives += 1
    return scores


SCENES = ("coffee", "astronaut", "rocket", "chelsea", "immunohistochemistry", "retina")
EFFECTS = (None, None, "fast_pan", "shake", "flash", "animation")


def random_transition(rng: np.random.Generator, kinds: Sequence[str],
                      longest: int | None = None) -> TransitionSpec:
    """One of ``kinds`` (equally likely; repeat a kind to weight it): a dissolve of 8-32 frames
    (at most ``longest``), a fade of 3-10 frames out and in with 1-8 black, or a cut."""
    kind = kinds[rng.integers(len(kinds))]
    if kind == DISSOLVE:
        frames = int(rng.integers(8, 33))
        return TransitionSpec(DISSOLVE, frames=frames if longest is None else min(longest, frames))
    if kind == FADE:
        return TransitionSpec(FADE, frames=int(rng.integers(3, 11)), black=int(rng.integers(1, 9)))
    return TransitionSpec(CUT)


def random_edit(seed: int, size: tuple[int, int] = (90, 160), shots: int = 8) -> Edit:
    """A reproducible random edit: scenes (some recurring), camera moves, effects, and
    transitions with dissolves of 8-32 frames and fades of 3-10 frames plus 1-8 black."""
    rng = np.random.default_rng(seed)
    specs, transitions = [], []
    for index in range(shots):
        effect = EFFECTS[rng.integers(len(EFFECTS))]
        frames = int(rng.integers(20, 40))
        centre0 = tuple(rng.uniform(0.35, 0.65, 2))
        centre1 = tuple(np.clip(np.array(centre0) + rng.uniform(-0.1, 0.1, 2), 0.2, 0.8))
        zoom0 = float(rng.uniform(1.0, 1.8))
        zoom = (zoom0, float(np.clip(zoom0 + rng.uniform(-0.3, 0.3), 1.0, 2.2)))
        if effect == "fast_pan":
            centre0, centre1, zoom = (centre0[0], 0.15), (centre0[0], 0.85), (2.2, 2.2)
        specs.append(ShotSpec(SCENES[rng.integers(len(SCENES))], frames, (centre0, centre1),
                              zoom, effect))
        if index:
            transitions.append(random_transition(rng, (CUT, CUT, DISSOLVE, FADE),
                                                 longest=min(specs[-2].frames, frames) - 4))
    # Consecutive shots of one scene would be one shot: give the later one another scene.
    for index in range(1, shots):
        if specs[index].scene == specs[index - 1].scene and specs[index].effect != "animation":
            other = SCENES[(SCENES.index(specs[index].scene) + 1) % len(SCENES)]
            specs[index] = ShotSpec(other, *[getattr(specs[index], f)
                                             for f in ("frames", "centre", "zoom", "effect")])
    return make_edit(specs, transitions, size, seed)
