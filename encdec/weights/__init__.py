"""The framework-neutral core: parameter names, checkpoint formats and conversion (numpy only).

`names` is imported eagerly (numpy only); the format and conversion modules,
which import h5py and msgpack, load on first use of one of their names.
"""

from __future__ import annotations

import importlib

from .names import (
    ModelSpec,
    ParamSpec,
    TiedSpec,
    decoder_spec,
    encoder_spec,
    expand_tied,
    init_weights,
    model_spec,
)

_LAZY = {
    "LAYOUT": "convert",
    "ConvertReport": "convert",
    "LoadReport": "convert",
    "convert_checkpoint": "convert",
    "load_component": "convert",
    "load_state": "convert",
    "save_state": "convert",
    "to_native": "convert",
    "from_native": "convert",
    "FORMATS": "formats",
    "WEIGHTS_NAME": "formats",
    "LazyTensor": "formats",
    "formats_present": "formats",
    "open_checkpoint": "formats",
    "write_checkpoint": "formats",
    "check_config_fits": "convert",
    "atomic_directory": "io",
    "parse_size": "io",
    "recover_directory": "io",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'encdec.weights' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = sorted(
    [
        "ModelSpec",
        "ParamSpec",
        "TiedSpec",
        "decoder_spec",
        "encoder_spec",
        "expand_tied",
        "init_weights",
        "model_spec",
        *_LAZY,
    ]
)
