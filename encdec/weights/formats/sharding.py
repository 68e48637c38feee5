"""Weight file names, sharded checkpoints and their index, and whole-folder reading and writing.

Every format may be sharded: `<stem>-0000k-of-0000n.<ext>` files plus
`<file>.index.json` = `{"metadata": {"total_size": N}, "weight_map": {name: shard}}`.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Callable, Mapping

import numpy as np

from ...errors import CheckpointError
from ..names import TF_ROOT_SCOPE
from .common import FORMATS, WEIGHTS_NAME, Reader, nbytes_of
from .flax_msgpack import MsgpackFile, write_msgpack
from .keras_h5 import H5File, strip_tf_suffix, write_h5, write_h5_shard
from .safetensors import SafetensorsFile, write_safetensors
from .torch_bin import TorchFile, write_torch

# An index names files and tensors; one this large is not an index.
MAX_INDEX_BYTES = 64 * 2**20


def index_name(fmt: str) -> str:
    return WEIGHTS_NAME[fmt] + ".index.json"


def shard_name(fmt: str, k: int, n: int) -> str:
    stem, ext = os.path.splitext(WEIGHTS_NAME[fmt])
    if fmt == "safetensors":
        stem = "model"
    return f"{stem}-{k:05d}-of-{n:05d}{ext}"


def _shard_pattern(fmt: str) -> re.Pattern:
    stem, ext = os.path.splitext(WEIGHTS_NAME[fmt])
    return re.compile(rf"^{re.escape(stem)}-\d{{5}}-of-\d{{5}}{re.escape(ext)}$")


def is_weight_file(filename: str, fmt: str | None = None) -> bool:
    """Whether a file name is a weights file (single, shard or index) of `fmt` (or of any format)."""
    fmts = FORMATS if fmt is None else (fmt,)
    return any(
        filename in (WEIGHTS_NAME[f], index_name(f)) or _shard_pattern(f).match(filename) is not None for f in fmts
    )


def formats_present(directory: str | os.PathLike) -> list[str]:
    """The formats a folder holds weights in, in loading preference order."""
    return [
        fmt
        for fmt in FORMATS
        if os.path.isfile(os.path.join(directory, WEIGHTS_NAME[fmt]))
        or os.path.isfile(os.path.join(directory, index_name(fmt)))
    ]



_READERS: dict[str, Callable[[str], Reader]] = {
    "safetensors": SafetensorsFile,
    "pt": TorchFile,
    "tf": H5File,
    "flax": MsgpackFile,
}


def open_file(path: str | os.PathLike, fmt: str) -> Reader:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: file not found")
    return _READERS[fmt](path)


def _index_key_to_native(key: str, fmt: str) -> str:
    # transformers' TF index maps full weight names (root scope, ":0") to shards.
    if fmt == "tf":
        return strip_tf_suffix(key.split("/", 1)[1] if "/" in key else key)
    return key


class ShardedReader(Reader):
    """A sharded checkpoint: the index's shards, read as one."""

    def __init__(self, index_path: str, fmt: str) -> None:
        super().__init__()
        self.format = fmt
        self.index_path = index_path
        directory = os.path.dirname(index_path)
        expected = "expected {'metadata': ..., 'weight_map': {tensor name: shard file name}}"
        try:
            if os.path.getsize(index_path) > MAX_INDEX_BYTES:
                raise CheckpointError(
                    f"{index_path}: {os.path.getsize(index_path)} bytes, too large for an index; {expected}"
                )
            with open(index_path, "rb") as fh:
                index = json.loads(fh.read())
        except OSError as e:
            raise CheckpointError(f"{index_path}: cannot read ({e.strerror or e})") from None
        except (ValueError, RecursionError) as e:  # bad JSON or UTF-8, too deep, numbers too long
            raise CheckpointError(f"{index_path}: corrupt index ({type(e).__name__}: {e}); {expected}") from None
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"{index_path}: corrupt index: no 'weight_map' object; {expected}")
        for key, shard in weight_map.items():
            if not isinstance(shard, str):
                raise CheckpointError(
                    f"{index_path}: the index maps tensor {key!r} to {shard!r}, a {type(shard).__name__}; {expected}"
                )
        shard_files = list(dict.fromkeys(weight_map.values()))
        for shard in shard_files:
            if os.path.basename(shard) != shard or shard in ("", ".", ".."):
                raise CheckpointError(f"{index_path}: shard name {shard!r} is not a file name in the folder")
            if not os.path.isfile(os.path.join(directory, shard)):
                tensor = next(k for k, v in weight_map.items() if v == shard)
                raise CheckpointError(
                    f"{index_path}: shard {shard} (holding {tensor!r} and others) is missing from {directory}"
                )
        self._readers: list[Reader] = []
        self._owner: dict[str, Reader] = {}
        self.metadata = {}
        try:
            for shard in shard_files:
                reader = open_file(os.path.join(directory, shard), fmt)
                self._readers.append(reader)
                self.files.append(reader.files[0])
                if reader.metadata and not self.metadata:
                    self.metadata = dict(reader.metadata)
                for name in reader.names():
                    if name in self._owner:
                        raise CheckpointError(
                            f"{index_path}: tensor {name!r} is in both {self._owner[name].files[0]} and {shard}"
                        )
                    self._owner[name] = reader
                    self._infos[name] = reader.info(name)
            for key, shard in weight_map.items():
                native = _index_key_to_native(key, fmt)
                owner = self._owner.get(native)
                if owner is None or os.path.basename(owner.files[0]) != shard:
                    where = f"it is in {os.path.basename(owner.files[0])}" if owner else "no shard holds it"
                    raise CheckpointError(
                        f"{index_path}: the index puts tensor {key!r} in {shard}, but {where}"
                    )
        except BaseException:
            self.close()
            raise
        self.files.insert(0, index_path)

    def read(self, name: str) -> np.ndarray:
        return self._owner[name].read(name)

    def close(self) -> None:
        for reader in self._readers:
            reader.close()


