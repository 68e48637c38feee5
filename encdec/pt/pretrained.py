"""Saving and loading one architecture on its own (a `BertModel`, a `GPT2LMHeadModel`, ...)."""

from __future__ import annotations

import os
from typing import Optional

import torch
from torch import nn

from ..config import ArchConfig
from ..weights.component import (
    Component,
    architecture_spec,
    class_component,
    default_format,
    read_component_folder,
    write_component_folder,
)


class PreTrainedModel:
    """Mixed into the architecture classes that transformers users save and load alone.

    `model.save_pretrained(directory)` writes the folder transformers' class of the
    same name writes: config.json and the class's own weights (`model.safetensors`,
    or `pytorch_model.bin` with `safe_serialization=False`), so that
    `model.encoder.save_pretrained(d)` gives a folder that
    `EncoderDecoderModel.from_encoder_decoder_pretrained(d, ...)` and transformers'
    `BertModel.from_pretrained(d)` load. `BertModel.from_pretrained(directory)`
    reads such a folder in any of the four formats (`encdec.weights.component`).
    """

    @classmethod
    def _component(cls) -> Component:
        return class_component([c.__name__ for c in cls.__mro__], "")

    def _has_pooler(self) -> bool:
        return getattr(self, "pooler", None) is not None

    @classmethod
    def from_pretrained(
        cls,
        directory: str | os.PathLike,
        *,
        fmt: Optional[str] = None,
        dtype: Optional[torch.dtype] = None,
        config: Optional[ArchConfig] = None,
        **config_overrides,
    ):
        """Load a folder of this architecture (any of the four formats; `fmt` picks one of several).

        `config` replaces the folder's config.json, `config_overrides` set its keys (e.g.
        `is_decoder=True, add_cross_attention=True`). What the folder lacks (an LM head,
        cross-attention) is drawn with `init_weights` and logged by name. Parameters are
        `dtype` (default: torch's default dtype). Returns the model in eval mode.
        ConfigError for a folder of another model_type or without config.json.
        """
        from .encoder_decoder import _set_parameter, _to_torch

        component = cls._component()
        folder = read_component_folder(directory, component.model_type, component.kind, component.class_name,
                                       fmt=fmt, config=config, **config_overrides)
        with torch.device("meta"):
            # Built without memory; every parameter is assigned from the folder below.
            model = cls(folder.config)
        spec = architecture_spec(folder.config, component.kind, model._has_pooler())
        dtype = dtype or torch.get_default_dtype()
        tied_to: dict[str, list[str]] = {}
        for tied in spec.tied:
            tied_to.setdefault(tied.source, []).append(tied.name)
        for p in spec:
            param = nn.Parameter(_to_torch(folder.state[p.name], dtype))
            for name in (p.name, *tied_to.get(p.name, ())):
                _set_parameter(model, name, param)
        left = [name for name, param in model.named_parameters() if param.is_meta]
        if left:
            raise AssertionError(f"{component.class_name}: parameters {left[:5]} are not in its spec")
        return model.eval()

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        *,
        fmt: Optional[str] = None,
        safe_serialization: bool = True,
        max_shard_size: Optional[int | str] = None,
    ) -> None:
        """Write config.json and the weights of this class alone, as transformers names them
        (`fmt`: "safetensors", "pt", "tf" or "flax"; default safetensors, or `pytorch_model.bin`
        with `safe_serialization=False`), sharded above `max_shard_size`.

        Written to a temporary sibling and renamed into place, so a failure leaves any
        previous folder there whole.
        """
        from .encoder_decoder import _to_numpy

        component = self._component()
        spec = architecture_spec(self.config, component.kind, self._has_pooler())
        params = dict(self.named_parameters(remove_duplicate=False))
        state = {p.name: _to_numpy(params[p.name]) for p in spec}
        write_component_folder(save_directory, state, self.config, component.kind, component.class_name,
                               fmt or default_format("pt", safe_serialization), max_shard_size,
                               pooler=self._has_pooler())
