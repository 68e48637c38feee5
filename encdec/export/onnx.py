"""ONNX export: the PyTorch port's model as the three graphs of a cached seq2seq export.

The layout, input and output names are optimum's for seq2seq models with a decoder cache,
so that `optimum.onnxruntime.ORTModelForSeq2SeqLM.from_pretrained(out)` loads it too:

    encoder_model.onnx             input_ids, attention_mask -> last_hidden_state
    decoder_model.onnx             input_ids, encoder_attention_mask, encoder_hidden_states
                                   -> logits, present.{i}.decoder.key / .value, present.{i}.encoder.key / .value
    decoder_with_past_model.onnx   input_ids (one token per row), encoder_attention_mask,
                                   past_key_values.{i}.decoder.key / .value, past_key_values.{i}.encoder.key / .value
                                   -> logits, present.{i}.decoder.key / .value

`encoder_hidden_states` is the encoder's own output (not projected); the decoder graphs
project it to the decoder's width (`enc_to_dec_proj`). Keys and values are
`[batch, heads, length, head_dim]`. Ids and masks are int64, as optimum feeds them.

The graphs are traced by torch's TorchScript-based exporter (`torch.onnx.export(...,
dynamo=False)`). The dynamo exporter (`torch.export`) refuses the port's host-side input
checks (numpy copies of the ids) and its data-dependent shortcuts (`mask.all()`: no bias
when nothing is masked); tracing runs them on the example inputs, which are chosen so
that the traced path is the general one (a padded encoder mask, several decoder tokens
for the first step), and follows every shape symbolically (dynamic batch, source,
decoder and cache lengths). The port's cache length is an `int`, but while traced the
port keeps it a tensor (`encdec.pt.common._open_cache`), the length of the past keys,
so that the positions and the concatenated cache of `decoder_with_past_model.onnx`
follow the past's length, for every decoder architecture.

The runner (`encdec.onnx`) needs numpy and onnxruntime only.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path
from typing import Any, Mapping

from ..errors import ExportError

# float16 runs on onnxruntime's CPU provider (it casts to float32 around the ops it has
# no float16 kernel for); bfloat16 does not (its CPU provider has no bfloat16 Add, MatMul, ...).
DTYPES = ("float32", "float16")
# generation options are given to the runner when it runs
GENERATION_OPTIONS = ()
ENCODER_FILE = "encoder_model.onnx"
DECODER_FILE = "decoder_model.onnx"
DECODER_WITH_PAST_FILE = "decoder_with_past_model.onnx"
# The exporter's default opset when none is asked for.
DEFAULT_OPSET = 17
# The TorchScript exporter's range of opsets.
MIN_OPSET, MAX_OPSET = 14, 20


def write(model_dir: Path, out: Path, *, dtype: str, opset, generation: Mapping[str, Any]) -> None:
    """Write the three ONNX graphs of the model folder `model_dir` into `out` (an empty folder)."""
    import torch

    from ..pt import EncoderDecoderModel

    if dtype not in DTYPES:
        raise ExportError(f"an onnx export cannot be written in {dtype}; onnxruntime's CPU provider runs "
                          f"{', '.join(DTYPES)}")
    if generation:
        raise ExportError(f"an onnx export takes its generation options when it runs; got {', '.join(generation)}")
    opset = DEFAULT_OPSET if opset is None else opset
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(f"opset is {opset}; expected {MIN_OPSET} to {MAX_OPSET} (the opsets the exporter writes)")
    # float16: the explicit attention product; the exporter's causal scaled_dot_product_attention
    # builds a float32 mask and casts the float16 graph around it into mixed types onnxruntime refuses.
    attention = "eager" if dtype == "float16" else "sdpa"
    model = EncoderDecoderModel.from_pretrained(model_dir, dtype=dtype, attn_implementation=attention)
    model.eval()
    with torch.no_grad(), _fast_linear_off(), warnings.catch_warnings():
        # The tracer warns of every host-side check and shortcut it freezes; the example inputs
        # are chosen so that what it freezes holds for every input (see the module's docstring).
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # The TorchScript-based exporter is chosen on purpose (docs/export.md: the dynamo one refuses
        # the port's host-side checks); its deprecation notice says nothing the user can act on.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export", category=DeprecationWarning)
        _export_all(model, out, opset)


@contextlib.contextmanager
def _fast_linear_off():
    """The plain `F.linear` while tracing: the oneDNN fast path calls no op the exporter knows."""
    from ..pt import fast_linear

    was = fast_linear.enabled()
    fast_linear.set_enabled(False)
    try:
        yield
    finally:
        fast_linear.set_enabled(was)


def _wrappers(model):
    """The three graphs as `nn.Module`s over the port's model (tensors in, tuples of tensors out)."""
    import torch
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            return self.model.encode(input_ids, attention_mask).last_hidden_state  # checks run on the example only

    class Decoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, encoder_attention_mask, encoder_hidden_states):
            # The decoder graph takes the encoder's own states, as optimum's does; `enc_to_dec_proj` (None when
            # the widths match) is the model's public layer that brings them to the decoder's width.
            proj = self.model.enc_to_dec_proj
            states = encoder_hidden_states if proj is None else proj(encoder_hidden_states)  # [B, S, H_dec]
            out = self.model.decoder(input_ids, encoder_hidden_states=states,
                                     encoder_attention_mask=encoder_attention_mask, use_cache=True)
            flat = []
            for layer in out.past_key_values["layers"]:
                flat += [layer["key"], layer["value"], layer["cross_key"], layer["cross_value"]]
            return (out.logits, *flat)

    class DecoderWithPast(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, encoder_attention_mask, *past):
            layers = []
            for i in range(0, len(past), 4):
                layers.append({"key": past[i], "value": past[i + 1], "cross_key": past[i + 2],
                               "cross_value": past[i + 3]})
            # The cache length as a traced scalar: `[B, H, P, D]` -> P.
            index = torch._shape_as_tensor(past[0])[2]
            cache = {"index": index, "encoder_attention_mask": encoder_attention_mask, "layers": tuple(layers)}
            out = self.model.decoder(input_ids, encoder_attention_mask=encoder_attention_mask,
                                     past_key_values=cache, use_cache=True)
            flat = []
            for layer in out.past_key_values["layers"]:
                flat += [layer["key"], layer["value"]]
            return (out.logits, *flat)

    return Encoder(), Decoder(), DecoderWithPast()


