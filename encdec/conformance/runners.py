"""One small interface per framework; the suite knows the ports only through it.

A runner loads a checkpoint folder on one device in one dtype, and gives back
numpy only:

- `forward(inputs)`: every output by name (`flatten` of the Seq2SeqLMOutput
  fields: loss, logits, encoder output, every layer's hidden states,
  attentions and cross-attentions), float32;
- `gradients(inputs)`: d loss / d parameter for every stored parameter, by
  canonical name and in the canonical layout (dropout off, so the step is
  deterministic and the same in every framework);
- `generate(inputs, options)`: token ids;
- `decode(ids, tokenizer_dir)`: their text (encdec's tokenizer; transformers'
  own for the reference).

A port is reached only through its public contract (docs/design.md): a
checkpoint folder is read by the core (`encdec.weights.convert.load_state`, in
the runner's native format) and handed to `Model.from_state(config, state,
dtype)`; outputs come from the model's forward (`__call__`), ids from its
`generate`, and the TF runner finds which Keras variable holds which stored
tensor through `canonical_state` / `load_canonical_state`. Each runner imports
its framework only when it is used. `hf` is transformers' PyTorch
EncoderDecoderModel, the reference, when transformers is installed.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import importlib
import importlib.util
import inspect
import warnings
from typing import Any, ClassVar, Mapping

import numpy as np

from encdec.config import EncoderDecoderConfig
from encdec.errors import CheckpointError
from encdec.weights.names import ModelSpec, model_spec

from .compare import flatten
from .devices import Run, disable_tf32, without_c_logs

# Output fields that are not numbers to compare (a cache's layout is each port's own).
NOT_COMPARED = ("past_key_values", "cache")


def _fields(out: Any) -> dict[str, Any]:
    """The named fields of a model output (a mapping or a dataclass)."""
    if isinstance(out, Mapping):
        return dict(out.items())
    if dataclasses.is_dataclass(out):
        return {f.name: getattr(out, f.name) for f in dataclasses.fields(out)}
    raise TypeError(f"model output of type {type(out).__name__}; expected a mapping or dataclass of named fields")


def _sequences(out: Any) -> Any:
    """Generated ids from `generate`: the array itself, or the `sequences` field."""
    return getattr(out, "sequences", out)


class NotRunnable(Exception):
    """An item a runner cannot run by its nature (an export whose graph takes no decoder mask, a
    generate option fixed otherwise at export): reported as a skip with this reason, not a failure."""


class Runner(abc.ABC):
    """Base of the per-framework runners."""

    name: ClassVar[str]
    label: ClassVar[str]
    library: ClassVar[str]  # the import devices.py probes ("torch", "tensorflow", "jax")
    native_format: ClassVar[str]  # the checkpoint format it loads (convert_checkpoint's `to`)
    requires: ClassVar[tuple[str, ...]]  # modules that must be importable
    # The kinds of items it runs ("forward", "gradients", "generate", "text"); the others are skipped.
    items: ClassVar[tuple[str, ...]] = ("forward", "gradients", "generate", "text")
    # The forward outputs it returns, when not every one (then the others' are compared on these).
    forward_outputs: ClassVar[tuple[str, ...] | None] = None

    def __init__(self, run: Run) -> None:
        self.run = run
        self.config: EncoderDecoderConfig | None = None
        self.spec: ModelSpec | None = None

    # --- availability ------------------------------------------------------

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this runner cannot run here, or None."""
        for module in cls.requires:
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed"
        try:
            cls.model_class()
        except Exception as e:  # a port not (yet) importable is reported, not raised
            return f"cannot import its model class: {type(e).__name__}: {e}"
        return None

    @classmethod
    @abc.abstractmethod
    def model_class(cls):
        """The model class of the port (imports its framework)."""

    @classmethod
    def supports_dtype(cls, device: str, dtype: str) -> str | None:
        """None when `dtype` runs on `device`, else why not: the model class must
        build in that dtype (a `dtype` argument of `from_state`), and the framework
        must run bfloat16 matmuls and softmax there."""
        if dtype == "float32":
            return None
        reason = cls.no_bfloat16()
        if reason is not None:
            return f"{cls.label} has no bfloat16 mode: {reason}"
        try:
            cls._bf16_probe(device)
        except Exception as e:
            return f"bfloat16 not supported by {cls.library} on {device}: {type(e).__name__}: {e}"
        return None

    @classmethod
    def no_bfloat16(cls) -> str | None:
        """Why the model class cannot be built in bfloat16, or None when it can."""
        if "dtype" not in inspect.signature(cls.model_class().from_state).parameters:
            return "its from_state takes no dtype"
        return None

    @classmethod
    @abc.abstractmethod
    def framework_dtype(cls, dtype: str) -> Any:
        """The framework's dtype object for "float32" / "bfloat16" (imports the framework)."""

    @classmethod
    @abc.abstractmethod
    def _bf16_probe(cls, device: str) -> None:
        """Raise when bfloat16 attention math does not run on `device`."""

    # --- work --------------------------------------------------------------

    def load(self, model_dir: str) -> None:
        """Read `model_dir` (in this runner's native format) through the core and
        build the model from its canonical tensors on the run's device and dtype."""
        from encdec.weights.convert import load_state

        disable_tf32(self.library)
        self.config = EncoderDecoderConfig.from_pretrained(model_dir)
        self.spec = model_spec(self.config)
        state, _ = load_state(model_dir, self.spec, fmt=self.native_format)
        # float32 is every port's default; bfloat16 is asked for by the framework's own dtype.
        dtype = None if self.run.dtype == "float32" else self.framework_dtype(self.run.dtype)
        self.model = self._place(state, dtype)

    def _place(self, state: dict[str, np.ndarray], dtype: Any) -> Any:
        """The model built by `from_state(config, state, dtype)`, on the run's device."""
        return self.model_class().from_state(self.config, state, dtype=dtype)

    @abc.abstractmethod
    def forward(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output of one forward pass, flattened by name, as float32 numpy."""

    @abc.abstractmethod
    def gradients(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """d loss / d parameter for every stored parameter, by canonical name, canonical layout."""

    @abc.abstractmethod
    def generate(self, inputs: Mapping[str, np.ndarray], options: Mapping[str, Any]) -> np.ndarray:
        """Generated ids `[batch * num_return_sequences, length]`."""

    def decode(self, ids: np.ndarray, tokenizer_dir: str) -> list[str]:
        """The text of generated ids (special tokens dropped), by encdec's tokenizer of `tokenizer_dir`."""
        from encdec.tokenization import Tokenizer

        return Tokenizer.from_pretrained(tokenizer_dir).batch_decode(ids, skip_special_tokens=True)

    def close(self) -> None:
        self.model = None

    # --- shared helpers ----------------------------------------------------

    def _outputs(self, out: Any) -> dict[str, np.ndarray]:
        fields = {k: v for k, v in _fields(out).items() if k not in NOT_COMPARED}
        return flatten(fields, leaf=self._numpy)

    @abc.abstractmethod
    def _numpy(self, x: Any) -> np.ndarray:
        """A framework tensor as numpy (floating point as float32)."""

    def _canonical_grads(self, grads: dict[str, Any], by: str, layout: str) -> dict[str, np.ndarray]:
        """Gradients keyed by canonical name, in the canonical layout.

        `grads` is keyed by canonical name (`by="name"`; a tied name resolves to
        its stored source) or by Flax param path (`by="flax"`), with values in
        `layout` ("pt", "tf" or "flax"). None (no path to the loss, like the
        pooler's) is a zero gradient; the gradients of one tensor used under
        several names add up. A name the spec does not know is an error.
        """
        spec = self.spec
        index = spec.by_flax if by == "flax" else spec.by_name
        out: dict[str, np.ndarray] = {}
        for name, g in grads.items():
            p = index.get(name)
            if p is None and by == "name" and name in spec.tied_by_name:
                p = spec.by_name[spec.tied_by_name[name].source]
            if p is None:
                raise CheckpointError(f"{self.label}: parameter {name!r} is not in the model spec; expected one of "
                                      f"its {'Flax paths' if by == 'flax' else 'canonical names'}")
            arr = np.zeros(p.shape_in(layout), np.float32) if g is None else self._numpy(g)
            value = {"pt": lambda a: a, "tf": p.from_tf, "flax": p.from_flax}[layout](arr)
            out[p.name] = out[p.name] + value if p.name in out else value
        return out


# ---------------------------------------------------------------------------
# PyTorch: transformers' reference and the encdec port share the code


class _TorchRunner(Runner):
    library = "torch"
    # On CPU the suite's batches (at most 4 x 16 tokens) make every op small, and
    # PyTorch's OpenMP threads then spend longer waiting for each other than
    # computing: on a 2-core machine one thread runs the MiniLM default 5-10x
    # faster (greedy search 1.4 s instead of 10 s). Restored by `close`.
    CPU_THREADS = 1

    def load(self, model_dir: str) -> None:
        self._set_threads()
        super().load(model_dir)

    def _set_threads(self) -> None:
        import torch

        self._threads = torch.get_num_threads()
        if self.run.device == "cpu":
            torch.set_num_threads(self.CPU_THREADS)

    def close(self) -> None:
        import torch

        super().close()
        if getattr(self, "_threads", None):
            torch.set_num_threads(self._threads)

    @classmethod
    def _bf16_probe(cls, device: str) -> None:
        import torch

        dev = "cuda" if device == "gpu" else "cpu"
        x = torch.ones(2, 4, 8, dtype=torch.bfloat16, device=dev)
        torch.softmax(torch.einsum("bqd,bkd->bqk", x, x).float(), -1)
        torch.nn.functional.scaled_dot_product_attention(x[None], x[None], x[None])

    @classmethod
    def framework_dtype(cls, dtype: str):
        import torch

        return {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]

    def _tensors(self, inputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
        import torch

        return {k: torch.as_tensor(np.asarray(v)).to(self.run.device_name) for k, v in inputs.items()}

    def _numpy(self, x: Any) -> np.ndarray:
        import torch

        if isinstance(x, torch.Tensor):
            x = x.detach()
            return (x.float() if x.is_floating_point() else x).cpu().numpy()
        return np.asarray(x)

    def forward(self, inputs):
        import torch

        with torch.no_grad():
            out = self.model(**self._tensors(inputs), output_hidden_states=True, output_attentions=True,
                             use_cache=False)
        return self._outputs(out)

    def gradients(self, inputs):
        import torch

        self.model.zero_grad(set_to_none=True)
        with torch.enable_grad():
            out = self.model(**self._tensors(inputs), use_cache=False)
            out.loss.backward()
        # torch's own parameter names are the canonical (state_dict) names.
        grads = {name: p.grad for name, p in self.model.named_parameters()}
        self.model.zero_grad(set_to_none=True)
        return self._canonical_grads(grads, "name", "pt")

    def generate(self, inputs, options):
        import torch

        t = self._tensors({k: inputs[k] for k in ("input_ids", "attention_mask")})
        with torch.no_grad():
            out = self.model.generate(t["input_ids"], attention_mask=t["attention_mask"], **options)
        return self._numpy(_sequences(out))


class HFRunner(_TorchRunner):
    name = "hf"
    label = "transformers (PyTorch reference)"
    requires = ("torch", "transformers")
    # pytorch_model.bin holds every state-dict name, tied ones included:
    # transformers 5 does not re-tie tie_encoder_decoder weights that a
    # safetensors file stores once, and would draw them at random instead.
    native_format = "pt"

    @classmethod
    def model_class(cls):
        return importlib.import_module("transformers").EncoderDecoderModel

    @classmethod
    def no_bfloat16(cls) -> str | None:
        return None  # transformers' from_pretrained takes `dtype` through its keyword arguments

    def load(self, model_dir: str) -> None:
        """The reference reads the folder itself: transformers' own loader is part of what it checks."""
        import transformers

        self._set_threads()
        disable_tf32(self.library)
        self.config = EncoderDecoderConfig.from_pretrained(model_dir)
        self.spec = model_spec(self.config)
        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        # Eager attention: the SDPA path returns no attention weights.
        model = self.model_class().from_pretrained(model_dir, dtype=self.framework_dtype(self.run.dtype),
                                                   attn_implementation="eager")
        self.model = model.to(self.run.device_name).eval()

    def decode(self, ids, tokenizer_dir):
        """transformers' own tokenizer decodes: the reference is its generate followed by its batch_decode."""
        import transformers

        tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_dir)
        return tokenizer.batch_decode(np.asarray(ids).tolist(), skip_special_tokens=True)

    def forward(self, inputs):
        with _quiet():
            return super().forward(inputs)

    def gradients(self, inputs):
        with _quiet():
            return super().gradients(inputs)


@contextlib.contextmanager
def _quiet():
    """transformers warns, on every call with labels, that its loss moved in v4.12."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
        yield


class PTRunner(_TorchRunner):
    name = "pt"
    label = "encdec PyTorch"
    requires = ("torch",)
    native_format = "safetensors"

    @classmethod
    def model_class(cls):
        return importlib.import_module("encdec.pt").EncoderDecoderModel

    def _place(self, state, dtype):
        return super()._place(state, dtype).to(self.run.device_name).eval()


# ---------------------------------------------------------------------------
# TensorFlow


class TFRunner(Runner):
    name = "tf"
    label = "encdec TensorFlow"
    library = "tensorflow"
    native_format = "tf"
    requires = ("tensorflow", "keras")

    @classmethod
    def model_class(cls):
        with without_c_logs():  # the first import of TensorFlow
            return importlib.import_module("encdec.tf").TFEncoderDecoderModel

    @classmethod
    def no_bfloat16(cls) -> str | None:
        return "the TensorFlow port computes in float32 (its from_state takes float32 only)"

    @classmethod
    def _bf16_probe(cls, device: str) -> None:
        import tensorflow as tf

        with tf.device({"cpu": "/CPU:0", "gpu": "/GPU:0", "tpu": "/TPU:0"}[device]):
            x = tf.ones((2, 4, 2, 8), tf.bfloat16)
            s = tf.einsum("bqhd,bkhd->bhqk", x, x)
            tf.nn.softmax(tf.cast(s, tf.float32))
            tf.math.erf(x)

    @classmethod
    def framework_dtype(cls, dtype: str):
        import tensorflow as tf

        return {"float32": tf.float32, "bfloat16": tf.bfloat16}[dtype]

    def _device(self):
        import tensorflow as tf

        return tf.device(self.run.device_name)

    def _place(self, state, dtype):
        with self._device():
            return super()._place(state, dtype)

    def _tensors(self, inputs):
        import tensorflow as tf

        return {k: tf.constant(np.asarray(v)) for k, v in inputs.items()}

    def _numpy(self, x: Any) -> np.ndarray:
        import tensorflow as tf

        if isinstance(x, tf.IndexedSlices):  # the gradient of an embedding lookup
            x = tf.convert_to_tensor(x)
        if isinstance(x, (tf.Tensor, tf.Variable)):
            if x.dtype.is_floating:
                x = tf.cast(x, tf.float32)
            return x.numpy()
        return np.asarray(x)

    def forward(self, inputs):
        with self._device():
            out = self.model(**self._tensors(inputs), output_hidden_states=True, output_attentions=True,
                             use_cache=False, training=False)
        return self._outputs(out)

    def gradients(self, inputs):
        import tensorflow as tf

        named = self._variables_by_name()
        with self._device():
            with tf.GradientTape() as tape:
                out = self.model(**self._tensors(inputs), use_cache=False, training=False)
            grads = tape.gradient(out.loss, list(named.values()))
        return self._canonical_grads(dict(zip(named, grads)), "name", "tf")

    def generate(self, inputs, options):
        t = self._tensors({k: inputs[k] for k in ("input_ids", "attention_mask")})
        with self._device():
            out = self.model.generate(t["input_ids"], attention_mask=t["attention_mask"], **options)
        return self._numpy(_sequences(out))

    def _variables_by_name(self) -> dict[str, Any]:
        """Canonical name -> the Keras variable that holds that stored tensor (TF layout).

        Found through the contract alone: every stored tensor is filled with its
        own number (1, 2, ...; exact in float32) by `load_canonical_state`, each
        weight variable (the non-trainable pooler too; Keras' integer seed states are
        no weights) then names its tensor by the one value it holds, and
        the original tensors are put back. A tied name shares its source's
        variable and is not stored, so it is not in `canonical_state()`.
        """
        state = self.model.canonical_state()
        names = list(state)
        marks = {name: np.full(np.shape(state[name]), i + 1, np.float32) for i, name in enumerate(names)}
        found: dict[str, Any] = {}
        self.model.load_canonical_state(marks)
        try:
            for variable in (v for v in self.model.variables if "float" in str(v.dtype)):
                values = np.unique(np.asarray(variable.numpy(), np.float64))
                index = int(values[0]) - 1 if values.size == 1 and values[0] == int(values[0]) else -1
                if not 0 <= index < len(names) or names[index] in found:
                    raise CheckpointError(
                        f"{self.label}: the variable {variable.path} (shape {tuple(variable.shape)}) holds none of "
                        f"the {len(names)} stored tensors after load_canonical_state; expected every weight "
                        "variable to hold exactly one of them")
                found[names[index]] = variable
        finally:
            self.model.load_canonical_state(state)
        missing = [name for name in names if name not in found]
        if missing:
            raise CheckpointError(f"{self.label}: no weight variable holds {missing[:5]} "
                                  f"({len(missing)} of {len(names)} stored tensors); expected one each")
        return {name: found[name] for name in names}


# ---------------------------------------------------------------------------
# JAX / Flax


class FlaxRunner(Runner):
    name = "flax"
    label = "encdec Flax"
    library = "jax"
    native_format = "flax"
    requires = ("jax", "flax")

    @classmethod
    def model_class(cls):
        return importlib.import_module("encdec.flax").FlaxEncoderDecoderModel

    @classmethod
    def _bf16_probe(cls, device: str) -> None:
        import jax
        import jax.numpy as jnp

        with jax.default_device(jax.devices(device)[0]):
            x = jnp.ones((2, 4, 2, 8), jnp.bfloat16)
            s = jnp.einsum("bqhd,bkhd->bhqk", x, x)
            jax.nn.softmax(s.astype(jnp.float32)).block_until_ready()

    @classmethod
    def framework_dtype(cls, dtype: str):
        import jax.numpy as jnp

        return {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[dtype]

    def _device(self):
        import jax

        return jax.default_device(jax.devices(self.run.device_name)[0])

    def _place(self, state, dtype):
        import jax

        with self._device():
            model = super()._place(state, dtype)
            model.params = jax.device_put(model.params, jax.devices(self.run.device_name)[0])
        return model

    def _tensors(self, inputs):
        import jax.numpy as jnp

        return {k: jnp.asarray(np.asarray(v)) for k, v in inputs.items()}

    def _numpy(self, x: Any) -> np.ndarray:
        arr = np.asarray(x)
        if arr.dtype.kind == "f" or arr.dtype.name == "bfloat16":
            arr = arr.astype(np.float32)
        return arr

    def forward(self, inputs):
        with self._device():
            out = self.model(**self._tensors(inputs), output_hidden_states=True, output_attentions=True,
                             train=False)
        return self._outputs(out)

    def gradients(self, inputs):
        import jax
        from flax.traverse_util import flatten_dict

        tensors = self._tensors(inputs)

        def loss(params):
            return self.model(**tensors, params=params, train=False).loss

        # Compiled as one program: differentiating op by op takes longer than compiling it.
        with self._device():
            grads = jax.jit(jax.grad(loss))(self.model.params)
        # The params tree is keyed by the name table's Flax paths (ParamSpec.flax_path).
        flat = {"/".join(map(str, path)): g for path, g in flatten_dict(grads).items()}
        return self._canonical_grads(flat, "flax", "flax")

    def generate(self, inputs, options):
        t = self._tensors({k: inputs[k] for k in ("input_ids", "attention_mask")})
        with self._device():
            out = self.model.generate(t["input_ids"], attention_mask=t["attention_mask"], **options)
        return self._numpy(_sequences(out))


RUNNERS: dict[str, type[Runner]] = {r.name: r for r in (HFRunner, PTRunner, TFRunner, FlaxRunner)}
PORTS = ("pt", "tf", "flax")
REFERENCE = "hf"


def all_runners() -> dict[str, type[Runner]]:
    """The ports' and transformers' runners, then the exports' (which build on the ports' runners)."""
    from .exports import EXPORT_RUNNERS

    return {**RUNNERS, **EXPORT_RUNNERS}


def runner_class(name: str) -> type[Runner]:
    known = all_runners()
    if name not in known:
        raise ValueError(f"unknown framework {name!r}; expected some of {', '.join(known)}")
    return known[name]
