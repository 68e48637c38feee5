"""Saving and loading one architecture on its own (a `FlaxBertModel`, a `FlaxGPT2LMHeadModel`, ...)."""

from __future__ import annotations

import os
from typing import Optional

import jax.numpy as jnp

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


class FlaxPreTrainedModel:
    """Mixed into the architecture classes that transformers users save and load alone.

    Linen modules hold no weights, so this follows transformers' Flax API as far as
    Linen allows:

    - `FlaxBertModel.from_pretrained(directory)` returns the module bound to the
      folder's params (`module.bind({"params": params})`): call it like a function
      (`model(input_ids)`), read its weights from `model.params`;
    - `model.save_pretrained(directory, params=None)` writes config.json and the
      weights (`flax_model.msgpack`, or `model.safetensors` with
      `safe_serialization=True`) of `params`, by default the bound ones. An unbound
      module needs `params`, e.g. the encoder half of an encoder-decoder:
      `model.get_encoder().save_pretrained(d, params=model.params["encoder"])`.

    The folders are transformers' (`encdec.weights.component`), in any of the four
    formats, and `FlaxEncoderDecoderModel.from_encoder_decoder_pretrained(d, ...)` joins them.
    """

    @classmethod
    def _component(cls) -> Component:
        return class_component([c.__name__ for c in cls.__mro__], "Flax")

    def _has_pooler(self) -> bool:
        return bool(getattr(self, "add_pooling_layer", True))

    @property
    def params(self) -> dict:
        """The params of a bound module (`from_pretrained`'s)."""
        if self.scope is None:
            raise ConfigError(
                f"this {type(self).__name__} is not bound to params; expected a module from from_pretrained, or "
                "module.bind({'params': params})"
            )
        return self.variables["params"]

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
        """The module bound to the params of a folder of this architecture (any of the four formats;
        `fmt` picks one of several).

        `config` replaces the folder's config.json, `config_overrides` set its keys (e.g.
        `is_decoder=True, add_cross_attention=True`). What the folder lacks (an LM head,
        cross-attention) is drawn with `init_weights` and logged by name. `dtype` is the
        computation dtype (float32 if None); the params stay float32. ConfigError for a
        folder of another model_type or without config.json.
        """
        from .encoder_decoder import _put_state

        component = cls._component()
        folder = read_component_folder(directory, component.model_type, component.kind, component.class_name,
                                       fmt=fmt, config=config, **config_overrides)
        module = cls(folder.config, jnp.float32 if dtype is None else dtype)
        spec = architecture_spec(folder.config, component.kind, module._has_pooler())
        return module.bind({"params": _put_state({}, spec, folder.state)})

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        params: Optional[dict] = None,
        *,
        fmt: Optional[str] = None,
        safe_serialization: bool = False,
        max_shard_size: Optional[int | str] = None,
    ) -> None:
        """Write config.json and the weights of `params` (default: the bound ones) as transformers
        names them (`fmt`: "safetensors", "pt", "tf" or "flax"; default `flax_model.msgpack`, or
        safetensors with `safe_serialization=True`), sharded above `max_shard_size`.

        Written to a temporary sibling and renamed into place, so a failure leaves any
        previous folder there whole.
        """
        from ..weights.state import nested_state

        component = self._component()
        spec = architecture_spec(self.config, component.kind, self._has_pooler())
        state = nested_state(spec, self.params if params is None else params)
        write_component_folder(save_directory, state, self.config, component.kind, component.class_name,
                               fmt or default_format("flax", safe_serialization), max_shard_size,
                               pooler=self._has_pooler())
