"""Checks of a model's inputs on the host, before any work, and `shift_tokens_right`; numpy only.

Every port calls these instead of its own copy, so the same bad input gets the same
InputError (or ConfigError) with the same message in PyTorch, TensorFlow and Flax.

Arguments are host facts: a numpy array (or anything `np.asarray` reads: a list, a
CPU tensor), whose values are checked; an `IdRange(shape, dtype, low, high)` for
ids summarised on their device; or a `Traced(shape, dtype)` for a value inside a
compiled function, whose shape and dtype alone are checked (a dimension of None is
unknown and not checked). `None` means the input is not given.

The rules, in the order they are checked for each id input:

* ids have 2 dimensions and an integer dtype (signed or unsigned, uint8 included);
* at least one row and one token;
* every id in `[0, table size)`: the vocabulary for token ids, `type_vocab_size`
  (GPT-2: its word table) for token types, `max_position_embeddings` for explicit
  position ids;
* without explicit position ids, cached plus new tokens fit the position table
  (`ArchConfig.max_positions`);
* masks, token types and position ids have the ids' shape (position ids may be
  `[1, T]`); every input of one call has the same batch size.
"""

from __future__ import annotations

import inspect
from typing import Any, NamedTuple, Optional, Sequence

import numpy as np

from .config import ArchConfig, EncoderDecoderConfig
from .errors import ConfigError, InputError

IGNORE_INDEX = -100  # a label that does not count in the loss, as transformers


class Traced(NamedTuple):
    """An input known only by its shape and dtype (a value inside a compiled function).

    `shape` may hold None for an unknown dimension; `dtype` is anything `np.dtype`
    reads ("int32", np.int64, a JAX tracer's dtype, TF's `dtype.as_numpy_dtype`).
    """

    shape: tuple
    dtype: Any


class IdRange(NamedTuple):
    """Ids summarised where they live: shape, dtype and the smallest and largest id.

    For a port whose ids sit on an accelerator: two scalars come to the host
    instead of the whole tensor. Labels need their values (-100 among ids), so
    `check_labels` takes an array or a Traced.
    """

    shape: tuple
    dtype: Any
    low: int
    high: int


_FACTS = (Traced, IdRange)


def _shape(value) -> tuple:
    if isinstance(value, _FACTS):
        return tuple(value.shape)
    shape = getattr(value, "shape", None)
    return tuple(shape) if shape is not None else np.shape(value)


def _values(value) -> Optional[np.ndarray]:
    """The values of a host input, or None for a traced one."""
    if isinstance(value, _FACTS):
        return None
    return np.asarray(value)


def _dtype(value) -> np.dtype:
    if isinstance(value, _FACTS):
        return np.dtype(value.dtype)
    dtype = getattr(value, "dtype", None)
    if isinstance(dtype, np.dtype):
        return dtype
    return np.asarray(value).dtype


def _known(dim) -> bool:
    return dim is not None


def _same_shape(actual: tuple, expected: tuple) -> bool:
    return len(actual) == len(expected) and all(
        a is None or e is None or a == e for a, e in zip(actual, expected)
    )


def has_token_types(config: ArchConfig) -> bool:
    """Whether an architecture embeds token types (bert-generation and BART have no table for them)."""
    return config.model_type not in ("bert-generation", "bart")


def token_type_table(config: ArchConfig) -> int:
    """How many token type ids an architecture embeds: `type_vocab_size`; GPT-2 embeds them with its word table."""
    if not has_token_types(config):
        raise InputError(f"{config.model_type} has no token types; expected token_type_ids=None")
    if config.architecture == "gpt2":
        return config.vocab_size
    return config.type_vocab_size


def check_ids(ids, vocab_size: int, name: str = "input_ids", *, max_positions: Optional[int] = None,
              past_length: int = 0, table: str = "the model's") -> None:
    """Raise InputError unless `ids` is `[batch >= 1, length >= 1]` integer ids in `[0, vocab_size)`
    and, with `max_positions`, `past_length + length <= max_positions`.

    `table` names whose position table it is in the message ("the encoder's").
    Returns None; `ids` None is accepted (not given).
    """
    if ids is None:
        return
    shape = _shape(ids)
    if len(shape) != 2:
        raise InputError(f"{name} has shape {shape}; expected [batch, sequence] (2 dimensions)")
    dtype = _dtype(ids)
    if dtype.kind not in "iu":
        raise InputError(f"{name} has dtype {dtype}; expected integer ids")
    batch, length = shape
    if _known(batch) and batch == 0:
        raise InputError(f"{name} has shape {shape}, a batch of 0 rows; expected at least one row")
    if _known(length) and length == 0:
        raise InputError(f"{name} has shape {shape}, sequences of length 0; expected at least one token")
    if max_positions is not None and _known(length) and past_length + length > max_positions:
        after = f" after {past_length} cached tokens" if past_length else ""
        raise InputError(
            f"{name} has length {length}{after}; {table} position table covers {max_positions} tokens, "
            f"expected at most {max_positions}" + (" in all" if past_length else "")
        )
    if isinstance(ids, IdRange):
        low, high = int(ids.low), int(ids.high)
    else:
        values = _values(ids)
        if values is None:
            return
        low, high = int(values.min()), int(values.max())
    if low < 0 or high >= vocab_size:
        bad = low if low < 0 else high
        raise InputError(
            f"{name} holds id {bad}; expected ids in [0, {vocab_size}) (the table has {vocab_size} rows)"
        )


def check_mask(mask, expected_shape: Sequence, name: str = "attention_mask", like: str = "like input_ids") -> None:
    """Raise InputError unless `mask` (None accepted) has `expected_shape`; `like` says where the shape comes from."""
    if mask is None:
        return
    shape = _shape(mask)
    expected = tuple(expected_shape)
    if not _same_shape(shape, expected):
        raise InputError(f"{name} has shape {shape}; expected {expected} {like}")


def check_batch(array, batch: Optional[int], name: str, like: str = "input_ids") -> None:
    """Raise InputError unless `array` (None accepted) has `batch` rows (a batch of None is not checked)."""
    if array is None or batch is None:
        return
    rows = _shape(array)[0] if _shape(array) else None
    if rows is not None and rows != batch:
        raise InputError(f"{name} has batch size {rows}; expected {batch} like {like}")


def check_stack_inputs(config: ArchConfig, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                       *, past_length: int = 0, mask_length: Optional[int] = None, prefix: str = "",
                       role: str = "the model's") -> int:
    """The inputs of one stack (an encoder, a decoder, a standalone BERT/GPT-2), before it runs.

    `past_length` tokens are cached; `mask_length` is the attention mask's second
    dimension (default `past_length + length`: cached + new tokens). Inputs are named
    with `prefix` ("decoder_" -> decoder_input_ids, decoder_attention_mask, ...).
    Returns the batch size (None when traced and unknown). Raises InputError.
    """
    ids_name = f"{prefix}input_ids"
    limit = config.max_positions if position_ids is None else None
    check_ids(input_ids, config.vocab_size, ids_name, max_positions=limit, past_length=past_length, table=role)
    batch, length = _shape(input_ids)
    if position_ids is not None:
        shape = _shape(position_ids)
        if not (_same_shape(shape, (batch, length)) or _same_shape(shape, (1, length))):
            raise InputError(
                f"{prefix}position_ids has shape {shape}; expected {(batch, length)} like {ids_name}"
            )
        check_ids(position_ids, config.max_position_embeddings, f"{prefix}position_ids")
    if token_type_ids is not None:
        table = token_type_table(config)
        check_mask(token_type_ids, (batch, length), f"{prefix}token_type_ids", f"like {ids_name}")
        check_ids(token_type_ids, table, f"{prefix}token_type_ids")
    if attention_mask is not None:
        if mask_length is None:
            mask_length = None if length is None else past_length + length
        like = f"like {ids_name}" if not past_length and mask_length == length else "(batch, cached + new tokens)"
        check_mask(attention_mask, (batch, mask_length), f"{prefix}attention_mask", like)
    return batch


def check_cross_attention(attends: bool, has_cross_attention: bool) -> bool:
    """`attends` (whether a layer attends the encoder in this call: the ports decide it from the states
    and the cache), after a ConfigError when the layer has no cross-attention to do it with."""
    if attends and not has_cross_attention:
        raise ConfigError("encoder_hidden_states were given to a layer without cross-attention; expected a "
                          "decoder config with add_cross_attention=True")
    return attends


def check_encoder_inputs(config: EncoderDecoderConfig, input_ids, attention_mask=None, token_type_ids=None,
                         position_ids=None) -> int:
    """The encoder's inputs (`encode`, `generate`, the forward): ids, lengths, shapes.

    Returns the batch size. Raises InputError.
    """
    return check_stack_inputs(config.encoder, input_ids, attention_mask, token_type_ids, position_ids,
                              role="the encoder's")


def check_encoder_outputs(config: EncoderDecoderConfig, hidden_states, attention_mask=None) -> int:
    """Given encoder states `[B, S, H_enc]` (instead of input_ids) and their mask `[B, S]`.

    Returns the batch size. Raises InputError.
    """
    shape = _shape(hidden_states)
    width = config.encoder.hidden_size
    if len(shape) != 3 or shape[-1] not in (width, None):
        raise InputError(f"encoder_outputs[0] has shape {shape}; expected [batch, length, {width}]")
    check_mask(attention_mask, shape[:2], "attention_mask", "like encoder_outputs")
    return shape[0]


