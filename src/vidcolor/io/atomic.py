"""Files that appear whole or not at all, and the leftovers of runs that were killed.

Every output (video, frames, image, report, batch manifest) is written to a hidden
``.NAME.partial-PID`` beside its target and renamed over it when complete. A run stopped by
an exception or a signal removes its own; one killed outright (SIGKILL, power loss) cannot,
so the next run on the same target removes those whose process no longer exists.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from vidcolor.errors import OutputError

PARTIAL_MARK = ".partial-"


def temp_beside(dst: Path, suffix: str = "") -> Path:
    """This process's hidden temporary path for ``dst``."""
    return dst.with_name(f".{dst.name}{PARTIAL_MARK}{os.getpid()}{suffix}")


def check_parent_writable(dst: Path) -> None:
    """The folder that will hold ``dst`` exists and this user may create files in it."""
    parent = dst.absolute().parent
    if not parent.is_dir():
        raise OutputError(f"{dst}: output folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{dst}: output folder {parent} is not writable")


def check_file_target(dst: Path, what: str, *, not_same_as: tuple[Path, ...] = ()) -> None:
    """``dst`` can be written as a plain file (``what`` names it in the message), before any work."""
    for other in not_same_as:
        if dst.absolute() == Path(other).absolute():
            raise OutputError(f"{dst}: the {what} would overwrite {other}; choose another path")
    if dst.is_dir():
        raise OutputError(f"{dst}: is a folder; the {what} must be a file path")
    check_parent_writable(dst)
    if dst.exists() and not os.access(dst, os.W_OK):
        raise OutputError(f"{dst}: {what} file is not writable")


def write_text_atomic(dst: Path, text: str) -> None:
    """Write ``text`` to ``dst`` through a temporary beside it: never half a file."""
    tmp = temp_beside(dst)
    try:
        tmp.write_text(text)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _process_exists(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name == "nt":  # no signal-0 probe there: keep everything rather than guess
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_partials(dst: Path) -> list[Path]:
    """Remove the temporaries of ``dst`` left by processes that no longer exist; return them.

    A live process's temporary (another run writing the same target) is left alone.
    """
    folder = dst.absolute().parent
    pattern = re.compile(rf"^\.{re.escape(dst.name)}{re.escape(PARTIAL_MARK)}(\d+)")
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = pattern.match(entry.name)
        if match is None or _process_exists(int(match.group(1))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed
