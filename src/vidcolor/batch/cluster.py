"""``vidcolor batch --cluster``: the batch on a Ray cluster, with nothing lost when a worker dies.

The driver (this process) plans the jobs (``runner.plan_jobs``), skips those the manifest marks
done, keeps at most one task per worker in flight and is the only writer of the manifest.
Workers are Ray actors, each holding one loaded ``Colorizer`` (weights loaded once per worker;
one GPU each when there are GPUs, else a fair share of the CPU threads).

The unit of work is one file. With ``cuts`` a file is split at shot cuts into frame ranges
(``ranges``) colorized by any worker and joined by one last task.

When a worker process dies (killed, out of memory, machine lost), the driver removes what it
left (temporary ``.partial`` outputs: the writer renames a finished output into place, so
nothing else can be left), starts a replacement worker and gives the task to the next free
worker, up to ``retries`` times; then the file is marked failed with the cause and the batch
goes on. Ctrl-C / SIGTERM kill the workers, remove their partial outputs and re-raise.

Workers read the inputs and write the outputs themselves, so on a multi-machine cluster the
input and output folders must be on a filesystem every node sees, at the same paths.
The worker itself is ``batch/worker.py``; the bar and the report ``batch/cluster_progress.py``.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from vidcolor.batch import ranges as range_split
from vidcolor.batch.cluster_progress import NoProgress
from vidcolor.batch.runner import MANIFEST_NAME, Job, Manifest
from vidcolor.batch.worker import ColorizeWorker, Task
from vidcolor.errors import OptionError, ProcessingError, UsageError, VidcolorError
from vidcolor.signals import SignalLatch

INSTALL_HINT = "pip install vidcolor[cluster]"
DEFAULT_RETRIES = 3  # further attempts of a task whose worker died, before the file fails
# CPU workers on an existing cluster: torch scales well to about this many threads per
# process; more, smaller workers overlap decoding and encoding better.
CPUS_PER_REMOTE_WORKER = 4
# Only small messages travel through Ray's object store (paths, counts): its minimum size
# (75 MiB) plus margin, instead of Ray's default of 30 % of the machine's memory.
LOCAL_OBJECT_STORE_BYTES = 96 * 2**20
POLL_SECONDS = 0.5  # how often the driver asks busy workers how far they are
KILL_WAIT_SECONDS = 10.0  # how long the driver waits for killed local workers to be gone
LOCAL_START_ATTEMPTS = 3


@dataclass(frozen=True)
class ClusterSpec:
    """``local:N`` (start a local cluster with N workers) or an existing cluster's address."""

    local_workers: int | None = None
    address: str | None = None

    @property
    def is_local(self) -> bool:
        return self.local_workers is not None


def parse_cluster(value: str) -> ClusterSpec:
    """``local:N`` | ``ray`` (the cluster at ``RAY_ADDRESS``) | ``ray://HOST:PORT``."""
    if value.startswith("local:"):
        count = value.removeprefix("local:")
        if not count.isdigit() or int(count) < 1:
            raise OptionError(f"--cluster {value}: give the number of workers, e.g. local:2")
        return ClusterSpec(local_workers=int(count))
    if value == "ray":
        address = os.environ.get("RAY_ADDRESS")
        if not address:
            raise OptionError("--cluster ray: set RAY_ADDRESS to the cluster's address, or give "
                              "--cluster ray://HOST:PORT")
        return ClusterSpec(address=address)
    if value.startswith("ray://") and len(value) > len("ray://"):
        return ClusterSpec(address=value)
    raise OptionError(f"--cluster {value!r}: use local:N, ray, or ray://HOST:PORT")


def import_ray():
    """Ray, or the one-line error naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise OptionError(f"--cluster needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


# ---------------------------------------------------------------------------------------------
# Connecting, sizing the worker pool


@dataclass(frozen=True)
class PoolShape:
    workers: int
    cpus: float  # Ray CPU resource per worker
    gpus: float
    threads: int | None  # torch threads per CPU worker


def fair_threads(cores: int, workers: int) -> int:
    return max(1, cores // workers)


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def local_gpus(device: str) -> int:
    if device not in ("auto", "cuda"):
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@contextmanager
def own_signal_handlers() -> Iterator[None]:
    """Keep the driver's SIGINT/SIGTERM handlers: Ray's core installs a SIGTERM handler that
    aborts the process, which would skip stopping the workers and removing partial output."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            if handler is not None:
                signal.signal(sig, handler)


