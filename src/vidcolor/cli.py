"""The ``vidcolor`` command line: parse, call the library, turn errors into one line.

Exit codes: 0 success, 1 processing failure, 2 bad input or options, 130 SIGINT, 143 SIGTERM.
"""

from __future__ import annotations

import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer

from vidcolor.errors import Interrupted, VidcolorError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Colorize black-and-white video from a color reference image "
         "(Deep Exemplar-based Video Colorization, CVPR 2019).",
)

ENGINE_HELP = "auto: devc when its weights are installed, else classic (no weights needed)."


def echo_error(message: str) -> None:
    typer.echo(f"vidcolor: error: {message}", err=True)


def echo_notice(message: str) -> None:
    typer.echo(f"vidcolor: {message}", err=True)


def _on_sigterm(signum, frame):  # noqa: ARG001 - signal handler signature
    raise Interrupted("stopped by SIGTERM; partial output removed", exit_code=143)


@contextmanager
def user_errors(debug: bool) -> Iterator[None]:
    """Map VidcolorError and interruptions to one line and an exit code (traceback on --debug)."""
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    except VidcolorError as error:
        if debug:
            raise
        echo_error(str(error))
        raise typer.Exit(error.exit_code) from None
    except KeyboardInterrupt:
        if debug:
            raise
        echo_error("interrupted (Ctrl-C); partial output removed")
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def make_colorizer(engine: str, device: str, precision: str, mode: str, preset: str,
                   quiet: bool):
    """Options checked first; -q silences notices and warnings (errors are always printed)."""
    from vidcolor.colorizer import Colorizer, check_run_options

    check_run_options(mode, preset)
    return Colorizer(engine=engine, device=device, precision=precision,
                     notify=None if quiet else echo_notice)


