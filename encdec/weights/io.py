"""Writing checkpoint folders safely, recovering from a save that was killed, and parsing sizes like "5GB".

A save writes a temporary sibling folder and swaps it in with two renames. Each
leftover of a save is named `.<name>.<stage>-<host>-<pid>-<random>`, stage
`tmp` (being written), `new` (complete, about to be swapped in) or `old` (the
previous folder, being replaced), so a later save or load of the same path can
tell the leftovers of a process that died from those of a save still running.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import socket
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
    _fsync_dir(path)


def _fsync_dir(path: str) -> None:
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


# Called between the two renames of a save, with the path being replaced; tests set it to kill the
# process there. None in normal use.
between_renames_hook: Callable[[str], None] | None = None


def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def _leftover_pattern(name: str) -> re.Pattern:
    return re.compile(rf"^\.{re.escape(name)}\.(tmp|new|old)-([0-9a-f]{{8}})-(\d+)-[A-Za-z0-9_]+$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _real_target(path: str | os.PathLike) -> str:
    """The folder a save writes: `path` itself, or what it points to when it is a symlink (kept as a link)."""
    path = os.path.abspath(os.fspath(path))
    return os.path.realpath(path) if os.path.islink(path) else path


def recover_directory(path: str | os.PathLike) -> list[str]:
    """Finish, or clean up after, saves into `path` whose process died; returns what was done, in words.

    A save killed between its two renames leaves no folder at `path`, the new
    checkpoint complete in `.<name>.new-*` and the previous one in `.<name>.old-*`:
    the newest complete new one is moved into place (or, if there is none, the
    old one back). Then every leftover of a dead process on this host is
    removed: partial `tmp` folders, and the `new` and `old` ones not used.
    Leftovers of saves still running, or of other hosts, are left alone.
    """
    target = _real_target(path)
    parent, name = os.path.split(target)
    if not os.path.isdir(parent):
        return []
    pattern, host = _leftover_pattern(name), _host_tag()
    dead: dict[str, list[str]] = {"tmp": [], "new": [], "old": []}
    for entry in os.listdir(parent):
        m = pattern.match(entry)
        if m and m.group(2) == host and not _alive(int(m.group(3))):
            dead[m.group(1)].append(os.path.join(parent, entry))
    done = []
    if not os.path.lexists(target):
        for stage in ("new", "old"):
            candidates = sorted(dead[stage], key=lambda p: os.stat(p).st_mtime_ns)
            if candidates:
                with contextlib.suppress(OSError):  # another process recovered it first
                    os.rename(candidates[-1], target)
                    dead[stage].remove(candidates[-1])
                    what = "the checkpoint a killed save had written" if stage == "new" else "the previous checkpoint"
                    done.append(f"restored {what} to {target} from {os.path.basename(candidates[-1])}")
                break
    for stage in ("tmp", "new", "old"):
        for leftover in dead[stage]:
            shutil.rmtree(leftover, ignore_errors=True)
            done.append(f"removed {os.path.basename(leftover)}, left by a killed save")
    if done:
        _fsync_dir(parent)
    return done


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, keep: Callable[[str], bool] | None = None) -> Iterator[str]:
    """Yield a temporary sibling folder to write into; on success it replaces `path`.

    Files already in `path` that were not written (a tokenizer, a README) are
    carried over, unless `keep(filename)` says no (stale weight shards). If the
    block raises, `path` is untouched and the temporary folder removed. When
    `path` is a symlink, the folder it points to is replaced and the link kept.
    A save killed at any point leaves either the old or the new checkpoint at
    `path`, or (killed between the renames) both in hidden siblings that the
    next save or load of `path` (`recover_directory`) puts back and cleans up.
    """
    target = _real_target(path)
    parent, name = os.path.split(target)
    os.makedirs(parent, exist_ok=True)
    recover_directory(target)
    if os.path.exists(target) and not os.path.isdir(target):
        raise ConfigError(f"{target}: exists and is not a folder; expected a checkpoint folder to write")
    tag = f"{_host_tag()}-{os.getpid()}-"
    work = tempfile.mkdtemp(prefix=f".{name}.tmp-{tag}", dir=parent)
    old = None
    try:
        yield work
        if os.path.isdir(target):
            for entry in os.listdir(target):
                dst = os.path.join(work, entry)
                if os.path.lexists(dst) or (keep is not None and not keep(entry)):
                    continue
                _carry_over(os.path.join(target, entry), dst)
            mode = os.stat(target).st_mode & 0o7777
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o777 & ~umask
        os.chmod(work, mode)
        _fsync_tree(work)
        # Renamed once complete, so that recovery can tell a whole checkpoint from a partial one.
        new = os.path.join(parent, os.path.basename(work).replace(".tmp-", ".new-", 1))
        os.rename(work, new)
        work = new
        if os.path.isdir(target):
            old = tempfile.mkdtemp(prefix=f".{name}.old-{tag}", dir=parent)
            os.rmdir(old)
            os.rename(target, old)
            if between_renames_hook is not None:
                between_renames_hook(target)
        os.rename(work, target)
        work = None
        _fsync_dir(parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        if old is not None and not os.path.lexists(target):
            os.rename(old, target)  # failed between the renames: the previous checkpoint goes back
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
        raise