def _past_names(num_layers: int, prefix: str, with_encoder: bool = True) -> list[str]:
    names = []
    for i in range(num_layers):
        names += [f"{prefix}.{i}.decoder.key", f"{prefix}.{i}.decoder.value"]
        if with_encoder:
            names += [f"{prefix}.{i}.encoder.key", f"{prefix}.{i}.encoder.value"]
    return names


def _export_all(model, out: Path, opset: int) -> None:
    import torch

    config = model.config
    decoder = config.decoder
    layers = decoder.num_hidden_layers
    heads, head_dim = decoder.num_attention_heads, decoder.head_dim
    encoder_wrapper, decoder_wrapper, with_past_wrapper = _wrappers(model)
    dtype = next(model.parameters()).dtype

    # Example inputs: batch 2, source 5 with a padded row (the traced path applies the mask),
    # decoder prompt 3 (the traced first step is causal), cache 3.
    batch, source, prompt, past = 2, 5, 3, 3
    input_ids = torch.full((batch, source), 1, dtype=torch.long)
    attention_mask = torch.ones((batch, source), dtype=torch.long)
    attention_mask[1, -2:] = 0
    decoder_ids = torch.full((batch, prompt), 1, dtype=torch.long)
    states = torch.zeros((batch, source, config.encoder.hidden_size), dtype=dtype)
    kv = torch.zeros((batch, heads, past, head_dim), dtype=dtype)
    cross = torch.zeros((batch, heads, source, head_dim), dtype=dtype)
    past_inputs = []
    for _ in range(layers):
        past_inputs += [kv, kv, cross, cross]
    step_ids = torch.full((batch, 1), 1, dtype=torch.long)

    b, s, t, p = "batch_size", "encoder_sequence_length", "decoder_sequence_length", "past_decoder_sequence_length"
    encoder_axes = {"input_ids": {0: b, 1: s}, "attention_mask": {0: b, 1: s}, "last_hidden_state": {0: b, 1: s}}
    present = _past_names(layers, "present")
    decoder_axes = {"input_ids": {0: b, 1: t}, "encoder_attention_mask": {0: b, 1: s},
                    "encoder_hidden_states": {0: b, 1: s}, "logits": {0: b, 1: t}}
    for name in present:
        decoder_axes[name] = {0: b, 2: t if ".decoder." in name else "encoder_sequence_length_out"}
    past_names = _past_names(layers, "past_key_values")
    with_past_axes = {"input_ids": {0: b}, "encoder_attention_mask": {0: b, 1: s}, "logits": {0: b}}
    for name in past_names:
        with_past_axes[name] = {0: b, 2: p if ".decoder." in name else s}
    for name in _past_names(layers, "present", with_encoder=False):
        with_past_axes[name] = {0: b, 2: f"{p} + 1"}

    common = dict(opset_version=opset, dynamo=False, do_constant_folding=True)
    torch.onnx.export(encoder_wrapper, (input_ids, attention_mask), os.fspath(out / ENCODER_FILE),
                      input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
                      dynamic_axes=encoder_axes, **common)
    torch.onnx.export(decoder_wrapper, (decoder_ids, attention_mask, states), os.fspath(out / DECODER_FILE),
                      input_names=["input_ids", "encoder_attention_mask", "encoder_hidden_states"],
                      output_names=["logits", *present], dynamic_axes=decoder_axes, **common)
    torch.onnx.export(with_past_wrapper, (step_ids, attention_mask, *past_inputs),
                      os.fspath(out / DECODER_WITH_PAST_FILE),
                      input_names=["input_ids", "encoder_attention_mask", *past_names],
                      output_names=["logits", *_past_names(layers, "present", with_encoder=False)],
                      dynamic_axes=with_past_axes, **common)


def load(path: str | os.PathLike):
    """The runner of a finished onnx export (`encdec.onnx.Runner`: numpy and onnxruntime only)."""
    from ..onnx import load as load_runner

    return load_runner(path)