@app.command()
def colorize(
    input: Path = typer.Argument(..., help="Video file, folder of frames, or a single image."),
    ref: list[str] = typer.Option([], "--ref", "-r", help="Color reference image; repeat for "
                                  "several (each shot gets its best match). TIME=IMAGE pins "
                                  "IMAGE to the shot at TIME (seconds or HH:MM:SS.mmm); in "
                                  "propagate mode that is a colored frame of the shot."),
    ref_dir: Optional[Path] = typer.Option(None, "--ref-dir", help="Folder written by `vidcolor "
                                           "shots --export`: each image pinned to its shot."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output file or folder "
                                          "[default: INPUT.color.EXT beside the input]."),
    mode: str = typer.Option("exemplar", help="exemplar | propagate."),
    engine: str = typer.Option("auto", help=ENGINE_HELP),
    preset: str = typer.Option("default", help="default (aspect and resolution kept) | official "
                               "(the paper's test script exactly)."),
    size: Optional[str] = typer.Option(None, help="Processing size HxW (official: working size, "
                                       "default 432x768)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | mps."),
    precision: str = typer.Option("auto", help="auto | float32 | float64 | bfloat16 | float16."),
    start: Optional[float] = typer.Option(None, help="Start at this time (seconds)."),
    duration: Optional[float] = typer.Option(None, help="Colorize this many seconds."),
    max_frames: Optional[int] = typer.Option(None, min=1, help="Colorize at most N frames."),
    codec: str = typer.Option("h264", help="h264 | h265 | ffv1 (lossless) | png (frame folder)."),
    crf: int = typer.Option(18, min=0, max=51, help="Quality for h264/h265 (lower is better)."),
    overwrite: bool = typer.Option(False, help="Replace an existing output."),
    drop_unsupported_streams: bool = typer.Option(
        False, help="Drop audio/subtitle streams the output container cannot hold."),
    report: Optional[Path] = typer.Option(None, help="Write a JSON report of the run here."),
    compare: Optional[Path] = typer.Option(None, help="Also write a side-by-side input|output video."),
    batch_size: int = typer.Option(4, min=1, help="Frames per batch on the correspondence side."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print errors only."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Colorize a video (or frames, or an image) from a color reference."""
    from vidcolor.pipeline.presets import parse_size

    with user_errors(debug):
        processing_size = parse_size(size)
        colorizer = make_colorizer(engine, device, precision, mode, preset, quiet)
        summary = colorizer.colorize_video(
            input, ref, output, mode=mode, preset=preset, size=processing_size, start=start,
            duration=duration, max_frames=max_frames, codec=codec, crf=crf, overwrite=overwrite,
            drop_unsupported_streams=drop_unsupported_streams, report=report, compare=compare,
            batch_size=batch_size, quiet=quiet, ref_dir=ref_dir)
        if not quiet:
            typer.echo(f"wrote {summary.output}: {summary.frames} frames in {summary.seconds:.1f} s "
                       f"({summary.fps:.2f} fps, {summary.engine} engine, {summary.preset} preset)")


@app.command()
def batch(
    folder: Path = typer.Argument(..., help="Folder of videos."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder [default: FOLDER/colored]."),
    ref: Optional[Path] = typer.Option(None, "--ref", "-r", help="One reference for every video."),
    mode: str = typer.Option("exemplar", help="exemplar | propagate."),
    engine: str = typer.Option("auto", help=ENGINE_HELP),
    preset: str = typer.Option("default", help="default | official."),
    size: Optional[str] = typer.Option(None, help="Processing size HxW."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | mps."),
    precision: str = typer.Option("auto", help="auto | float32 | float64 | bfloat16 | float16."),
    codec: str = typer.Option("h264", help="h264 | h265 | ffv1."),
    crf: int = typer.Option(18, min=0, max=51),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Colorize every video of FOLDER with its reference; rerun to resume."""
    from vidcolor.batch.runner import job_references, plan_jobs, run_batch
    from vidcolor.pipeline.presets import parse_size

    with user_errors(debug):
        out_dir = out or folder / "colored"
        processing_size = parse_size(size)
        jobs = plan_jobs(folder, out_dir, ref)
        colorizer = make_colorizer(engine, device, precision, mode, preset, quiet)

        def run(job):
            return colorizer.colorize_video(job.video, job_references(job), job.output, mode=mode,
                                            preset=preset, size=processing_size, codec=codec,
                                            crf=crf, overwrite=True, quiet=quiet)

        def on_event(kind, job, message):
            if kind == "noref":
                echo_notice(f"{job.video}: skipped, no reference found (give --ref, or put "
                            f"{job.video.stem}.jpg beside it)")
            elif kind == "failed":
                echo_error(message)
            elif kind == "start" and not quiet:
                typer.echo(f"colorizing {job.video.name} with {job.reference.name}", err=True)

        outcome = run_batch(jobs, out_dir, run, on_event)
        if not quiet:
            print_batch_table(outcome)
        if outcome["failed"]:
            raise typer.Exit(1)


def print_batch_table(outcome) -> None:
    from rich.table import Table

    from vidcolor.progress import stderr_console

    table = Table(title="vidcolor batch")
    table.add_column("video")
    table.add_column("status")
    table.add_column("output")
    for status, jobs in outcome.items():
        for job in jobs:
            table.add_row(job.video.name, status, str(job.output) if status in ("done", "skipped") else "")
    stderr_console().print(table)


@app.command("shots")
def shots_command(
    input: Path = typer.Argument(..., help="Video file or folder of frames."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the shots as JSON."),
    export: Optional[Path] = typer.Option(None, "--export", help="Write one sharp frame per shot "
                                          "(PNG named by its start timecode) to this folder."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No table."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Detect shot boundaries (hard cuts, dissolves, fades through black)."""
    from vidcolor.io.reader import probe
    from vidcolor.shots import detect_shots
    from vidcolor.shots import export as shot_export

    with user_errors(debug):
        fps = probe(input).fps
        found = detect_shots(input)
        if json_path is not None:
            shot_export.write_json(json_path, found, fps)
        if export is not None:
            shot_export.export_frames(input, found, export)
        if not quiet:
            from rich.console import Console
            from rich.table import Table

            table = Table(title=f"{input.name}: {len(found)} shots")
            for column in ("shot", "start", "end", "frames", "transition"):
                table.add_column(column)
            for row in shot_export.table_rows(found):
                table.add_row(*row)
            Console(highlight=False).print(table)


@app.command("download-weights")
def download_weights(
    source: Optional[str] = typer.Option(None, help="A mirror URL of the release zip, or "
                                         "hf:ORG/REPO[@REV] for converted weights on Hugging Face."),
    from_file: Optional[Path] = typer.Option(None, "--from-file", help="Install from a release "
                                             "zip downloaded by hand."),
    verify: bool = typer.Option(False, "--verify", help="Re-check the installed weights."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Download, verify and convert the paper's released checkpoints."""
    from vidcolor.weights import download

    with user_errors(debug):
        if verify:
            for line in download.verify():
                typer.echo(line)
            return
        with byte_progress(quiet) as progress:
            path = download.install(source=source, from_file=from_file, progress=progress)
        if not quiet:
            typer.echo(f"installed devc weights in {path}")


@contextmanager
def byte_progress(quiet: bool):
    """The download bar (bytes, speed, ETA) on a terminal, else no callback."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from vidcolor.progress import stderr_console
    from vidcolor.weights.progress import rich_progress

    with rich_progress(stderr_console()) as update:
        yield update


@app.command("eval")
def evaluate(
    output: Path = typer.Argument(..., help="Colorized video or frame folder."),
    gt: Path = typer.Option(..., "--gt", help="Ground-truth color video or frame folder."),
    input: Optional[Path] = typer.Option(None, "--input", help="The gray input (flow is "
                                         "computed on its luminance when given)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the results as JSON."),
    csv_path: Optional[Path] = typer.Option(None, "--csv", help="Write per-frame rows as CSV."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="PNG plot of PSNR per frame "
                                        "(needs the [plot] extra)."),
    resize: bool = typer.Option(False, "--resize", help="Resize the output to the truth's size."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Score a colorization against the truth: PSNR, SSIM, colorfulness, warp error."""
    from vidcolor.eval import evaluation

    with user_errors(debug):
        result = evaluation.evaluate(output, gt, input=input, resize=resize)
        for warning in result.warnings:
            echo_notice(warning)
        from rich.console import Console

        Console(highlight=False).print(evaluation.render_table(result))
        if json_path:
            result.to_json(json_path)
        if csv_path:
            result.to_csv(csv_path)
        if plot:
            evaluation.plot_psnr(result, plot)


@app.command()
def version() -> None:
    """Print the version."""
    from vidcolor import __version__

    typer.echo(__version__)


def main() -> None:
    app()
