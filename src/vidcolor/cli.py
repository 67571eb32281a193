"""The ``vidcolor`` command line: parse, call the library, turn errors into one line.

Exit codes: 0 success, 1 processing failure, 2 bad input or options, 130 SIGINT, 143 SIGTERM.
"""

from __future__ import annotations

import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer
from typer.core import TyperGroup

from vidcolor.errors import Interrupted, VidcolorError, unexpected_failure
from vidcolor.options import CODECS, DEVICES, ENGINES, MODES, PRECISIONS, PRESETS, choice_enum

try:  # recent typer releases carry their own copy of click
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # pragma: no cover - older typer, on click itself
    from click.exceptions import ClickException, UsageError

# Typed choices: --help lists them and shell completion offers them.
Mode = choice_enum("Mode", MODES)
EngineName = choice_enum("EngineName", ENGINES)
PresetName = choice_enum("PresetName", PRESETS)
Precision = choice_enum("Precision", PRECISIONS)
Codec = choice_enum("Codec", CODECS)
VideoCodec = choice_enum("VideoCodec", tuple(c for c in CODECS if c != "png"))

ENGINE_HELP = "auto: devc when its weights are installed, else classic (no weights needed)."
DEVICE_HELP = f"{' | '.join(DEVICES)} | cuda:N."
WEIGHTS_DIR_HELP = ("Folder of converted devc weights to use instead of the installed ones "
                    "(`vidcolor info` shows where those are).")


class OneLineErrors(TyperGroup):
    """Usage errors (a bad choice, a missing option) as one line and exit code 2, like every
    other bad input; the full usage stays one ``--help`` away."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except UsageError as error:
            if type(error).__name__ == "NoArgsIsHelpError":  # bare `vidcolor`: the help
                typer.echo(error.ctx.get_help())
                sys.exit(error.exit_code)
            command = error.ctx.command_path if error.ctx is not None else "vidcolor"
            echo_error(f"{one_line(error.format_message())} (see `{command} --help`)")
            sys.exit(error.exit_code)
        except ClickException as error:
            echo_error(one_line(error.format_message()))
            sys.exit(error.exit_code)
        except typer.Abort:
            echo_error("aborted")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def one_line(message: str) -> str:
    # Recent typer releases validate with pydantic, whose messages start "Value error, ".
    return " ".join(message.replace("Value error, ", "").split())


def print_version(value: bool) -> None:
    if value:
        from vidcolor import __version__

        typer.echo(f"vidcolor {__version__}")
        raise typer.Exit()


def complete_device(incomplete: str) -> list[str]:
    return [name for name in DEVICES if name.startswith(incomplete)]


app = typer.Typer(
    cls=OneLineErrors,
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Colorize black-and-white video from a color reference image "
         "(Deep Exemplar-based Video Colorization, CVPR 2019).",
)


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", callback=print_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Options before any command (--version); the app's help is ``help=`` above."""


def echo_error(message: str) -> None:
    typer.echo(f"vidcolor: error: {message}", err=True)


def echo_notice(message: str) -> None:
    typer.echo(f"vidcolor: {message}", err=True)


def _on_sigterm(signum, frame):  # noqa: ARG001 - signal handler signature
    raise Interrupted("stopped by SIGTERM; partial output removed", exit_code=143)


@contextmanager
def user_errors(debug: bool, subject: object = None) -> Iterator[None]:
    """Map every error and interruption to one line and an exit code (traceback on --debug).

    Errors that are not ours (a library's RuntimeError, OSError, MemoryError...) name
    ``subject`` (the file the command works on) and their cause, and exit 1.
    """
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    except typer.Exit:
        raise
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
    except Exception as error:  # noqa: BLE001 - the last net: one line, never a traceback
        if debug:
            raise
        failure = unexpected_failure(subject or "vidcolor", error)
        echo_error(str(failure))
        raise typer.Exit(failure.exit_code) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def make_colorizer(engine: str, device: str, precision: str, mode: str, preset: str,
                   quiet: bool, weights_dir: Path | None = None):
    """Options checked first; -q silences notices and warnings (errors are always printed)."""
    from vidcolor.colorizer import Colorizer, check_run_options

    check_run_options(mode, preset)
    return Colorizer(engine=engine, device=device, precision=precision, weights_dir=weights_dir,
                     notify=None if quiet else echo_notice)


