"""``vidcolor eval``: score a colorized clip against the true colours, streaming frame by frame.

Per frame: PSNR on 8-bit RGB, PSNR on Lab ab, SSIM (``vidcolor.eval.metrics``), the colourfulness
of output and truth, and the temporal warp error of output and truth for the pair
(previous frame, this frame). Per clip: their means, the PSNR at the frames of the paper's
Figure 7 (1, 10, 30, 60, 100), and the truth's warp error as the floor a perfect result would
reach. Only the previous frame's ab and luminance are held, never the clip.

Frame numbers in results are 1-based, like the paper's Figure 7 axis.
"""

from __future__ import annotations

import csv
import json
import math
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from vidcolor.color.depth import to_8bit_scale
from vidcolor.color.lab import L_RANGE
from vidcolor.eval import metrics
from vidcolor.errors import InputError, OutputError, UsageError
from vidcolor.io.frame import Frame

# Frames whose PSNR the paper plots in Figure 7 (PSNR against frame number, 1-based).
FIGURE7_FRAMES = (1, 10, 30, 60, 100)

# ``progress(frames_done, frames_total_or_None)`` after each scored frame.
ProgressCallback = Callable[[int, "int | None"], None]


@dataclass(frozen=True)
class FrameScores:
    """Scores of one frame. Warp errors are for the pair (previous frame, this frame) and are
    None for the first frame, after a hard cut, or when the flow check keeps no pixel."""

    frame: int
    psnr_rgb: float
    psnr_ab: float
    ssim: float
    colorfulness_output: float
    colorfulness_truth: float
    warp_error_output: float | None = None
    warp_error_truth: float | None = None
    cut_before: bool = False


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