def open_checkpoint(directory: str | os.PathLike, fmt: str | None = None) -> Reader:
    """Open the weights of a folder: `fmt`, or the first format present (safetensors, pt, tf, flax)."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise CheckpointError(f"{directory}: not a folder; expected a checkpoint folder")
    if fmt is not None and fmt not in FORMATS:
        raise CheckpointError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    present = formats_present(directory)
    if fmt is None:
        if not present:
            names = ", ".join(f"{WEIGHTS_NAME[f]} (or its index)" for f in FORMATS)
            raise CheckpointError(f"{directory}: no weights found; expected one of {names}")
        fmt = present[0]
    single = os.path.join(directory, WEIGHTS_NAME[fmt])
    if os.path.isfile(single):
        return open_file(single, fmt)
    index = os.path.join(directory, index_name(fmt))
    if os.path.isfile(index):
        return ShardedReader(index, fmt)
    raise CheckpointError(f"{directory}: no {WEIGHTS_NAME[fmt]} and no {index_name(fmt)}")


# ---------------------------------------------------------------------------
# Writing a whole checkpoint

_WRITERS: dict[str, Callable[[str, Mapping[str, Any]], None]] = {
    "safetensors": lambda path, tensors: write_safetensors(path, tensors, {"format": "pt"}),
    "pt": write_torch,
    "tf": write_h5,
    "flax": write_msgpack,
}
_SHARD_WRITERS = dict(_WRITERS, tf=write_h5_shard)


def _index_key(name: str, fmt: str) -> str:
    return f"{TF_ROOT_SCOPE}/{name}:0" if fmt == "tf" else name


def write_checkpoint(
    directory: str | os.PathLike, fmt: str, tensors: Mapping[str, Any], shard_size: int | None = None
) -> list[str]:
    """Write `tensors` (native names, in order) as one file or as shards of at most `shard_size` bytes.

    Shards are filled greedily in order, as transformers does; a tensor larger
    than `shard_size` gets a shard of its own. Entries that are the same object
    (tied tensors in a .bin) stay in one shard and are counted once. Returns the
    file names written; weight files of `fmt` left from an earlier save are removed.
    """
    directory = os.fspath(directory)
    if fmt not in FORMATS:
        raise CheckpointError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    groups: dict[int, list[str]] = {}
    for name, value in tensors.items():
        groups.setdefault(id(value), []).append(name)
    sizes = {key: nbytes_of(tensors[names[0]]) for key, names in groups.items()}
    total = sum(sizes.values())
    if shard_size is None or total <= shard_size:
        shards = [list(tensors)]
    else:
        shards, current, current_size = [], [], 0
        for key, names in groups.items():
            if current and current_size + sizes[key] > shard_size:
                shards.append(current)
                current, current_size = [], 0
            current += names
            current_size += sizes[key]
        if current:
            shards.append(current)
    written = []
    if len(shards) == 1:
        _WRITERS[fmt](os.path.join(directory, WEIGHTS_NAME[fmt]), tensors)
        written.append(WEIGHTS_NAME[fmt])
    else:
        weight_map = {}
        for k, names in enumerate(shards, start=1):
            filename = shard_name(fmt, k, len(shards))
            _SHARD_WRITERS[fmt](os.path.join(directory, filename), {n: tensors[n] for n in names})
            written.append(filename)
            weight_map.update({_index_key(n, fmt): filename for n in names})
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        with open(os.path.join(directory, index_name(fmt)), "w") as f:
            f.write(json.dumps(index, indent=2, sort_keys=True) + "\n")
        written.append(index_name(fmt))
    for filename in os.listdir(directory):
        if is_weight_file(filename, fmt) and filename not in written:
            os.remove(os.path.join(directory, filename))
    return written

