"""Lineage of a run: which files went in (with sizes), which code, which features and config."""

from __future__ import annotations

import glob
import logging
import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sparkhep.config import JobConfig

log = logging.getLogger(__name__)


def input_manifest(config: JobConfig) -> list[dict[str, Any]]:
    """Every input file of every sample, with its size in bytes (``None`` for remote URLs).

    Args:
        config: the job config (sample paths and globs).

    Returns:
        One ``{"sample", "label", "path", "bytes"}`` per file, in sample then path order.
    """
    rows = []
    for sample in config.samples:
        for pattern in sample.paths:
            local = pattern.removeprefix("file://")
            matches = sorted(glob.glob(local)) if "://" not in local else [pattern]
            for path in matches:
                size = os.path.getsize(path) if "://" not in path else None
                rows.append(
                    {"sample": sample.name, "label": sample.label, "path": path, "bytes": size}
                )
    return rows


def git_commit(directory: Path | None = None) -> str | None:
    """The git commit of the code that runs (``git rev-parse HEAD``), or ``None`` outside git.

    Args:
        directory: where to ask; the package's own directory by default.

    Returns:
        The commit hash, with ``-dirty`` appended when tracked files are modified.
    """
    where = directory or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{commit}-dirty" if dirty else commit
