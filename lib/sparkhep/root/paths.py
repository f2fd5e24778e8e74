"""Where ROOT files are: expand local glob patterns and directories, pass remote URLs through.

Local paths and ``file://`` URLs are resolved on the driver (globs expanded, directories
listed, made absolute so that executors in another working directory find them too); every
other URL (``root://``, ``https://``, ``hdfs://`` ...) goes to uproot unchanged.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from urllib.parse import urlsplit
from urllib.request import url2pathname

LOCAL_SCHEMES = ("", "file")


def is_local(path: str) -> bool:
    """Whether ``path`` is a local path or a ``file://`` URL.

    Args:
        path: a path or URL.

    Returns:
        True for local files.
    """
    scheme = urlsplit(path).scheme.lower()
    return scheme in LOCAL_SCHEMES or len(scheme) == 1


def local_path(path: str) -> str:
    """The file-system path of a local path or ``file://`` URL (``file:/x``, ``file:///x``).

    Args:
        path: a local path or ``file://`` URL.

    Returns:
        The path, with URL escapes decoded for ``file://`` URLs.
    """
    parts = urlsplit(path)
    if parts.scheme.lower() != "file":
        return path
    return url2pathname(parts.path)


def expand_paths(patterns: Sequence[str]) -> list[str]:
    """Expand local glob patterns and directories into files; keep remote URLs as given.

    A local directory stands for the ``*.root`` files directly inside it.

    Args:
        patterns: paths, ``file://`` URLs, glob patterns or remote URLs.

    Returns:
        Absolute local paths (sorted within each pattern) and remote URLs, in the order given;
        a file named twice is read twice.

    Raises:
        FileNotFoundError: a local pattern matches nothing, or a local path does not exist.
    """
    files: list[str] = []
    for pattern in patterns:
        if not is_local(pattern):
            files.append(pattern)
            continue
        path = os.path.abspath(os.path.expanduser(local_path(pattern)))
        if os.path.isdir(path):
            matches = sorted(glob.glob(os.path.join(glob.escape(path), "*.root")))
            if not matches:
                raise FileNotFoundError(f"directory {pattern!r} holds no *.root files")
            files.extend(matches)
        elif os.path.exists(path):
            files.append(path)
        elif glob.has_magic(path):
            matches = sorted(m for m in glob.glob(path) if os.path.isfile(m))
            if not matches:
                raise FileNotFoundError(f"no ROOT file matches the pattern {pattern!r}")
            files.extend(matches)
        else:
            raise FileNotFoundError(f"ROOT file {pattern!r} does not exist (looked for {path!r})")
    return files
