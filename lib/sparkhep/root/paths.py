"""Where ROOT files are: expand glob patterns and directories, pass plain URLs through.

Local paths and ``file://`` URLs are resolved on the driver (globs expanded, directories
listed, optionally recursively, made absolute so that executors in another working directory
find them too). ``root://`` and ``hdfs://`` URLs with glob characters are expanded through
fsspec (fsspec-xrootd, pyarrow's HDFS client); ``http(s)://`` URLs are never expanded (HTTP has
no listing, and ``?`` starts a query) and, like every other URL without glob characters, go to
uproot unchanged.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit
from urllib.request import url2pathname

LOCAL_SCHEMES = ("", "file")
LISTABLE_SCHEMES = ("root", "xroot", "hdfs", "viewfs", "s3")


@dataclass(frozen=True)
class FileStatus:
    """Size and modification time of an input file, as far as its storage tells them.

    Attributes:
        path: the file.
        size: bytes, or None when unknown.
        mtime: seconds since the epoch, or None when unknown.
    """

    path: str
    size: int | None
    mtime: float | None


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


def expand_paths(patterns: Sequence[str], *, recursive: bool = False) -> list[str]:
    """Expand glob patterns and directories into files; keep plain URLs as given.

    A local directory stands for the ``*.root`` files directly inside it, or anywhere below
    it with ``recursive``; with ``recursive``, ``**`` in a pattern also spans directories.

    Args:
        patterns: paths, ``file://`` URLs, glob patterns or URLs.
        recursive: list directories recursively.

    Returns:
        Absolute local paths (sorted within each pattern) and URLs, in the order given; a file
        named twice is read twice.

    Raises:
        FileNotFoundError: a pattern matches nothing, or a local path does not exist.
    """
    files: list[str] = []
    for pattern in patterns:
        if not is_local(pattern):
            files.extend(_expand_remote(pattern))
            continue
        path = os.path.abspath(os.path.expanduser(local_path(pattern)))
        if os.path.isdir(path):
            below = ("**", "*.root") if recursive else ("*.root",)
            matches = sorted(
                glob.glob(os.path.join(glob.escape(path), *below), recursive=recursive)
            )
            if not matches:
                where = " or below it" if recursive else " (option recursive lists subdirectories)"
                raise FileNotFoundError(f"directory {pattern!r} holds no *.root files{where}")
            files.extend(matches)
        elif os.path.exists(path):
            files.append(path)
        elif glob.has_magic(path):
            matches = sorted(m for m in glob.glob(path, recursive=recursive) if os.path.isfile(m))
            if not matches:
                raise FileNotFoundError(f"no ROOT file matches the pattern {pattern!r}")
            files.extend(matches)
        else:
            raise FileNotFoundError(f"ROOT file {pattern!r} does not exist (looked for {path!r})")
    return files


def _expand_remote(url: str) -> list[str]:
    scheme = urlsplit(url).scheme.lower()
    if scheme not in LISTABLE_SCHEMES or not any(c in url for c in "*?["):
        return [url]
    import fsspec

    try:
        # url_to_fs + glob rather than get_fs_token_paths(expand=True), which leaves
        # ``[...]`` character classes unexpanded.
        filesystem, stripped = fsspec.core.url_to_fs(url)
        found = filesystem.glob(stripped)
    except ImportError as err:
        raise ImportError(
            f"cannot list {url!r}: install the fsspec implementation for {scheme}:// "
            f"(for root://: pip install 'sparkhep[xrootd]')"
        ) from err
    if not found:
        raise FileNotFoundError(f"no ROOT file matches the pattern {url!r}")
    return sorted(filesystem.unstrip_protocol(path) for path in found)


def file_status(path: str) -> FileStatus:
    """Size and modification time of a file (what the convert job compares between runs).

    Args:
        path: a local path, ``file://`` URL or URL fsspec can reach.

    Returns:
        The status; size and mtime are None where the storage does not say (e.g. some HTTP
        servers), and a file that no longer exists has both None.
    """
    if is_local(path):
        try:
            stat = os.stat(local_path(path))
        except FileNotFoundError:
            return FileStatus(path, None, None)
        return FileStatus(path, stat.st_size, stat.st_mtime)
    import fsspec

    try:
        filesystem, _, (inner,) = fsspec.get_fs_token_paths(path)
        info = filesystem.info(inner)
    except Exception:  # any storage error: the status is unknown, the run will not be reused
        return FileStatus(path, None, None)
    mtime = info.get("mtime", info.get("modified", info.get("last_modified")))
    if hasattr(mtime, "timestamp"):
        mtime = mtime.timestamp()
    size = info.get("size")
    return FileStatus(
        path,
        int(size) if size is not None else None,
        float(mtime) if isinstance(mtime, int | float) else None,
    )
