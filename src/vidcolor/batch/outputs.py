"""What ``vidcolor batch --report/--compare`` writes beside each output, and the batch report."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

BATCH_REPORT_NAME = "vidcolor-batch-report.json"


def report_path(output: Path) -> Path:
    """``one.color.mp4`` -> ``one.color.json`` beside it."""
    return output.with_suffix(".json")


def compare_path(output: Path) -> Path:
    """``one.color.mp4`` -> ``one.compare.mp4`` in the same folder."""
    return output.with_name(output.name.replace(".color.", ".compare.", 1))


def write_batch_report(path: Path, outcome: Mapping[str, list], summaries: Mapping[Path, Any],
                       errors: Mapping[Path, str]) -> None:
    """One JSON for the batch: totals per status and every file's status; a colorized file
    adds what its own report says in brief, a failed one its error."""
    files = []
    for status, jobs in outcome.items():
        for job in jobs:
            entry = {"video": str(job.video), "status": status, "output": str(job.output),
                     "reference": str(job.reference) if job.reference else None}
            summary = summaries.get(job.video)
            if summary is not None:
                entry |= {"report": str(report_path(job.output)), "frames": summary.frames,
                          "seconds": round(summary.seconds, 3), "fps": round(summary.fps, 3),
                          "warnings": list(summary.warnings)}
            if job.video in errors:
                entry["error"] = errors[job.video]
            files.append(entry)
    totals = {status: len(jobs) for status, jobs in outcome.items()}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"totals": totals, "files": files}, indent=2))
    os.replace(tmp, path)
