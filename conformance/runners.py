"""One small interface per framework; the suite knows the ports only through it.

A runner loads a checkpoint folder on one device in one dtype, and gives back
numpy only:

- `forward(inputs)`: every output by name (`flatten` of the Seq2SeqLMOutput
  fields: loss, logits, encoder output, every layer's hidden states,
  attentions and cross-attentions), float32;
- `gradients(inputs)`: d loss / d parameter for every stored parameter, by
  canonical name and in the canonical layout (dropout off, so the step is
  deterministic and the same in every framework);
- `generate(inputs, options)`: token ids.

Each runner imports its framework only when it is used. `hf` is transformers'
PyTorch EncoderDecoderModel, the reference, when transformers is installed.
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
from encdec.weights.names import ModelSpec, model_spec

from .compare import flatten
from .devices import Run, disable_tf32

# Output fields that are not numbers to compare (a cache's layout is each port's own).
NOT_COMPARED = ("past_key_values", "cache")


def _fields(out: Any) -> dict[str, Any]:
    """The named fields of a model output (a mapping, a dataclass or a namedtuple)."""
    if isinstance(out, Mapping):
        return dict(out.items())
    if dataclasses.is_dataclass(out):
        return {f.name: getattr(out, f.name) for f in dataclasses.fields(out)}
    if hasattr(out, "_asdict"):
        return dict(out._asdict())
    raise TypeError(f"model output of type {type(out).__name__}; expected a mapping or dataclass of named fields")


def _sequences(out: Any) -> Any:
    """Generated ids from `generate`: the array itself, or the `sequences` field."""
    return getattr(out, "sequences", out)


class Runner(abc.ABC):
    """Base of the per-framework runners."""

    name: ClassVar[str]
    label: ClassVar[str]
    library: ClassVar[str]  # the import devices.py probes ("torch", "tensorflow", "jax")
    native_format: ClassVar[str]  # the checkpoint format it loads (convert_checkpoint's `to`)
    requires: ClassVar[tuple[str, ...]]  # modules that must be importable

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
        load in that dtype (a `dtype` argument of from_pretrained), and the
        framework must run bfloat16 matmuls and softmax there."""
        if dtype == "float32":
            return None
        if not cls._loads_in_dtype():
            return f"{cls.label} has no bfloat16 mode: its from_pretrained takes no dtype"
        try:
            cls._bf16_probe(device)
        except Exception as e:
            return f"bfloat16 not supported by {cls.library} on {device}: {type(e).__name__}: {e}"
        return None

    @classmethod
    def _loads_in_dtype(cls) -> bool:
        return "dtype" in inspect.signature(cls.model_class().from_pretrained).parameters

    @classmethod
    @abc.abstractmethod
    def _bf16_probe(cls, device: str) -> None:
        """Raise when bfloat16 attention math does not run on `device`."""

    # --- work --------------------------------------------------------------

    def load(self, model_dir: str) -> None:
        disable_tf32(self.library)
        self.config = EncoderDecoderConfig.from_pretrained(model_dir)
        self.spec = model_spec(self.config)
        self._load(model_dir)

    @abc.abstractmethod
    def _load(self, model_dir: str) -> None:
        """Load `model_dir` (in this runner's native format) on the run's device and dtype."""

    @abc.abstractmethod
    def forward(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output of one forward pass, flattened by name, as float32 numpy."""

    @abc.abstractmethod
    def gradients(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """d loss / d parameter for every stored parameter, by canonical name, canonical layout."""

    @abc.abstractmethod
    def generate(self, inputs: Mapping[str, np.ndarray], options: Mapping[str, Any]) -> np.ndarray:
        """Generated ids `[batch * num_return_sequences, length]`."""

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
                raise KeyError(f"{self.label}: parameter {name!r} is not in the model spec; expected one of its "
                               f"{'Flax paths' if by == 'flax' else 'canonical names'}")
            arr = np.zeros(p.shape_in(layout), np.float32) if g is None else self._numpy(g)
            value = {"pt": lambda a: a, "tf": p.from_tf, "flax": p.from_flax}[layout](arr)
            out[p.name] = out[p.name] + value if p.name in out else value
        return out


# ---------------------------------------------------------------------------
# PyTorch: transformers' reference and the encdec port share the code


class _TorchRunner(Runner):
    library = "torch"

    @classmethod
    def _bf16_probe(cls, device: str) -> None:
        import torch

        dev = "cuda" if device == "gpu" else "cpu"
        x = torch.ones(2, 4, 8, dtype=torch.bfloat16, device=dev)
        torch.softmax(torch.einsum("bqd,bkd->bqk", x, x).float(), -1)
        torch.nn.functional.scaled_dot_product_attention(x[None], x[None], x[None])

    @property
    def torch_dtype(self):
        import torch

        return {"float32": torch.float32, "bfloat16": torch.bfloat16}[self.run.dtype]

    def _load(self, model_dir: str) -> None:
        self.model = self._from_pretrained(model_dir).to(self.run.device_name).eval()

    def _from_pretrained(self, model_dir: str):
        return self.model_class().from_pretrained(model_dir, dtype=self.torch_dtype)

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
    def _loads_in_dtype(cls) -> bool:
        return True  # transformers' from_pretrained takes `dtype` through its keyword arguments

    def _from_pretrained(self, model_dir: str):
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        # Eager attention: the SDPA path returns no attention weights.
        return self.model_class().from_pretrained(model_dir, dtype=self.torch_dtype, attn_implementation="eager")

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
        return importlib.import_module("encdec.tf").TFEncoderDecoderModel

    @classmethod
    def _bf16_probe(cls, device: str) -> None:
        import tensorflow as tf

        with tf.device({"cpu": "/CPU:0", "gpu": "/GPU:0", "tpu": "/TPU:0"}[device]):
            x = tf.ones((2, 4, 2, 8), tf.bfloat16)
            s = tf.einsum("bqhd,bkhd->bhqk", x, x)
            tf.nn.softmax(tf.cast(s, tf.float32))
            tf.math.erf(x)

    def _device(self):
        import tensorflow as tf

        return tf.device(self.run.device_name)

    def _load(self, model_dir: str) -> None:
        # float32 only (see supports_dtype); from_pretrained's keywords would set config keys.
        with self._device():
            self.model = self.model_class().from_pretrained(model_dir)

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

        named = self._named_variables()
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

    def _named_variables(self) -> dict:
        """The port's own mapping: canonical name -> Keras variable (TF layout)."""
        mapping = getattr(self.model, "variables_by_name", None)
        if callable(mapping):
            mapping = mapping()
        if mapping is None:
            mapping = getattr(self.model, "_variables_by_name", None)
        if not isinstance(mapping, dict):
            raise AttributeError(f"{self.label}: the model exposes no canonical-name -> variable mapping; expected "
                                 "TFEncoderDecoderModel.variables_by_name() (or _variables_by_name)")
        return mapping


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

    def _device(self):
        import jax

        return jax.default_device(jax.devices(self.run.device_name)[0])

    def _load(self, model_dir: str) -> None:
        import jax
        import jax.numpy as jnp

        dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[self.run.dtype]
        with self._device():
            self.model = self.model_class().from_pretrained(model_dir, dtype=dtype)
            self.model.params = jax.device_put(self.model.params, jax.devices(self.run.device_name)[0])

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

        with self._device():
            grads = jax.grad(loss)(self.model.params)
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


def runner_class(name: str) -> type[Runner]:
    if name not in RUNNERS:
        raise ValueError(f"unknown framework {name!r}; expected some of {', '.join(RUNNERS)}")
    return RUNNERS[name]
