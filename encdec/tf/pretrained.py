"""Saving and loading one architecture on its own (a `TFBertModel`, a `TFGPT2LMHeadModel`, ...)."""

from __future__ import annotations

import os
from typing import Optional

import numpy as np
import tensorflow as tf

from ..config import ArchConfig
from ..errors import ConfigError
from ..weights.component import (
    Component,
    architecture_spec,
    class_component,
    default_format,
    read_component_folder,
    write_component_folder,
)


class TFPreTrainedModel:
    """Mixed into the architecture classes that transformers users save and load alone.

    `model.save_pretrained(directory)` writes the folder transformers' class of the
    same name writes: config.json and the class's own weights (`tf_model.h5` in the
    Keras 2 layout, or `model.safetensors` with `safe_serialization=True`), so that
    `model.encoder.save_pretrained(d)` gives a folder that
    `TFEncoderDecoderModel.from_encoder_decoder_pretrained(d, ...)` loads.
    `TFBertModel.from_pretrained(directory)` reads such a folder in any of the four
    formats (`encdec.weights.component`).
    """

    @classmethod
    def _component(cls) -> Component:
        return class_component([c.__name__ for c in cls.__mro__], "TF")

    def _has_pooler(self) -> bool:
        return getattr(self, "pooler", None) is not None

    @classmethod
    def from_pretrained(
        cls,
        directory: str | os.PathLike,
        *,
        fmt: Optional[str] = None,
        dtype=None,
        config: Optional[ArchConfig] = None,
        **config_overrides,
    ):
        """Load a folder of this architecture (any of the four formats; `fmt` picks one of several).

        `config` replaces the folder's config.json, `config_overrides` set its keys (e.g.
        `is_decoder=True, add_cross_attention=True`). What the folder lacks (an LM head,
        cross-attention) is drawn with `init_weights` and logged by name. The TF port
        computes in float32: `dtype` may be None or float32. ConfigError for a folder of
        another model_type or without config.json.
        """
        from .encoder_decoder import _variable

        if dtype is not None and tf.as_dtype(dtype) != tf.float32:
            raise ConfigError(f"dtype {dtype!r}: the TensorFlow port computes in float32; expected None or float32")
        component = cls._component()
        folder = read_component_folder(directory, component.model_type, component.kind, component.class_name,
                                       fmt=fmt, config=config, **config_overrides)
        model = cls(folder.config)
        for p in architecture_spec(folder.config, component.kind, model._has_pooler()):
            variable = _variable(model, p)
            variable.assign(np.asarray(p.to_native(folder.state[p.name], "tf"), dtype=variable.dtype))
        return model

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        *,
        fmt: Optional[str] = None,
        safe_serialization: bool = False,
        max_shard_size: Optional[int | str] = None,
    ) -> None:
        """Write config.json and the weights of this class alone, as transformers names them
        (`fmt`: "safetensors", "pt", "tf" or "flax"; default `tf_model.h5`, or safetensors with
        `safe_serialization=True`), sharded above `max_shard_size`.

        Written to a temporary sibling and renamed into place, so a failure leaves any
        previous folder there whole.
        """
        from .encoder_decoder import _variable

        component = self._component()
        spec = architecture_spec(self.config, component.kind, self._has_pooler())
        state = {p.name: p.to_canonical(_variable(self, p).numpy(), "tf") for p in spec}
        write_component_folder(save_directory, state, self.config, component.kind, component.class_name,
                               fmt or default_format("tf", safe_serialization), max_shard_size,
                               pooler=self._has_pooler())