# Options that colorize and batch share, declared once.
ModeOption = Annotated[Mode, typer.Option(help="exemplar: every frame from the reference; "
                                          "propagate: the reference is the first frame's colours.")]
EngineOption = Annotated[EngineName, typer.Option(help=ENGINE_HELP)]
PresetOption = Annotated[PresetName, typer.Option(help="default: aspect and resolution kept; "
                                                  "official: the paper's test script exactly.")]
SizeOption = Annotated[Optional[str], typer.Option(help="Processing size HxW (official: working "
                                                   "size, default 432x768).")]
DeviceOption = Annotated[str, typer.Option(help=DEVICE_HELP, autocompletion=complete_device)]
PrecisionOption = Annotated[Precision, typer.Option(help="Compute precision (half precisions: "
                                                    "CUDA autocast).")]
WeightsDirOption = Annotated[Optional[Path], typer.Option("--weights-dir", help=WEIGHTS_DIR_HELP)]
StartOption = Annotated[Optional[float], typer.Option(help="Start at this time (seconds).")]
DurationOption = Annotated[Optional[float], typer.Option(help="Colorize this many seconds.")]
MaxFramesOption = Annotated[Optional[int], typer.Option(min=1, help="Colorize at most N frames.")]
CrfOption = Annotated[int, typer.Option(min=0, max=51, help="Quality for h264/h265 (lower is "
                                        "better).")]
DropStreamsOption = Annotated[bool, typer.Option(help="Drop audio/subtitle streams the output "
                                                 "container cannot hold.")]
BatchSizeOption = Annotated[int, typer.Option(min=1, help="Frames per batch on the "
                                              "correspondence side.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Print errors only.")]
DebugOption = Annotated[bool, typer.Option(help="Show tracebacks.")]