def start_local(ray, workers: int, gpus: int, options: dict[str, Any]) -> None:
    """``ray.init`` of a local cluster, tried again when its start times out (Ray gives its
    raylet a fixed 30 s to register, which a heavily loaded machine can exceed)."""
    from vidcolor.io import one_line_cause

    for attempt in range(1, LOCAL_START_ATTEMPTS + 1):
        try:
            with own_signal_handlers():
                ray.init(num_cpus=workers, num_gpus=gpus,
                         object_store_memory=LOCAL_OBJECT_STORE_BYTES, **options)
            return
        except Exception as error:  # Ray raises a bare Exception for the timeout
            ray.shutdown()
            if attempt == LOCAL_START_ATTEMPTS:
                raise ProcessingError(f"--cluster local:{workers}: Ray could not start a local "
                                      f"cluster ({one_line_cause(error)})") from None


@contextmanager
def connected(ray, spec: ClusterSpec, device: str) -> Iterator[PoolShape]:
    """Start (``local:N``) or join a cluster; yields the worker pool's shape; disconnects.

    When this process is already connected (a Python caller ran ``ray.init``), that cluster
    is used and left running.
    """
    options = dict(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False,
                   configure_logging=True)
    already = ray.is_initialized()
    if spec.is_local:
        gpus = local_gpus(device)
        workers = spec.local_workers
        if not already:
            start_local(ray, workers, gpus, options)
        # One GPU per worker; more workers than GPUs share them (Ray's fractional GPUs).
        per_worker_gpus = min(1.0, gpus / workers) if gpus else 0
        shape = PoolShape(workers, 1, per_worker_gpus,
                          None if gpus else fair_threads(usable_cores(), workers))
    elif already:
        shape = remote_shape(ray, device)
    else:
        try:
            with own_signal_handlers():
                ray.init(address=spec.address, **options)
        except Exception as error:  # ConnectionError and Ray's own kinds
            from vidcolor.io import one_line_cause

            raise UsageError(f"--cluster: cannot connect to the Ray cluster at {spec.address} "
                             f"({one_line_cause(error)})") from None
        shape = remote_shape(ray, device)
    try:
        yield shape
    finally:
        if not already:
            ray.shutdown()


def remote_shape(ray, device: str) -> PoolShape:
    """One worker per GPU; without GPUs, workers of ``CPUS_PER_REMOTE_WORKER`` threads."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0)) if device in ("auto", "cuda") else 0
    if gpus:
        return PoolShape(gpus, 1, 1, None)
    smallest_node = min((n["Resources"].get("CPU", 0) for n in ray.nodes()
                         if n.get("Alive") and n["Resources"].get("CPU")), default=1)
    per_worker = max(1, int(min(CPUS_PER_REMOTE_WORKER, smallest_node)))  # fits on every node
    return PoolShape(max(1, int(resources.get("CPU", 1)) // per_worker), per_worker, 0,
                     per_worker)


# ---------------------------------------------------------------------------------------------
# The driver


@dataclass
class FileRecord:
    """What happened to one file, for the manifest and ``--report``."""

    tasks: list[Task] = field(default_factory=list)  # still to dispatch (ranges, then join)
    ranges: tuple[range_split.FrameRange, ...] = ()
    open_tasks: int = 0
    frames: int = 0
    seconds: float = 0.0
    started: float = 0.0
    workers: list[str] = field(default_factory=list)
    attempts: int = 0
    failed: str | None = None


@dataclass
class Slot:
    """A worker position in the pool; its actor is replaced when its process dies."""

    number: int
    actor: Any
    identity: Any  # ObjectRef until resolved, then a dict
    task: Task | None = None
    ref: Any = None
    progress_ref: Any = None
    frames: int = 0

    @property
    def name(self) -> str:
        pid = self.identity.get("pid") if isinstance(self.identity, dict) else None
        return f"w{self.number}" + (f" (pid {pid})" if pid else "")


@dataclass
class ClusterOutcome:
    """The jobs by outcome (as ``run_batch`` returns) and each processed file's record."""

    groups: dict[str, list[Job]]
    records: dict[Path, FileRecord]
    frames: int = 0
    seconds: float = 0.0