@dataclass
class EvalResult:
    """Everything ``evaluate`` measured; summaries are computed from the per-frame rows."""

    output: str
    truth: str
    input: str | None
    height: int
    width: int
    resized: bool
    output_frames: int
    truth_frames: int
    input_frames: int | None
    flow_method: str | None
    flow_luminance: str | None
    frames: list[FrameScores] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def frames_scored(self) -> int:
        return len(self.frames)

    @property
    def psnr_rgb(self) -> float | None:
        """Mean of the per-frame PSNR (the paper averages per frame, not per pooled MSE)."""
        return _mean([f.psnr_rgb for f in self.frames])

    @property
    def psnr_ab(self) -> float | None:
        return _mean([f.psnr_ab for f in self.frames])

    @property
    def ssim(self) -> float | None:
        return _mean([f.ssim for f in self.frames])

    @property
    def psnr_at(self) -> dict[int, float]:
        """RGB PSNR at the Figure 7 frame numbers that the clip reaches."""
        return {n: self.frames[n - 1].psnr_rgb for n in FIGURE7_FRAMES if n <= len(self.frames)}

    @property
    def colorfulness_output(self) -> float | None:
        return _mean([f.colorfulness_output for f in self.frames])

    @property
    def colorfulness_truth(self) -> float | None:
        return _mean([f.colorfulness_truth for f in self.frames])

    @property
    def warp_pairs(self) -> int:
        return sum(f.warp_error_output is not None for f in self.frames)

    @property
    def warp_error_output(self) -> float | None:
        """Mean warp error over the scored pairs (Lab ab units squared; lower = steadier)."""
        return _mean([f.warp_error_output for f in self.frames if f.warp_error_output is not None])

    @property
    def warp_error_truth(self) -> float | None:
        """The truth's own warp error: the floor set by flow errors and real colour change."""
        return _mean([f.warp_error_truth for f in self.frames if f.warp_error_truth is not None])

    @property
    def cuts(self) -> list[int]:
        """Frame numbers that start a new shot (the pair ending there was excluded)."""
        return [f.frame for f in self.frames if f.cut_before]

    def to_dict(self) -> dict:
        """Plain data for JSON: summary, then one row per frame. Infinite PSNR -> "inf"."""
        summary = {
            "output": self.output, "truth": self.truth, "input": self.input,
            "size": [self.height, self.width], "resized": self.resized,
            "frames_scored": self.frames_scored, "output_frames": self.output_frames,
            "truth_frames": self.truth_frames, "input_frames": self.input_frames,
            "psnr_rgb": self.psnr_rgb, "psnr_ab": self.psnr_ab, "ssim": self.ssim,
            "psnr_rgb_at_frame": {str(k): v for k, v in self.psnr_at.items()},
            "colorfulness": {"output": self.colorfulness_output,
                             "truth": self.colorfulness_truth},
            "warp_error": {"output": self.warp_error_output, "truth": self.warp_error_truth,
                           "pairs": self.warp_pairs, "flow_method": self.flow_method,
                           "flow_luminance": self.flow_luminance},
            "cuts_before_frames": self.cuts,
            "warnings": list(self.warnings),
            "frames": [asdict(f) for f in self.frames],
        }
        return _json_safe(summary)

    def to_json(self, path: str | Path) -> None:
        _write_text(path, json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")

    def to_csv(self, path: str | Path) -> None:
        """One row per frame; empty cells where a warp error does not apply."""
        names = [f.name for f in fields(FrameScores)]
        target = Path(path)
        try:
            with target.open("w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(names)
                for row in self.frames:
                    writer.writerow(["" if getattr(row, n) is None else getattr(row, n)
                                     for n in names])
        except OSError as exc:
            raise OutputError(f"{target}: cannot write the CSV ({exc.strerror or exc})") from exc


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return "inf" if value > 0 else ("-inf" if value < 0 else "nan")
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _write_text(path: str | Path, text: str) -> None:
    target = Path(path)
    try:
        target.write_text(text)
    except OSError as exc:
        raise OutputError(f"{target}: cannot write ({exc.strerror or exc})") from exc


def flow_method_name() -> str:
    """The optical flow used for the warp error, as reported in results."""
    from vidcolor.motion import flow

    return (f"TV-L1 (scikit-image, {flow.TVL1_NUM_ITER} iterations, {flow.TVL1_NUM_WARP} "
            f"warps, long side {flow.DEFAULT_FLOW_MAX_SIDE} px) with a forward-backward "
            f"occlusion check ({flow.DEFAULT_CONSISTENCY_TOLERANCE} px)")


def _resized(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize on the 8-bit float scale, antialiased when shrinking."""
    from skimage.transform import resize

    if rgb.shape[:2] == size:
        return rgb
    shrinking = size[0] < rgb.shape[0] or size[1] < rgb.shape[1]
    return resize(rgb, size, order=1, anti_aliasing=shrinking, preserve_range=True)


def _check_sizes(infos: dict[str, object], resize: bool) -> bool:
    """Compare every clip's size with the truth's; return whether any needs resizing."""
    truth = infos["truth"]
    needs = False
    for role, info in infos.items():
        if role == "truth" or (info.height, info.width) == (truth.height, truth.width):
            continue
        needs = True
        if not resize:
            raise InputError(
                f"{info.path}: the {role} is {info.width}x{info.height} but the truth "
                f"{truth.path} is {truth.width}x{truth.height}; pass --resize to scale it to "
                f"the truth's size")
    return needs


def _common_frames(streams: dict[str, Iterator[Frame]], counts: dict[str, int]
                   ) -> Iterator[dict[str, Frame]]:
    """Yield one frame of every stream at a time until one ends, then count the rest of the
    others (decoded and dropped, so ``counts`` ends exact without holding frames)."""
    while True:
        group = {}
        for role, stream in streams.items():
            frame = next(stream, None)
            if frame is None:
                for other_role, other in streams.items():
                    counts[other_role] += sum(1 for _ in other)
                return
            counts[role] += 1
            group[role] = frame
        yield group


@dataclass
class _PairState:
    """What the temporal metric keeps of the previous frame."""

    luminance: np.ndarray
    output_ab: np.ndarray
    truth_ab: np.ndarray


def _temporal_scores(previous: _PairState | None, current: _PairState
                     ) -> tuple[float | None, float | None, bool]:
    """(warp error of output, of truth, cut before this frame) for the pair ending here."""
    from vidcolor.motion.flow import consistency_mask, estimate_flow

    if previous is None:
        return None, None, False
    if metrics.is_hard_cut(previous.luminance, current.luminance):
        return None, None, True
    # warp(current, forward) ≈ previous: current's colours brought back onto frame t-1.
    forward = estimate_flow(previous.luminance, current.luminance)
    backward = estimate_flow(current.luminance, previous.luminance)
    reliable = consistency_mask(forward, backward)
    if not reliable.any():
        return None, None, False
    return (metrics.warp_error(previous.output_ab, current.output_ab, forward, reliable),
            metrics.warp_error(previous.truth_ab, current.truth_ab, forward, reliable), False)


def _count_warning(counts: dict[str, int], paths: dict[str, str], scored: int) -> str | None:
    if len(set(counts.values())) <= 1:
        return None
    listing = ", ".join(f"{role} {paths[role]} has {n}" for role, n in counts.items())
    return f"frame counts differ ({listing}): scored the first {scored} frames"


def _pictures(group: dict[str, Frame], size: tuple[int, int], resize: bool,
              paths: dict[str, str]) -> dict[str, np.ndarray]:
    """One frame of every clip on the 8-bit float scale, at the truth's size (or refused)."""
    pictures = {}
    for role, frame in group.items():
        picture = to_8bit_scale(frame.rgb)
        if picture.shape[:2] != size:
            if not resize:
                raise InputError(
                    f"{paths[role]}: frame {frame.index + 1} is "
                    f"{picture.shape[1]}x{picture.shape[0]}, not the truth's "
                    f"{size[1]}x{size[0]}; pass --resize to scale it")
            picture = _resized(picture, size)
        pictures[role] = picture
    return pictures


def _score_frame(number: int, pictures: dict[str, np.ndarray], previous: _PairState | None,
                 temporal: bool) -> tuple[FrameScores, _PairState | None]:
    """Scores of frame ``number`` (1-based) and what the next frame's warp error needs."""
    output_lab = metrics.to_lab(pictures["output"])
    truth_lab = metrics.to_lab(pictures["truth"])
    flow_lab = metrics.to_lab(pictures["input"]) if "input" in pictures else truth_lab
    warp_output = warp_truth = current = None
    cut = False
    if temporal:
        current = _PairState((flow_lab[..., 0] / L_RANGE).astype(np.float32),
                             output_lab[..., 1:], truth_lab[..., 1:])
        warp_output, warp_truth, cut = _temporal_scores(previous, current)
    scores = FrameScores(
        frame=number,
        psnr_rgb=metrics.psnr(pictures["output"], pictures["truth"]),
        psnr_ab=metrics.psnr_ab(output_lab, truth_lab),
        ssim=metrics.ssim(pictures["output"], pictures["truth"]),
        colorfulness_output=metrics.colorfulness(pictures["output"]),
        colorfulness_truth=metrics.colorfulness(pictures["truth"]),
        warp_error_output=warp_output, warp_error_truth=warp_truth, cut_before=cut)
    return scores, current


def _summary_warnings(result: EvalResult, counts: dict[str, int], paths: dict[str, str],
                      temporal: bool) -> list[str]:
    warnings = []
    warning = _count_warning(counts, paths, len(result.frames))
    if warning:
        warnings.append(warning)
    if temporal and len(result.frames) > 1 and result.warp_pairs == 0:
        warnings.append("no frame pair could be scored for warp error "
                        "(every pair crosses a cut or fails the flow check)")
    return warnings


def evaluate(output: str | Path, gt: str | Path, *, input: str | Path | None = None,
             resize: bool = False, progress: ProgressCallback | None = None,
             temporal: bool = True) -> EvalResult:
    """Score ``output`` against the ground truth ``gt`` (videos, frame folders or images).

    Sizes are checked before any decoding: a mismatch is an ``InputError`` unless ``resize``,
    which scales the output (and ``input``) to the truth's size. When frame counts differ the
    common leading frames are scored and ``result.warnings`` says so. ``input`` (the grey
    source) only supplies the luminance the optical flow is computed on; without it the
    truth's luminance is used. ``temporal=False`` skips the warp error (two flows per frame).
    """
    from vidcolor.io.reader import open_clip

    paths = {"output": str(output), "truth": str(gt)}
    if input is not None:
        paths["input"] = str(input)
    with ExitStack() as stack:
        clips = {role: stack.enter_context(open_clip(Path(p))) for role, p in paths.items()}
        infos = {role: clip.info for role, clip in clips.items()}
        resizing = _check_sizes(infos, resize)
        size = (infos["truth"].height, infos["truth"].width)
        known = [info.frame_count for info in infos.values()]
        total = min(known) if all(n is not None for n in known) else None
        counts = {role: 0 for role in clips}
        streams = {role: iter(clip.frames()) for role, clip in clips.items()}
        result = EvalResult(
            output=paths["output"], truth=paths["truth"], input=paths.get("input"),
            height=size[0], width=size[1], resized=resizing, output_frames=0, truth_frames=0,
            input_frames=None, flow_method=flow_method_name() if temporal else None,
            flow_luminance=("input" if input is not None else "truth") if temporal else None)
        previous: _PairState | None = None
        for group in _common_frames(streams, counts):
            scores, previous = _score_frame(len(result.frames) + 1,
                                            _pictures(group, size, resize, paths), previous,
                                            temporal)
            result.frames.append(scores)
            if progress is not None:
                progress(len(result.frames), total)
    result.output_frames = counts["output"]
    result.truth_frames = counts["truth"]
    result.input_frames = counts.get("input")
    if not result.frames:
        raise InputError(f"{paths['output']}: no frame in common with {paths['truth']}")
    result.warnings.extend(_summary_warnings(result, counts, paths, temporal))
    return result


def _format(value: float | None, digits: int) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:.{digits}f}"


def render_table(result: EvalResult):
    """A compact rich table: one row per metric, output beside truth where both apply.

    The caption names the flow and the excluded cuts; ``result.warnings`` are left to the
    caller (the CLI prints them as notices).
    """
    from rich.table import Table

    title = (f"{result.output} vs {result.truth}: {result.frames_scored} frames, "
             f"{result.width}x{result.height}" + (" (resized)" if result.resized else ""))
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("output", justify="right")
    table.add_column("truth", justify="right")
    table.add_row("PSNR RGB (dB, mean)", _format(result.psnr_rgb, 2), "")
    table.add_row("PSNR ab (dB, mean)", _format(result.psnr_ab, 2), "")
    table.add_row("SSIM (RGB, mean)", _format(result.ssim, 4), "")
    for number, value in result.psnr_at.items():
        table.add_row(f"PSNR RGB at frame {number}", _format(value, 2), "")
    table.add_row("colorfulness", _format(result.colorfulness_output, 2),
                  _format(result.colorfulness_truth, 2))
    if result.flow_method is not None:
        table.add_row(f"warp error (ab², {result.warp_pairs} pairs)",
                      _format(result.warp_error_output, 3),
                      _format(result.warp_error_truth, 3) + " (floor)")
    notes = []
    if result.flow_method is not None:
        notes.append(f"flow on the {result.flow_luminance}'s luminance: {result.flow_method}")
        if result.cuts:
            notes.append(f"hard cuts before frames {', '.join(map(str, result.cuts))}: "
                         "those pairs are excluded")
    if notes:
        table.caption = "\n".join(notes)
        table.caption_justify = "left"
    return table


def plot_psnr(result: EvalResult, path: str | Path) -> None:
    """PNG of PSNR (RGB and ab) against frame number, cuts marked. Needs matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError("the PSNR plot needs matplotlib: pip install 'vidcolor[plot]'") from None
    numbers = [f.frame for f in result.frames]

    def finite(values: list[float]) -> list[float]:
        # Identical frames have infinite PSNR: leave a gap rather than break the axis.
        return [v if math.isfinite(v) else float("nan") for v in values]

    figure = Figure(figsize=(8, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(numbers, finite([f.psnr_rgb for f in result.frames]), label="PSNR RGB")
    axes.plot(numbers, finite([f.psnr_ab for f in result.frames]), label="PSNR ab")
    for number in result.cuts:
        axes.axvline(number - 0.5, color="grey", linestyle=":", linewidth=1)
    axes.set_xlabel("frame")
    axes.set_ylabel("PSNR (dB)")
    axes.set_title(f"{Path(result.output).name} vs {Path(result.truth).name}")
    axes.grid(True, alpha=0.3)
    axes.legend()
    target = Path(path)
    try:
        figure.savefig(target, format="png")
    except OSError as exc:
        raise OutputError(f"{target}: cannot write the plot ({exc.strerror or exc})") from exc
