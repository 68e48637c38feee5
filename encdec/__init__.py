"""encdec: encoder-decoder models as three mirrored ports (PyTorch, TensorFlow, Flax).

`import encdec` imports no framework. The model classes are loaded on first use,
each importing only its own framework:

    from encdec import EncoderDecoderModel        # PyTorch
    from encdec import TFEncoderDecoderModel      # TensorFlow (Keras 3)
    from encdec import FlaxEncoderDecoderModel    # JAX / Flax
"""

from __future__ import annotations

import importlib
import importlib.util

from .config import (
    BartConfig,
    BertConfig,
    BertGenerationConfig,
    EncoderDecoderConfig,
    GenerationConfig,
    ElectraConfig,
    GPT2Config,
    RobertaConfig,
)
from .errors import (
    CheckpointError,
    ConfigError,
    EncdecError,
    InputError,
    MissingFrameworkError,
    NonFiniteError,
    UnsafePickleError,
)

__version__ = "0.1.0"

# attribute -> (port module, the import that module needs, the extra that installs it)
_PORTS = {
    "pt": ("encdec.pt", "torch", "torch"),
    "tf": ("encdec.tf", "tensorflow", "tf"),
    "flax": ("encdec.flax", "flax", "flax"),
}
_LAZY = {
    "EncoderDecoderModel": "pt",
    "TFEncoderDecoderModel": "tf",
    "FlaxEncoderDecoderModel": "flax",
}


def require_framework(port: str) -> None:
    """Raise MissingFrameworkError naming the extra to install when a port's framework is absent."""
    _, module, extra = _PORTS[port]
    if importlib.util.find_spec(module) is None:
        raise MissingFrameworkError(
            f"the {port!r} port needs {module!r}, which is not installed; "
            f"install it with: pip install 'encdec[{extra}]'"
        )


def __getattr__(name: str):
    if name == "pipeline":
        from .pipelines import pipeline

        return pipeline
    if name in ("export", "onnx"):
        # encdec.export(...) exports a model folder (the module is callable); encdec.onnx runs an ONNX export
        return importlib.import_module(f"{__name__}.{name}")
    port = _LAZY.get(name)
    if port is None:
        raise AttributeError(f"module 'encdec' has no attribute {name!r}")
    require_framework(port)
    module = importlib.import_module(_PORTS[port][0])
    return getattr(module, name)


__all__ = [
    "BartConfig",
    "BertConfig",
    "BertGenerationConfig",
    "CheckpointError",
    "ConfigError",
    "EncdecError",
    "ElectraConfig",
    "EncoderDecoderConfig",
    "FlaxEncoderDecoderModel",
    "GPT2Config",
    "GenerationConfig",
    "InputError",
    "NonFiniteError",
    "MissingFrameworkError",
    "RobertaConfig",
    "TFEncoderDecoderModel",
    "UnsafePickleError",
    "export",
    "pipeline",
    "require_framework",
]