def check_decoder_inputs(config: EncoderDecoderConfig, decoder_input_ids, batch: Optional[int] = None,
                         decoder_attention_mask=None, decoder_position_ids=None, *, past_length: int = 0,
                         cache_length: Optional[int] = None, mask_length: Optional[int] = None) -> None:
    """The decoder's inputs after `past_length` cached tokens, and their batch against the encoder's.

    With `cache_length` (a preallocated cache of that many positions) the new tokens
    must fit in it. `mask_length` is the mask's second dimension (default
    `past_length + length`; a port whose decoder mask spans the whole cache passes
    `cache_length`). Raises InputError.
    """
    if decoder_input_ids is None:
        return
    check_stack_inputs(config.decoder, decoder_input_ids, decoder_attention_mask, None, decoder_position_ids,
                       past_length=past_length, mask_length=mask_length, prefix="decoder_",
                       role="the decoder's")
    check_batch(decoder_input_ids, batch, "decoder_input_ids", "the encoder input")
    length = _shape(decoder_input_ids)[1]
    if cache_length is not None and length is not None and past_length + length > cache_length:
        raise InputError(
            f"decoder_input_ids adds {length} tokens to a cache holding {past_length} of {cache_length}; "
            f"expected at most {cache_length - past_length} (make the cache longer with init_cache)"
        )


def check_labels(config: EncoderDecoderConfig, labels, batch: Optional[int] = None, decoder_input_ids=None) -> None:
    """Labels `[B, T]`: integer ids in `[0, decoder vocab)` or -100 (ignored), the batch of the encoder
    input, the shape of `decoder_input_ids` when both are given. Raises InputError."""
    if labels is None:
        return
    if isinstance(labels, IdRange):
        raise TypeError("labels need their values (-100 may sit among the ids); expected an array or a Traced")
    shape = _shape(labels)
    if len(shape) != 2 or (batch is not None and shape[0] not in (batch, None)):
        expected = f"[{batch}, target length]" if batch is not None else "[batch, target length]"
        raise InputError(f"labels has shape {shape}; expected {expected}")
    dtype = _dtype(labels)
    if dtype.kind not in "iu":
        raise InputError(f"labels has dtype {dtype}; expected integer ids (or -100 for an ignored position)")
    if shape[0] == 0 or shape[1] == 0:
        raise InputError(f"labels has shape {shape}; expected at least one row and one token")
    if decoder_input_ids is not None and not _same_shape(shape, _shape(decoder_input_ids)):
        raise InputError(f"labels has shape {shape}; expected {_shape(decoder_input_ids)} like decoder_input_ids")
    values = _values(labels)
    if values is None:
        return
    vocab = config.decoder.vocab_size
    bad = values[(values != IGNORE_INDEX) & ((values < 0) | (values >= vocab))]
    if bad.size:
        raise InputError(f"labels holds {int(bad[0])}; expected ids in [0, {vocab}) or -100 (ignored)")


def check_model_inputs(config: EncoderDecoderConfig, input_ids=None, attention_mask=None, decoder_input_ids=None,
                       decoder_attention_mask=None, encoder_hidden_states=None, labels=None, token_type_ids=None,
                       position_ids=None, decoder_position_ids=None, *, past_length: int = 0,
                       cache_length: Optional[int] = None, decoder_mask_length: Optional[int] = None) -> int:
    """Every input of the forward pass, before any work (what `_check_inputs` did in each port).

    The encoder side is `input_ids` (with its mask, token types, positions) or
    `encoder_hidden_states` `[B, S, H_enc]`; the decoder side `decoder_input_ids` or
    `labels` (shifted into decoder inputs). Returns the batch size. Raises InputError.
    """
    if input_ids is None and encoder_hidden_states is None:
        raise InputError("no encoder input; expected input_ids or encoder_outputs")
    if input_ids is not None:
        batch = check_encoder_inputs(config, input_ids, attention_mask, token_type_ids, position_ids)
    else:
        batch = check_encoder_outputs(config, encoder_hidden_states, attention_mask)
    if decoder_input_ids is None and labels is None:
        raise InputError("no decoder input; expected decoder_input_ids or labels")
    check_labels(config, labels, batch, decoder_input_ids)
    if decoder_input_ids is None:
        # The decoder input will be the shifted labels: same shape, ids already checked.
        decoder_input_ids = Traced(_shape(labels), np.int64)
        limit = config.decoder.max_positions if decoder_position_ids is None else None
        check_ids(decoder_input_ids, config.decoder.vocab_size, "labels", max_positions=limit,
                  past_length=past_length, table="the decoder's")
    check_decoder_inputs(config, decoder_input_ids, batch, decoder_attention_mask, decoder_position_ids,
                         past_length=past_length, cache_length=cache_length, mask_length=decoder_mask_length)
    return batch


