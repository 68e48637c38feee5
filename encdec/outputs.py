"""The output containers of the model and of `generate`, their fields and their access, written once.

They are transformers' ModelOutput classes with transformers' field names and order. A field
that is not set (None) is no key, as in transformers' ModelOutput (an OrderedDict): `keys()`,
`values()`, `items()`, `to_tuple()`, iteration and `out[0]` go over the set fields in field
order; `out["logits"]` reads a set field by name and raises KeyError for any other.

TF and Flax use these classes (Flax registers them as JAX pytrees whose leaves are the
fields, so they pass through `jax.jit`); the PyTorch port keeps transformers' PyTorch
ModelOutput, an OrderedDict, with the field names of these classes (`field_names`).
Framework-neutral: this module imports no framework.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional


def field_names(cls) -> tuple[str, ...]:
    """The fields of an output class (or object), in order."""
    return tuple(f.name for f in dataclasses.fields(cls))


class ModelOutput:
    """transformers' ModelOutput access on a dataclass: by attribute, by name (`out["logits"]`) and by
    position (`out[0]`) over the fields that are set, in field order."""

    def keys(self) -> list[str]:
        return [name for name in field_names(self) if getattr(self, name) is not None]

    def values(self) -> list:
        return [getattr(self, name) for name in self.keys()]

    def items(self) -> list[tuple[str, Any]]:
        return [(name, getattr(self, name)) for name in self.keys()]

    def to_tuple(self) -> tuple:
        return tuple(self.values())

    def replace(self, **changes):
        """A copy with the given fields changed (the Flax port's outputs had flax.struct's `replace`)."""
        return dataclasses.replace(self, **changes)

    def __getitem__(self, key):
        if isinstance(key, str):
            if key not in self.keys():
                raise KeyError(f"{key!r}: not set in this {type(self).__name__}; set fields are {self.keys()}")
            return getattr(self, key)
        return self.to_tuple()[key]

    def __contains__(self, key) -> bool:
        return key in self.keys()

    def __iter__(self):
        # Iterating a dict gives its keys; without this Python would iterate by position over the values.
        return iter(self.keys())


@dataclasses.dataclass
class BaseModelOutput(ModelOutput):
    """An encoder's (or a decoder body's) outputs; decoders fill the cache and cross-attention fields."""

    last_hidden_state: Any = None
    pooler_output: Optional[Any] = None
    past_key_values: Optional[Any] = None
    hidden_states: Optional[tuple] = None
    attentions: Optional[tuple] = None
    cross_attentions: Optional[tuple] = None


@dataclasses.dataclass
class CausalLMOutput(ModelOutput):
    """A decoder's outputs, with its LM head's logits; `past_key_values` is the cache after this call."""

    loss: Optional[Any] = None
    logits: Any = None
    past_key_values: Optional[Any] = None
    hidden_states: Optional[tuple] = None
    attentions: Optional[tuple] = None
    cross_attentions: Optional[tuple] = None


@dataclasses.dataclass
class Seq2SeqLMOutput(ModelOutput):
    """The encoder-decoder's outputs, with transformers' field names."""

    loss: Optional[Any] = None
    logits: Any = None
    past_key_values: Optional[Any] = None
    decoder_hidden_states: Optional[tuple] = None
    decoder_attentions: Optional[tuple] = None
    cross_attentions: Optional[tuple] = None
    encoder_last_hidden_state: Any = None
    encoder_hidden_states: Optional[tuple] = None
    encoder_attentions: Optional[tuple] = None

    @property
    def cache(self):
        """transformers 5 names `past_key_values` `cache`."""
        return self.past_key_values


# What `generate` returns with `return_dict_in_generate=True`.


@dataclasses.dataclass
class GenerateEncoderDecoderOutput(ModelOutput):
    """Greedy / sampling output (`return_dict_in_generate=True`); `scores` are the processed scores per step."""

    sequences: Any = None
    scores: Optional[tuple] = None
    past_key_values: Optional[Any] = None


@dataclasses.dataclass
class GenerateBeamEncoderDecoderOutput(ModelOutput):
    """Beam search output; `scores` are the processed log-probabilities per step."""

    sequences: Any = None
    sequences_scores: Any = None
    scores: Optional[tuple] = None
    beam_indices: Any = None
    past_key_values: Optional[Any] = None


# transformers 4.x's Flax outputs of `generate` (what it returns without `return_dict_in_generate`).


@dataclasses.dataclass
class GreedySearchOutput(ModelOutput):
    """Greedy search ids: `sequences` `[B, length]`."""

    sequences: Any = None


@dataclasses.dataclass
class SampleOutput(ModelOutput):
    """Sampled ids: `sequences` `[B * num_return_sequences, length]`."""

    sequences: Any = None


@dataclasses.dataclass
class BeamSearchOutput(ModelOutput):
    """Beam search ids `sequences` `[B * num_return_sequences, length]`, best first, and `scores`
    `[B * num_return_sequences]`: each one's log-probability divided by length ** length_penalty."""

    sequences: Any = None
    scores: Any = None
