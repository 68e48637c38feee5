"""TF SavedModel export: the TensorFlow port's model as a SavedModel that TF Serving (or
`tf.saved_model.load`, without encdec) runs.

Its signatures (int32 inputs, any batch and length):

    forward(input_ids, attention_mask, decoder_input_ids) -> {logits, encoder_last_hidden_state}
    forward_with_decoder_mask(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask)
        -> the same
    generate, serving_default(input_ids, attention_mask) -> {sequences, length[, sequences_scores]}

The module tracks the model's TensorFlow variables itself, so that TensorFlow 1's session
loader (TF Serving, `saved_model_cli run`) restores them as `tf.saved_model.load` does.

`generate` is `TFEncoderDecoderModel.serving_generate_function`: XLA-compiled, with the
generation options fixed at export time (`GENERATION_OPTIONS`, the rest from the model's
generation config). `sequences` is `[batch * num_return_sequences, max_length]`, filled past
each row's end; its first `length` columns are what `generate` returns.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import EncdecError, ExportError

# The TF port computes in float32 only.
DTYPES = ("float32",)
GENERATION_OPTIONS = ("num_beams", "max_new_tokens", "max_length", "min_length", "length_penalty", "early_stopping",
                      "num_return_sequences", "do_sample")
# signature name -> its inputs, in the order of `Runner.forward`'s arguments
FORWARD_SIGNATURES = {
    "forward": ("input_ids", "attention_mask", "decoder_input_ids"),
    "forward_with_decoder_mask": ("input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask"),
}


def write(model_dir: Path, out: Path, *, dtype: str, opset, generation: Mapping[str, Any]) -> None:
    """Write the SavedModel of the model folder `model_dir` into `out` (an empty folder)."""
    import tensorflow as tf

    from ..tf import TFEncoderDecoderModel

    if dtype not in DTYPES:
        raise ExportError(f"a savedmodel export cannot be written in {dtype}; the TensorFlow port computes in float32")
    model = TFEncoderDecoderModel.from_pretrained(model_dir)
    if generation.get("do_sample", model.generation_config.do_sample):
        # The seed would be fixed in the graph: every call would draw the same tokens.
        raise ExportError("do_sample=True (given, or in the model's generation_config.json): a savedmodel export "
                          "fixes its generation, so it cannot sample; expected do_sample False (generation="
                          "{'do_sample': False}, --num-beams for beam search)")
    module = tf.Module()
    # The TensorFlow variables under Keras', tracked by the module itself: the session loader that TF
    # Serving and `saved_model_cli run` use restores only these (tracking the Keras model instead leaves
    # its variables uninitialised there; `tf.saved_model.load` would restore either).
    module.model_variables = [variable.value for variable in model.variables]
    module.generate = model.serving_generate_function(**generation)
    for name, inputs in FORWARD_SIGNATURES.items():
        setattr(module, name, _forward_function(model, inputs))
    signatures = {"serving_default": module.generate, "generate": module.generate}
    signatures.update({name: getattr(module, name) for name in FORWARD_SIGNATURES})
    tf.saved_model.save(module, os.fspath(out), signatures=signatures)


def _forward_function(model, inputs: tuple):
    """A `tf.function` of `inputs` (int32 `[batch, length]` each) -> logits and the encoder's states."""
    import tensorflow as tf

    spec = [tf.TensorSpec([None, None], tf.int32, name=name) for name in inputs]

    @tf.function(input_signature=spec, autograph=False)
    def forward(*tensors):
        out = model(**dict(zip(inputs, tensors)), training=False)
        return {"logits": out.logits, "encoder_last_hidden_state": out.encoder_last_hidden_state}

    return forward


class Runner:
    """A finished savedmodel export, run through `tf.saved_model.load` (no encdec model is built)."""

    def __init__(self, path: str | os.PathLike) -> None:
        import tensorflow as tf

        from . import read_manifest
        from ..config import EncoderDecoderConfig, GenerationConfig

        self.path = Path(path)
        manifest = read_manifest(self.path)
        if manifest["kind"] != "savedmodel":
            raise ExportError(f"{self.path}: a {manifest['kind']} export; expected a savedmodel export")
        self.generation = dict(manifest.get("generation") or {})
        self.config = EncoderDecoderConfig.from_pretrained(self.path)
        self.generation_config = GenerationConfig.from_pretrained(self.path)
        self.saved = tf.saved_model.load(os.fspath(self.path))

    def forward(self, input_ids, attention_mask, decoder_input_ids, decoder_attention_mask=None) -> np.ndarray:
        """Logits `[B, T, V]` float32."""
        import tensorflow as tf

        if attention_mask is None:
            attention_mask = np.ones(np.shape(input_ids), np.int32)  # every position attended
        given = (input_ids, attention_mask, decoder_input_ids, decoder_attention_mask)
        name = "forward" if decoder_attention_mask is None else "forward_with_decoder_mask"
        tensors = {k: tf.constant(np.asarray(v), tf.int32) for k, v in zip(FORWARD_SIGNATURES[name], given)}
        return self.saved.signatures[name](**tensors)["logits"].numpy().astype(np.float32)

    def generate(self, input_ids, attention_mask=None, **options) -> np.ndarray:
        """Ids `[B * num_return_sequences, length]` of the generation fixed at export. `options` may
        only repeat it: an option that would change the generation is an ExportError."""
        import tensorflow as tf

        self._check_options(options)
        ids = np.asarray(input_ids)
        mask = np.ones_like(ids) if attention_mask is None else np.asarray(attention_mask)
        out = self.saved.signatures["generate"](input_ids=tf.constant(ids, tf.int32),
                                                attention_mask=tf.constant(mask, tf.int32))
        return out["sequences"].numpy()[:, : int(out["length"])]

    def _check_options(self, options: Mapping[str, Any]) -> None:
        from ..generation import plan_generation

        unknown = sorted(set(options) - set(GENERATION_OPTIONS))
        if unknown:
            raise ExportError(f"{self.path}: generate options {', '.join(unknown)} cannot be given to a savedmodel "
                              f"export; its generation was fixed at export ({self._fixed()})")
        if not options:
            return

        def setup(call: Mapping[str, Any]):
            return plan_generation(self.config, None, self.generation_config, {**self.generation, **call}, None, 1,
                                   port_options=())

        fixed = setup({})
        try:
            asked = setup(options)
        except EncdecError as error:  # a value generate itself refuses (num_beams=0, ...)
            raise ExportError(f"{self.path}: {error}") from None
        same = (asked.plan == fixed.plan
                and np.array_equal(asked.length_penalty_table, fixed.length_penalty_table)
                and asked.early_stopping_true == fixed.early_stopping_true
                and asked.heuristic_at_max_length == fixed.heuristic_at_max_length)
        if not same:
            given = ", ".join(f"{k}={v!r}" for k, v in sorted(options.items()))
            raise ExportError(f"{self.path}: generate was fixed at export ({self._fixed()}); got {given}, which "
                              "changes it; expected no options or the same values (export again to change them)")

    def _fixed(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in sorted(self.generation.items())) or "the model's generation config"


def load(path: str | os.PathLike) -> Runner:
    """The runner of the savedmodel export at `path`."""
    return Runner(path)