def check_shift_config(pad_token_id: Optional[int], decoder_start_token_id: Optional[int]) -> tuple[int, int]:
    """(pad_token_id, decoder_start_token_id) as ints, or ConfigError naming the one not set."""
    if decoder_start_token_id is None:
        raise ConfigError(
            "decoder_start_token_id is not set; expected config.decoder_start_token_id, the id the decoder "
            "starts from (e.g. the [CLS] id for BERT), to build decoder inputs from labels"
        )
    if pad_token_id is None:
        raise ConfigError(
            "pad_token_id is not set; expected config.pad_token_id, which replaces -100 in the shifted labels"
        )
    return int(pad_token_id), int(decoder_start_token_id)


def shift_tokens_right(labels, pad_token_id: Optional[int], decoder_start_token_id: Optional[int]) -> np.ndarray:
    """Labels `[B, T]` -> decoder inputs `[B, T]` (the labels' dtype): the start token, then the
    labels but the last, with -100 replaced by `pad_token_id`. ConfigError when either id is unset."""
    pad, start = check_shift_config(pad_token_id, decoder_start_token_id)
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise InputError(f"labels has shape {labels.shape}; expected [batch, target length]")
    shifted = np.empty_like(labels)
    shifted[:, 0] = start
    shifted[:, 1:] = labels[:, :-1]
    shifted[shifted == IGNORE_INDEX] = pad
    return shifted


# ---------------------------------------------------------------------------
# transformers' forward conventions: the halves' output flags, and extra keyword arguments


def output_flags(config: ArchConfig, output_attentions: Optional[bool],
                 output_hidden_states: Optional[bool]) -> tuple[bool, bool]:
    """The call's flags, or where it gives None the half's config's (as transformers' halves read them)."""
    return (bool(getattr(config, "output_attentions", False)) if output_attentions is None else output_attentions,
            bool(getattr(config, "output_hidden_states", False)) if output_hidden_states is None
            else output_hidden_states)


def route_kwargs(kwargs: dict[str, Any], takes: dict[str, set[str]],
                 owners: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(encoder kwargs, decoder kwargs), split as transformers' EncoderDecoderModel splits them:
    `decoder_`-prefixed ones go to the decoder without the prefix, the others to the encoder.
    `takes[role]` is what that half accepts, `owners[role]` its class name (for the message).
    InputError names each kwarg a half does not take. `num_items_in_batch` (transformers' Trainer
    passes it) is dropped: the loss is the mean over the tokens of the batch."""
    routed: dict[str, dict[str, Any]] = {"encoder": {}, "decoder": {}}
    for key, value in kwargs.items():
        if key != "num_items_in_batch":
            role = "decoder" if key.startswith("decoder_") else "encoder"
            routed[role][key[len("decoder_"):] if role == "decoder" else key] = value
    for role, given in routed.items():
        prefix = "decoder_" if role == "decoder" else ""
        unknown = set(given) - takes[role]
        if unknown:
            raise InputError(f"unknown keyword argument(s) {sorted(prefix + k for k in unknown)} for the {role} "
                             f"({owners[role]}); expected none or some of {sorted(prefix + k for k in takes[role])}")
    return routed["encoder"], routed["decoder"]


# What a port's forward passes each half itself, so no routed kwarg may name it.
SET_BY_MODEL = frozenset({"input_ids", "attention_mask", "output_attentions", "output_hidden_states", "return_dict",
                          "encoder_hidden_states", "encoder_attention_mask", "past_key_values", "use_cache"})


def route_half_kwargs(kwargs: dict[str, Any], halves: dict[str, Any], forward: str,
                      set_by_model: frozenset = SET_BY_MODEL) -> tuple[dict[str, Any], dict[str, Any]]:
    """(encoder kwargs, decoder kwargs): `route_kwargs` over what each half's forward takes.

    `halves` maps "encoder" / "decoder" to that half; `forward` names its forward method
    (PyTorch's "forward", Keras' "call"), whose parameters, less `set_by_model` and, for
    the encoder, the model's own `token_type_ids` / `position_ids`, are what the half takes.
    """
    if not kwargs:  # the usual call: nothing to route, so no signature is read on every forward
        return {}, {}
    takes = {role: set(inspect.signature(getattr(half, forward)).parameters) - set_by_model
             for role, half in halves.items()}
    takes["encoder"] -= {"token_type_ids", "position_ids"}  # the model's own arguments
    return route_kwargs(kwargs, takes, {role: type(half).__name__ for role, half in halves.items()})
