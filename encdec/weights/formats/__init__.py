"""The four checkpoint formats transformers writes, read and written with numpy only.

Each format has one reader and one writer, both working on a flat mapping of the
format's *native* names and layouts:

| format | file | module | native names |
|---|---|---|---|
| "safetensors" | `model.safetensors` | `safetensors` (the library) | PyTorch `state_dict` names |
| "pt" | `pytorch_model.bin` | `torch_bin` (no pickle code runs) | PyTorch `state_dict` names, tied copies included |
| "tf" | `tf_model.h5` (Keras 2 `save_weights`) | `keras_h5` (h5py) | TF weight names without the root scope and `:0` |
| "flax" | `flax_model.msgpack` | `flax_msgpack` | "/"-joined param paths |

`sharding` reads and writes sharded checkpoints and whole folders. Readers are
lazy and bounded by what the file holds (see `common`); writers take numpy
arrays or `LazyTensor`s and load each one only when it is written.
"""

from __future__ import annotations

from .common import (
    BF16,
    FORMATS,
    WEIGHTS_NAME,
    LazyTensor,
    Reader,
    TensorInfo,
    as_dtype,
    c_contiguous,
    is_floating,
    materialize,
)
from .flax_msgpack import MSGPACK_MAX_CHUNK_SIZE, MsgpackFile, write_msgpack
from .keras_h5 import HDF5_OBJECT_HEADER_LIMIT, KERAS_VERSION, H5File, write_h5, write_h5_shard
from .safetensors import SafetensorsFile, write_safetensors
from .sharding import (
    ShardedReader,
    formats_present,
    index_name,
    is_weight_file,
    open_checkpoint,
    open_file,
    shard_name,
    write_checkpoint,
)
from .torch_bin import TORCH_STORAGE_ALIGNMENT, TorchFile, write_torch

__all__ = [
    "BF16",
    "FORMATS",
    "HDF5_OBJECT_HEADER_LIMIT",
    "KERAS_VERSION",
    "MSGPACK_MAX_CHUNK_SIZE",
    "TORCH_STORAGE_ALIGNMENT",
    "WEIGHTS_NAME",
    "H5File",
    "LazyTensor",
    "MsgpackFile",
    "Reader",
    "SafetensorsFile",
    "ShardedReader",
    "TensorInfo",
    "TorchFile",
    "as_dtype",
    "c_contiguous",
    "formats_present",
    "index_name",
    "is_floating",
    "is_weight_file",
    "materialize",
    "open_checkpoint",
    "open_file",
    "shard_name",
    "write_checkpoint",
    "write_h5",
    "write_h5_shard",
    "write_msgpack",
    "write_safetensors",
    "write_torch",
]
