"""Runners for the exports: the suite checks an export as it checks a port.

Each runner writes the case's checkpoint with `encdec.export` (ONNX from the PyTorch
port, a SavedModel from the TensorFlow port, a JAX export from the Flax port) and
runs the export with its own runtime (`encdec.export.load`): onnxruntime,
`tf.saved_model.load`, `jax.export.deserialize`. An export computes logits and ids,
not gradients, so the suite compares its logits (tolerance table) and its generated
ids (identical) with every other run's. The SavedModel and JAX exports fix generate's
options when they are written, so those runners write one export per generation
setting; an option an export cannot fix, or a forward input its graph does not take,
is a skip with the reason (`NotRunnable`), not a failure.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import tempfile
from typing import Any, ClassVar, Mapping

import numpy as np

from encdec.config import EncoderDecoderConfig, GenerationConfig
from encdec.inputs import shift_tokens_right

from .runners import FlaxRunner, NotRunnable, PTRunner, Runner, TFRunner

# Generate options the suite passes that an export fixes from the model's own configs when they
# agree with them (so they need not be fixed again).
CONFIG_OPTIONS = ("decoder_start_token_id", "pad_token_id", "eos_token_id")


class _ExportRunner(Runner):
    kind: ClassVar[str]  # encdec.export's `to`
    writer: ClassVar[type[Runner]]  # the port whose model class writes the export
    native_format = "safetensors"
    items = ("forward", "generate")
    forward_outputs = ("logits",)

    @classmethod
    def model_class(cls):
        return cls.writer.model_class()

    @classmethod
    def supports_dtype(cls, device: str, dtype: str) -> str | None:
        if device != "cpu":
            return f"{cls.label} is checked on CPU (its runtime's CPU build)"
        from encdec.export import kind_module

        dtypes = kind_module(cls.kind).DTYPES
        return None if dtype in dtypes else f"{cls.label} is written in {', '.join(dtypes)}"

    @classmethod
    def framework_dtype(cls, dtype: str) -> Any:
        return dtype

    @classmethod
    def _bf16_probe(cls, device: str) -> None:
        return None

    def load(self, model_dir: str) -> None:
        from encdec.export import kind_module

        self.config = EncoderDecoderConfig.from_pretrained(model_dir)
        self.generation_config = GenerationConfig.from_pretrained(model_dir) \
            if os.path.exists(os.path.join(model_dir, "generation_config.json")) \
            else GenerationConfig.from_model_config(self.config)
        self.source = model_dir
        self.module = kind_module(self.kind)
        self.workdir = tempfile.mkdtemp(prefix=f"encdec-{self.kind}-")
        self.exports: dict[str, Any] = {}
        self.model = self._export({})  # written now, so a model the export cannot write fails at load

    def _export(self, generation: Mapping[str, Any]):
        """The runner of an export of this checkpoint with `generation` fixed (one per setting)."""
        from encdec.export import export

        key = json.dumps(dict(generation), sort_keys=True)
        if key not in self.exports:
            out = os.path.join(self.workdir, f"export-{len(self.exports)}")
            export(self.source, out, to=self.kind, dtype=self.run.dtype, generation=generation)
            self.exports[key] = self.module.load(out)
        return self.exports[key]

    def forward(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        takes = inspect.signature(self.model.forward).parameters
        inputs = dict(inputs)
        if "decoder_input_ids" not in inputs:  # the decoder reads the labels shifted, as the ports do
            inputs["decoder_input_ids"] = shift_tokens_right(inputs["labels"], self.config.pad_token_id,
                                                             self.config.decoder_start_token_id)
        args = {k: inputs[k] for k in ("input_ids", "attention_mask", "decoder_input_ids")}
        for name, value in inputs.items():
            if name in args or name == "labels":
                continue  # labels only add a loss, which an export does not compute
            if name in takes:
                args[name] = value
            elif not (name.endswith("attention_mask") and np.all(value == 1)):
                raise NotRunnable(f"{self.label}'s forward takes no {name}; this input needs it")
        return {"logits": np.asarray(self.model.forward(**args), np.float32)}

    def gradients(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotRunnable(f"{self.label} computes no gradients")

    def generate(self, inputs: Mapping[str, np.ndarray], options: Mapping[str, Any]) -> np.ndarray:
        fixed = self.module.GENERATION_OPTIONS
        if not fixed:  # options are given when the export runs
            return np.asarray(self.model.generate(inputs["input_ids"], inputs["attention_mask"], **options))
        generation = {}
        for name, value in options.items():
            if name == "do_sample" and not value:
                continue
            if name in CONFIG_OPTIONS and value == getattr(self.generation_config, name, None):
                continue
            if name not in fixed:
                raise NotRunnable(f"{self.label} cannot fix {name}={value!r} in its generate "
                                  f"(it fixes {', '.join(fixed)})")
            generation[name] = value
        runner = self._export(generation)
        return np.asarray(runner.generate(inputs["input_ids"], inputs["attention_mask"]))

    def _numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x, np.float32)

    def close(self) -> None:
        self.model, self.exports = None, {}
        if getattr(self, "workdir", None):
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


class ONNXRunner(_ExportRunner):
    name, label, kind = "onnx", "ONNX export (onnxruntime)", "onnx"
    writer, library = PTRunner, "torch"
    requires = ("torch", "onnx", "onnxruntime")


class SavedModelRunner(_ExportRunner):
    name, label, kind = "savedmodel", "TF SavedModel export", "savedmodel"
    writer, library = TFRunner, "tensorflow"
    requires = ("tensorflow",)


class JaxExportRunner(_ExportRunner):
    name, label, kind = "jax-export", "JAX export (jax.export)", "jax"
    writer, library = FlaxRunner, "jax"
    requires = ("jax", "flax")


EXPORT_RUNNERS: dict[str, type[Runner]] = {r.name: r for r in (ONNXRunner, SavedModelRunner, JaxExportRunner)}
