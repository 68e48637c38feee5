"""Writing checkpoint folders safely, and parsing sizes like "5GB"."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from typing import Callable, Iterator

from ..errors import ConfigError

_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}


def parse_size(size: int | str) -> int:
    """Bytes from an int or a string like "5GB", "500MB", "2GiB" (GB = 10**9, GiB = 2**30, as transformers)."""
    if isinstance(size, int) and not isinstance(size, bool):
        if size <= 0:
            raise ConfigError(f"size {size} must be positive")
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(size))
    unit = match.group(2).upper() if match else None
    if match is None or unit not in _UNITS:
        raise ConfigError(f"cannot read size {size!r}; expected a number of bytes or e.g. '5GB', '500MB', '2GiB'")
    value = int(float(match.group(1)) * _UNITS[unit])
    if value <= 0:
        raise ConfigError(f"size {size!r} must be positive")
    return value


def _fsync_tree(path: str) -> None:
    for root, _dirs, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _carry_over(src: str, dst: str) -> None:
    """Put an existing file into the new folder: a hard link when possible (no copy of big files)."""
    if os.path.isdir(src) and not os.path.islink(src):
        shutil.copytree(src, dst, symlinks=True)
        return
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, keep: Callable[[str], bool] | None = None) -> Iterator[str]:
    """Yield a temporary sibling folder to write into; on success it replaces `path`.

    Files already in `path` that were not written (a tokenizer, a README) are
    carried over, unless `keep(filename)` says no (stale weight shards). If the
    block raises, `path` is untouched and the temporary folder removed. The
    swap is two renames: a crash between them leaves the new checkpoint in
    `.<name>.tmp-*` and the previous one in `.<name>.old-*`, both whole.
    """
    path = os.path.abspath(os.fspath(path))
    parent, name = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"{path}: exists and is not a folder; expected a checkpoint folder to write")
    tmp = tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent)
    try:
        yield tmp
        if os.path.isdir(path):
            for entry in os.listdir(path):
                target = os.path.join(tmp, entry)
                if os.path.lexists(target) or (keep is not None and not keep(entry)):
                    continue
                _carry_over(os.path.join(path, entry), target)
            mode = os.stat(path).st_mode & 0o7777
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o777 & ~umask
        os.chmod(tmp, mode)
        _fsync_tree(tmp)
        if os.path.isdir(path):
            old = tempfile.mkdtemp(prefix=f".{name}.old-", dir=parent)
            os.rmdir(old)
            os.rename(path, old)
            os.rename(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