EventSink = Callable[[str, str], None]  # (kind, message): notice|start|done|retry|failed


def job_frames(job: Job) -> int | None:
    from vidcolor.io import reader

    try:
        return reader.probe(job.video).frame_count
    except VidcolorError:
        return None  # the worker will report the cause


def task_target(task: Task) -> Path:
    """What ``task`` writes: the output, or its range's folder (one task writes each)."""
    if task.kind == "range":
        return range_split.part_path(task.job.output, task.frame_range)
    return task.job.output


def remove_leftovers(target: Path) -> None:
    """Temporary outputs for ``target`` of workers that died while writing it."""
    from vidcolor.io.atomic import remove_stale_partials

    remove_stale_partials(target)


class Driver:
    def __init__(self, ray, shape: PoolShape, jobs: list[Job], out_dir: Path,
                 colorizer_options: dict[str, Any], video_options: dict[str, Any],
                 cuts: range_split.CutFinder | None, min_piece_frames: int, retries: int,
                 redo_done: bool, emit: EventSink, progress):
        self.ray, self.shape, self.jobs = ray, shape, jobs
        self.colorizer_options, self.video_options = colorizer_options, video_options
        self.cuts, self.min_piece_frames = cuts, min_piece_frames
        self.retries, self.emit, self.progress = retries, emit, progress
        self.redo_done = redo_done
        self.manifest = Manifest(out_dir / MANIFEST_NAME)
        self.records: dict[Path, FileRecord] = {}
        self.groups: dict[str, list[Job]] = {"done": [], "skipped": [], "failed": [], "noref": []}
        self.queue: deque[Job] = deque()
        self.retry_queue: deque[Task] = deque()  # retries and joins go before new files
        self.worker_class = ray.remote(max_concurrency=2)(ColorizeWorker)
        self.slots: list[Slot] = []
        self.frames_done = 0
        self.notices_seen: set[str] = set()

    # -- the pool
    def _new_actor(self):
        shape = self.shape
        actor = self.worker_class.options(num_cpus=shape.cpus, num_gpus=shape.gpus,
                                          max_restarts=0, max_task_retries=0).remote(
            self.colorizer_options, shape.threads)
        return actor, actor.identity.remote()

    def start_pool(self) -> None:
        for number in range(1, self.shape.workers + 1):
            self.slots.append(Slot(number, *self._new_actor()))
        for slot in self.slots:  # the first worker's failure to load is the user's error
            self._resolve_identity(slot, timeout=None)

    def _resolve_identity(self, slot: Slot, timeout: float | None) -> None:
        if isinstance(slot.identity, dict):
            return
        ready, _ = self.ray.wait([slot.identity], timeout=timeout)
        if not ready:
            return
        try:
            identity = self.ray.get(slot.identity)
        except self.ray.exceptions.RayError:
            slot.identity = {}
            return
        slot.identity = identity
        if identity["init_error"]:
            message, code = identity["init_error"]
            raise (UsageError if code == 2 else ProcessingError)(message)
        for notice in identity["notices"]:
            self._notice(notice)

    def _notice(self, message: str) -> None:
        if message not in self.notices_seen:
            self.notices_seen.add(message)
            self.emit("notice", message)

    def _replace(self, slot: Slot) -> None:
        self.ray.kill(slot.actor, no_restart=True)
        slot.actor, slot.identity = self._new_actor()
        slot.task = slot.ref = slot.progress_ref = None
        slot.frames = 0

    # -- planning
    def plan(self) -> None:
        for job in self.jobs:
            if job.reference is None:
                self.groups["noref"].append(job)
                self.emit("noref", f"{job.video}: skipped, no reference found (give --ref, or put "
                                   f"{job.video.stem}.jpg beside it)")
            elif not self.redo_done and self.manifest.is_done(job):
                self.groups["skipped"].append(job)
            else:
                self.queue.append(job)
        total = sum(job_frames(job) or 0 for job in self.queue)
        self.progress.start(files=len(self.queue), frames=total)

    def _tasks_of(self, job: Job) -> list[Task]:
        remove_leftovers(job.output)  # left by an earlier driver's workers
        range_split.remove_parts(job.output)  # parts of an earlier driver are not trusted
        if self.cuts is not None:
            cuts = sorted(set(int(c) for c in self.cuts(job.video)))
            pieces = range_split.split_ranges(cuts, self.min_piece_frames)
            if len(pieces) > 1:
                self.records[job.video].ranges = tuple(pieces)
                # A piece may hold several shots: the recurrence restarts at each, as in a
                # single run, so the worker is told where they start.
                return [Task(job, "range", frame_range=p,
                             shot_starts=tuple(c for c in cuts if c in p and c != p.start))
                        for p in pieces]
        return [Task(job, "file")]

    def _next_task(self) -> Task | None:
        if self.retry_queue:
            return self.retry_queue.popleft()
        while self.queue:
            job = self.queue.popleft()
            record = self.records.setdefault(job.video, FileRecord(started=time.perf_counter()))
            self.manifest.record(job, "partial")  # stays so if the driver is killed
            try:
                tasks = self._tasks_of(job)
            except VidcolorError as error:
                self._fail(job, str(error))
                continue
            self.emit("start", f"colorizing {job.video.name} with {job.reference.name}"
                               + (f" in {len(tasks)} ranges" if len(tasks) > 1 else ""))
            record.tasks = tasks[1:]
            record.open_tasks = len(tasks)
            return tasks[0]
        return None

    def _take(self) -> Task | None:
        """The next task, ranges of a file first so a split file is finished early."""
        for record in self.records.values():
            if record.tasks and record.failed is None:
                return record.tasks.pop(0)
        return self._next_task()

    # -- the loop
    def run(self, check_signals: Callable[[], None]) -> None:
        started = time.perf_counter()
        while True:
            check_signals()
            for slot in self.slots:
                if slot.task is None:
                    task = self._take()
                    if task is None:
                        break
                    self._dispatch(slot, task)
            busy = [s for s in self.slots if s.task is not None]
            if not busy:
                break
            ready, _ = self.ray.wait([s.ref for s in busy], num_returns=1, timeout=POLL_SECONDS)
            check_signals()
            for slot in busy:
                if slot.ref in ready:
                    self._finish(slot)
            self._poll_progress()
        self.seconds = time.perf_counter() - started

    def _dispatch(self, slot: Slot, task: Task) -> None:
        slot.task = task
        slot.frames = 0
        slot.ref = slot.actor.run.remote(task, self.video_options)
        self.records[task.job.video].attempts += 1

    def _finish(self, slot: Slot) -> None:
        task, ref = slot.task, slot.ref
        slot.task = slot.ref = slot.progress_ref = None
        try:
            result = self.ray.get(ref)
        except self.ray.exceptions.RayError as error:
            self._worker_died(slot, task, error)
            return
        self._resolve_identity(slot, timeout=0)
        record = self.records[task.job.video]
        for notice in result["notices"]:
            self._notice(notice)
        if record.failed is not None:  # another range of this file failed already
            range_split.remove_parts(task.job.output)
            return
        if not result["ok"]:
            self._fail(task.job, result["error"])
            return
        name = f"w{slot.number} (pid {result['pid']})"
        if name not in record.workers:
            record.workers.append(name)
        if task.kind != "join":
            record.frames += result["frames"]
            self.frames_done += result["frames"]
        record.open_tasks -= 1
        if task.kind == "range" and record.open_tasks == 0:
            join = Task(task.job, "join", ranges=record.ranges)
            record.open_tasks = 1
            self.retry_queue.appendleft(join)
            self.emit("join", f"joining the {len(record.ranges)} ranges of {task.job.video.name}")
        elif task.kind != "range":
            self._done(task.job, record)

    def _done(self, job: Job, record: FileRecord) -> None:
        range_split.remove_parts(job.output)
        record.seconds = time.perf_counter() - record.started
        self.manifest.record(job, "done", seconds=round(record.seconds, 3), frames=record.frames,
                             workers=record.workers, attempts=record.attempts)
        self.groups["done"].append(job)
        self.progress.file_done()
        self.emit("done", f"{job.video.name}: {record.frames} frames in {record.seconds:.1f} s "
                          f"on {', '.join(record.workers)}")

    def _fail(self, job: Job, message: str) -> None:
        record = self.records[job.video]
        record.failed = message
        record.tasks.clear()
        record.seconds = time.perf_counter() - record.started
        remove_leftovers(job.output)
        range_split.remove_parts(job.output)
        self.manifest.record(job, "failed", error=message, attempts=record.attempts)
        self.groups["failed"].append(job)
        self.progress.file_done()
        self.emit("failed", message)

    def _worker_died(self, slot: Slot, task: Task, error: BaseException) -> None:
        from vidcolor.io import one_line_cause

        cause = f"worker {slot.name} died ({type(error).__name__}: {one_line_cause(error)})"
        self._replace(slot)
        record = self.records[task.job.video]
        if record.failed is not None:
            return
        remove_leftovers(task_target(task))  # a dead process cannot remove its own
        if task.attempt < self.retries:
            self.retry_queue.append(Task(task.job, task.kind, task.frame_range, task.ranges,
                                         task.attempt + 1))
            self.emit("retry", f"{task.label}: {cause}; retrying "
                               f"({task.attempt + 1} of {self.retries})")
        else:
            self._fail(task.job, f"{task.job.video}: {cause}; gave up after "
                                 f"{self.retries + 1} attempts")

    def _poll_progress(self) -> None:
        for slot in self.slots:
            if slot.task is None or slot.task.kind == "join":
                continue
            if slot.progress_ref is not None:
                ready, _ = self.ray.wait([slot.progress_ref], timeout=0)
                if ready:
                    try:
                        slot.frames = self.ray.get(slot.progress_ref)
                    except self.ray.exceptions.RayError:
                        pass  # the worker died: its task reports it
                    slot.progress_ref = None
            if slot.progress_ref is None:
                slot.progress_ref = slot.actor.progress.remote()
        self.progress.update(self.frames_done + sum(s.frames for s in self.slots if s.task))

    # -- stopping
    def stop(self) -> None:
        """Kill every worker, wait until local ones are gone, remove their partial output."""
        for slot in self.slots:
            self._resolve_identity_quietly(slot)
            self.ray.kill(slot.actor, no_restart=True)
        here = socket.gethostname()
        deadline = time.monotonic() + KILL_WAIT_SECONDS
        for slot in self.slots:
            pid = slot.identity.get("pid") if isinstance(slot.identity, dict) else None
            if pid and slot.identity.get("host") == here:
                while pid_alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
        for slot in self.slots:
            if slot.task is not None:
                remove_leftovers(task_target(slot.task))
        for job in self.jobs:
            record = self.records.get(job.video)
            if record is not None and job not in self.groups["done"]:
                range_split.remove_parts(job.output)

    def _resolve_identity_quietly(self, slot: Slot) -> None:
        try:
            self._resolve_identity(slot, timeout=1.0)
        except VidcolorError:
            pass


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_cluster_batch(jobs: list[Job], out_dir: Path, spec: ClusterSpec, *,
                      colorizer_options: dict[str, Any], video_options: dict[str, Any],
                      cuts: range_split.CutFinder | None = None,
                      min_piece_frames: int = range_split.MIN_PIECE_FRAMES,
                      retries: int = DEFAULT_RETRIES, redo_done: bool = False,
                      emit: EventSink = lambda kind, message: None,
                      progress=None) -> ClusterOutcome:
    """Run the batch on the cluster ``spec``; one failed file never stops it.

    ``colorizer_options``: ``Colorizer(...)`` arguments (engine, device, precision).
    ``video_options``: ``colorize_video`` arguments (mode, preset, size, codec, crf).
    ``redo_done``: colorize again the files the manifest marks done (``--overwrite``).
    ``cuts``: a function giving a video's shot cuts (frame indices) to split it at, into
    pieces of at least ``min_piece_frames``.
    """
    ray = import_ray()
    out_dir.mkdir(parents=True, exist_ok=True)
    progress = progress or NoProgress()
    with connected(ray, spec, colorizer_options.get("device", "auto")) as shape:
        driver = Driver(ray, shape, jobs, out_dir, colorizer_options, video_options, cuts,
                        min_piece_frames, retries, redo_done, emit, progress)
        driver.plan()
        try:
            with SignalLatch() as latch:
                if driver.queue:
                    driver.start_pool()
                    driver.run(latch.check)
        except BaseException:
            driver.stop()
            raise
        finally:
            progress.close()
    order = {job.video: i for i, job in enumerate(jobs)}
    for group in driver.groups.values():
        group.sort(key=lambda job: order[job.video])
    return ClusterOutcome(driver.groups, driver.records, driver.frames_done,
                          getattr(driver, "seconds", 0.0))