@app.command()
def colorize(
    ctx: typer.Context,
    input: Path = typer.Argument(..., help="Video file, folder of frames, or a single image."),
    ref: list[str] = typer.Option([], "--ref", "-r", help="Color reference image; repeat for "
                                  "several (each shot gets its best match). TIME=IMAGE pins "
                                  "IMAGE to the shot at TIME (seconds or HH:MM:SS.mmm); in "
                                  "propagate mode that is a colored frame of the shot."),
    ref_dir: Optional[Path] = typer.Option(None, "--ref-dir", help="Folder written by `vidcolor "
                                           "shots --export`: each image pinned to its shot."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output file or folder "
                                          "(default: INPUT.color.EXT beside the input)."),
    mode: ModeOption = Mode("exemplar"),
    engine: EngineOption = EngineName("auto"),
    preset: PresetOption = PresetName("default"),
    size: SizeOption = None,
    device: DeviceOption = "auto",
    precision: PrecisionOption = Precision("auto"),
    weights_dir: WeightsDirOption = None,
    start: StartOption = None,
    duration: DurationOption = None,
    max_frames: MaxFramesOption = None,
    codec: Codec = typer.Option(Codec("h264"), help="ffv1: lossless; png: a folder of frames."),
    crf: CrfOption = 18,
    overwrite: bool = typer.Option(False, help="Replace an existing output."),
    drop_unsupported_streams: DropStreamsOption = False,
    report: Optional[Path] = typer.Option(None, help="Write a JSON report of the run here."),
    compare: Optional[Path] = typer.Option(None, help="Also write a side-by-side input|output video."),
    batch_size: BatchSizeOption = 4,
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """Colorize a video (or frames, or an image) from a color reference."""
    from vidcolor.pipeline.presets import parse_size

    if not ref and ref_dir is None:  # --ref is repeatable, so click cannot require it
        raise UsageError("Missing option '--ref' (or --ref-dir).", ctx=ctx)

    with user_errors(debug, input):
        processing_size = parse_size(size)
        if report is not None:  # before the engine loads; colorize_video checks it again
            from vidcolor.io.atomic import check_file_target

            check_file_target(report, "report", not_same_as=(input,))
        colorizer = make_colorizer(engine.value, device, precision.value, mode.value,
                                   preset.value, quiet, weights_dir)
        summary = colorizer.colorize_video(
            input, ref, output, mode=mode.value, preset=preset.value, size=processing_size,
            start=start, duration=duration, max_frames=max_frames, codec=codec.value, crf=crf,
            overwrite=overwrite, drop_unsupported_streams=drop_unsupported_streams,
            report=report, compare=compare, batch_size=batch_size, quiet=quiet,
            ref_dir=ref_dir)
        if not quiet:
            typer.echo(f"wrote {summary.output}: {summary.frames} frames in {summary.seconds:.1f} s "
                       f"({summary.fps:.2f} fps, {summary.engine} engine, {summary.preset} preset)")


@app.command()
def batch(
    folder: Path = typer.Argument(..., help="Folder of videos."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: FOLDER/colored)."),
    ref: Optional[Path] = typer.Option(None, "--ref", "-r", help="One reference for every video."),
    mode: ModeOption = Mode("exemplar"),
    engine: EngineOption = EngineName("auto"),
    preset: PresetOption = PresetName("default"),
    size: SizeOption = None,
    device: DeviceOption = "auto",
    precision: PrecisionOption = Precision("auto"),
    weights_dir: WeightsDirOption = None,
    start: StartOption = None,
    duration: DurationOption = None,
    max_frames: MaxFramesOption = None,
    codec: VideoCodec = typer.Option(VideoCodec("h264"), help="ffv1: lossless."),
    crf: CrfOption = 18,
    overwrite: bool = typer.Option(False, help="Colorize again the files a previous run "
                                   "finished and replace outputs the batch did not write "
                                   "(default: skip the first, refuse the second)."),
    drop_unsupported_streams: DropStreamsOption = False,
    report: bool = typer.Option(False, help="Write NAME.color.json beside each output and "
                                "vidcolor-batch-report.json for the whole batch."),
    compare: bool = typer.Option(False, help="Also write NAME.compare.EXT (input | output) into "
                                 "the output folder."),
    batch_size: BatchSizeOption = 4,
    cluster: Optional[str] = typer.Option(None, help="Run on Ray: local:N (a local cluster of "
                                          "N workers), ray (the cluster at RAY_ADDRESS) or "
                                          "ray://HOST:PORT. Needs vidcolor[cluster]. With "
                                          "--report: which worker did each file, and its time."),
    split_shots: bool = typer.Option(False, help="With --cluster: split long files at their "
                                     "shot cuts, colorized by several workers and joined."),
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """Colorize every video of FOLDER with its reference; rerun to resume."""
    from vidcolor.batch.outputs import BATCH_REPORT_NAME, compare_path, report_path, write_batch_report
    from vidcolor.batch.runner import job_references, plan_jobs, run_batch
    from vidcolor.pipeline.presets import parse_size

    with user_errors(debug, folder):
        out_dir = out or folder / "colored"
        processing_size = parse_size(size)
        from vidcolor.errors import OptionError

        if split_shots and (cluster is None or start is not None or duration is not None
                            or max_frames is not None):
            raise OptionError("--split-shots needs --cluster, and the whole of each file")
        if split_shots and preset.value == "official":
            # a single official run never resets at a cut, so ranges would not join to it
            raise OptionError("--split-shots needs shot detection, which --preset official "
                              "leaves off (it reproduces the paper's script)")
        jobs = plan_jobs(folder, out_dir, ref)
        if cluster is not None:
            if compare:
                raise OptionError("--compare is not available with --cluster yet")
            outcome = batch_on_cluster(
                jobs, out_dir, cluster, split_shots=split_shots, report=report, quiet=quiet,
                redo_done=overwrite,
                colorizer_options=dict(engine=engine.value, device=device,
                                       precision=precision.value, weights_dir=weights_dir),
                video_options=dict(mode=mode.value, preset=preset.value, size=processing_size,
                                   codec=codec.value, crf=crf, start=start, duration=duration,
                                   max_frames=max_frames, batch_size=batch_size,
                                   drop_unsupported_streams=drop_unsupported_streams))
            if outcome["failed"]:
                raise typer.Exit(1)
            return
        colorizer = make_colorizer(engine.value, device, precision.value, mode.value,
                                   preset.value, quiet, weights_dir)
        summaries, errors = {}, {}

        def run(job):
            summaries[job.video] = colorizer.colorize_video(
                job.video, job_references(job), job.output, mode=mode.value, preset=preset.value,
                size=processing_size, start=start, duration=duration, max_frames=max_frames,
                codec=codec.value, crf=crf, overwrite=overwrite,
                drop_unsupported_streams=drop_unsupported_streams,
                report=report_path(job.output) if report else None,
                compare=compare_path(job.output) if compare else None,
                batch_size=batch_size, quiet=quiet)

        def on_event(kind, job, message):
            if kind == "noref":
                echo_notice(f"{job.video}: skipped, no reference found (give --ref, or put "
                            f"{job.video.stem}.jpg beside it)")
            elif kind == "failed":
                errors[job.video] = message
                echo_error(message)
            elif kind == "manifest":
                echo_notice(message)
            elif kind == "start" and not quiet:
                typer.echo(f"colorizing {job.video.name} with {job.reference.name}", err=True)

        outcome = run_batch(jobs, out_dir, run, on_event, redo_done=overwrite)
        if report:
            write_batch_report(out_dir / BATCH_REPORT_NAME, outcome, summaries, errors)
        if not quiet:
            print_batch_table(outcome)
        if outcome["failed"]:
            raise typer.Exit(1)


def batch_on_cluster(jobs, out_dir: Path, cluster: str, *, split_shots: bool, report: bool,
                     quiet: bool, redo_done: bool, colorizer_options: dict,
                     video_options: dict):
    """``batch --cluster``: the same jobs on Ray workers (vidcolor.batch.cluster)."""
    from vidcolor.batch import cluster as ray_batch
    from vidcolor.batch.cluster_progress import archive_progress, print_report
    from vidcolor.batch.ranges import shot_cuts
    from vidcolor.colorizer import check_run_options
    from vidcolor.progress import stderr_console

    spec = ray_batch.parse_cluster(cluster)
    check_run_options(video_options["mode"], video_options["preset"])
    ray_batch.import_ray()

    def emit(kind, message):
        if kind == "failed":
            echo_error(message)
        elif kind in ("notice", "noref", "retry") and not quiet:
            echo_notice(message)
        elif not quiet:
            typer.echo(message, err=True)

    outcome = ray_batch.run_cluster_batch(
        jobs, out_dir, spec, colorizer_options=colorizer_options, video_options=video_options,
        cuts=shot_cuts if split_shots else None, redo_done=redo_done, emit=emit,
        progress=archive_progress(quiet))
    if not quiet:
        print_batch_table(outcome.groups)
        if report:
            print_report(outcome, stderr_console())
    return outcome.groups


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

    with user_errors(debug, from_file or source):
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

    with user_errors(debug, output):
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
def info(
    json_output: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    verify: bool = typer.Option(True, help="Re-check the installed weights' SHA-256 and layout."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Devices and their precisions, devc weights, encoders and library versions."""
    from vidcolor import info as machine_info

    with user_errors(debug):
        report = machine_info.collect(verify=verify)
        if json_output:
            import json

            typer.echo(json.dumps(report.to_dict(), indent=2))
        else:
            typer.echo("\n".join(machine_info.render_lines(report)))


@app.command()
def train(
    data: Path = typer.Option(..., "--data", help="Folder of color videos (and optionally still images)."),
    out: Path = typer.Option(..., "--out", help="Run folder: log.jsonl, checkpoint.pt, final/, cache/."),
    steps: int = typer.Option(1000, min=1, help="Train up to this step (with --resume: the new total)."),
    batch_size: int = typer.Option(2, min=1, help="GLOBAL batch (split over torchrun processes)."),
    lr: float = typer.Option(2e-4, help="Learning rate of the colorization subnet (paper: 2e-4)."),
    lr_correspondence: Optional[float] = typer.Option(None, help="Correspondence subnet (default: --lr; "
                                                      "the official code uses 1e-5)."),
    lr_discriminator: Optional[float] = typer.Option(None, help="Discriminator (default: --lr)."),
    init: str = typer.Option("devc", help="devc (fine-tune the installed weights) | scratch."),
    weights_dir: Optional[Path] = typer.Option(None, help="Converted weights to start from "
                                               "(default: the installed ones), e.g. an earlier RUN/final."),
    loss_weights: Optional[str] = typer.Option(None, help="name=w,... over perceptual=0.001, contextual=0.2, "
                                               "smoothness=5, adversarial=0.2, temporal=0.02, l1=2."),
    adversarial_after: int = typer.Option(1000, min=0, help="Warm-up steps before the adversarial loss."),
    seed: int = typer.Option(0, help="Seed of the samples and of fresh weights."),
    crop: str = typer.Option("216x384", help="Training crop HxW (the paper's 216x384)."),
    checkpoint_every: int = typer.Option(500, min=1, help="Write a checkpoint every K steps."),
    workers: int = typer.Option(2, min=0, help="Data loader worker processes per training process."),
    frames_per_video: Optional[int] = typer.Option(None, min=2, help="Use at most N frames of each video."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its checkpoint."),
    device: str = typer.Option("auto", help="auto | cpu | cuda (torchrun: one GPU per process)."),
    precision: str = typer.Option("auto", help="auto | float32 | float64 | bfloat16 | float16 (CUDA autocast)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print errors only."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Train or fine-tune the devc networks with the paper's losses (also under torchrun)."""
    from vidcolor.train.loop import TrainConfig, parse_crop, parse_loss_weights
    from vidcolor.train.loop import train as run_training

    with user_errors(debug):
        crop_size = parse_crop(crop)
        config = TrainConfig(
            data=str(data), out=str(out), steps=steps, batch_size=batch_size, lr=lr,
            lr_correspondence=lr if lr_correspondence is None else lr_correspondence,
            lr_discriminator=lr if lr_discriminator is None else lr_discriminator, init=init,
            loss_weights=parse_loss_weights(loss_weights), adversarial_after=adversarial_after, seed=seed,
            crop=tuple(crop_size), checkpoint_every=checkpoint_every, workers=workers,
            max_frames_per_video=frames_per_video, weights_dir=str(weights_dir) if weights_dir else None)
        summary = run_training(config, device=device, precision=precision, resume=resume, quiet=quiet,
                               notify=(lambda message: None) if quiet else echo_notice)
        if not quiet and summary["final"] is not None:
            typer.echo(f"trained {summary['steps']} steps in {summary['seconds']:.1f} s "
                       f"({summary['steps_per_second']:.3f} steps/s); weights in {summary['final']}")


@app.command()
def version() -> None:
    """Print the version."""
    from vidcolor import __version__

    typer.echo(__version__)


def main() -> None:
    app()
