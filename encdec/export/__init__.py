"""Exports for deployment: ONNX (with a decoder cache), TF SavedModel and JAX.

`encdec.export(model_dir, out, to=...)` (this module is callable; the same as its `export`) reads a model folder (what `save_pretrained` writes)
and writes `out`: the export's own files (written by the kind's module), the model's
`config.json` and `generation_config.json`, its tokenizer files, and `export.json`
(the kind, dtype, opset and the generation options fixed at export time). The folder
is written to a temporary sibling and renamed into place, so a failure never leaves
a half-written export. The options are checked here, once, before any framework is
imported. Each kind's module (`KINDS`) provides:

    DTYPES                  the dtypes it writes and its runtime runs
    GENERATION_OPTIONS      generate options it fixes at export time (() for none)
    write(model_dir, out, *, dtype, opset, generation)
    load(path) -> a runner with forward(input_ids, attention_mask, decoder_input_ids)
                  -> logits and generate(input_ids, attention_mask, **options) -> ids
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Mapping, Optional

from ..errors import ExportError

# kind -> its module in this package
KINDS = {"onnx": "onnx", "savedmodel": "savedmodel", "jax": "jax_export"}
# kind -> the framework its writer needs (its runner may need less: see each module)
WRITER_NEEDS = {"onnx": "pt", "savedmodel": "tf", "jax": "flax"}
DTYPES = ("float32", "float16", "bfloat16")
MANIFEST = "export.json"
MODEL_FILES = ("config.json", "generation_config.json")


def kind_module(to: str) -> ModuleType:
    """The module that writes and runs exports of kind `to`."""
    if to not in KINDS:
        raise ExportError(f"cannot export to {to!r}; expected one of {', '.join(KINDS)}")
    return importlib.import_module(f"{__name__}.{KINDS[to]}")


def check_options(to: str, dtype: str, opset: Optional[int], generation: Mapping[str, Any]) -> ModuleType:
    """Refuse options the kind cannot honour; returns the kind's module."""
    if to not in KINDS:
        raise ExportError(f"cannot export to {to!r}; expected one of {', '.join(KINDS)}")
    if dtype not in DTYPES:
        raise ExportError(f"dtype {dtype!r} is not an export dtype; expected one of {', '.join(DTYPES)}")
    if opset is not None and to != "onnx":
        raise ExportError(f"an opset applies to ONNX exports only; got opset={opset} for a {to} export")
    if opset is not None and (isinstance(opset, bool) or not isinstance(opset, int) or opset < 1):
        raise ExportError(f"opset is {opset!r}; expected a positive integer")
    from .. import require_framework

    require_framework(WRITER_NEEDS[to])
    module = kind_module(to)
    if dtype not in module.DTYPES:
        raise ExportError(f"a {to} export cannot be written in {dtype}; its runtime runs {', '.join(module.DTYPES)}")
    unknown = sorted(set(generation) - set(module.GENERATION_OPTIONS))
    if unknown:
        fixed = ", ".join(module.GENERATION_OPTIONS)
        expected = f"expected only {fixed}" if fixed else "its generation options are given when it runs, not at export"
        raise ExportError(f"a {to} export takes no generation option {', '.join(unknown)}; {expected}")
    return module


def export(model_dir: str | os.PathLike, out: str | os.PathLike, *, to: str, dtype: str = "float32",
           opset: Optional[int] = None, overwrite: bool = False,
           generation: Optional[Mapping[str, Any]] = None) -> Path:
    """Export the model folder `model_dir` to `out` as `to` ("onnx", "savedmodel" or "jax").

    `generation` fixes generate's options in the exported function (SavedModel, JAX);
    an existing `out` is refused unless `overwrite`, and then replaced whole.
    Returns `out`. Raises ExportError before anything is written for bad options.
    """
    from ..weights.io import atomic_directory

    source, target = Path(model_dir), Path(out)
    generation = dict(generation or {})
    module = check_options(to, dtype, opset, generation)
    if not (source / "config.json").is_file():
        raise ExportError(f"{source}: no config.json; expected a model folder written by save_pretrained")
    if target.exists() or target.is_symlink():
        if not overwrite:
            raise ExportError(f"{target}: exists; expected a new destination, or overwrite=True (--overwrite)")
        if not target.is_dir():
            raise ExportError(f"{target}: exists and is not a folder; expected a folder to replace")
    resolved_source, resolved_target = source.resolve(), target.resolve()
    if resolved_target == resolved_source or resolved_source in resolved_target.parents \
            or resolved_target in resolved_source.parents:
        raise ExportError(f"{target}: overlaps the model folder {source}; expected a destination outside it")
    with atomic_directory(target, keep=lambda name: False) as tmp:
        module.write(source, Path(tmp), dtype=dtype, opset=opset, generation=generation)
        _copy_model_files(source, Path(tmp))
        manifest = {"kind": to, "dtype": dtype, "opset": opset, "generation": generation}
        Path(tmp, MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return target


def read_manifest(path: str | os.PathLike) -> dict:
    """The `export.json` of an export folder."""
    file = Path(path) / MANIFEST
    try:
        manifest = json.loads(file.read_text())
    except FileNotFoundError:
        raise ExportError(f"{path}: no {MANIFEST}; expected a folder written by encdec export") from None
    except (OSError, ValueError) as e:
        raise ExportError(f"{file}: unreadable ({e}); expected the JSON encdec export writes") from None
    if not isinstance(manifest, dict) or manifest.get("kind") not in KINDS:
        raise ExportError(f"{file}: kind is {manifest.get('kind') if isinstance(manifest, dict) else manifest!r}; "
                          f"expected one of {', '.join(KINDS)}")
    return manifest


def load(path: str | os.PathLike):
    """The runner of the export at `path`, of whatever kind its manifest names."""
    return kind_module(read_manifest(path)["kind"]).load(path)


def _copy_model_files(source: Path, target: Path) -> None:
    from ..config import EncoderDecoderConfig, GenerationConfig
    from ..tokenization import DECODER_TOKENIZER_DIR, copy_tokenizer_files

    for name in MODEL_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, target / name)
    if not (target / "generation_config.json").exists():
        GenerationConfig.from_model_config(EncoderDecoderConfig.from_pretrained(source)).save_pretrained(target)
    copy_tokenizer_files(source, target)
    if (source / DECODER_TOKENIZER_DIR).is_dir():
        copy_tokenizer_files(source / DECODER_TOKENIZER_DIR, target / DECODER_TOKENIZER_DIR)


class _ExportModule(ModuleType):
    """This module, callable: `encdec.export(model_dir, out, to=...)` is `encdec.export.export(...)`."""

    def __call__(self, model_dir: str | os.PathLike, out: str | os.PathLike, **options) -> Path:
        return export(model_dir, out, **options)


sys.modules[__name__].__class__ = _ExportModule
