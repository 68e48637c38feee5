"""One adapter per port: numpy in and out, and the model built and driven through the port contract.

The shared tests hold numpy arrays; a backend turns them into its framework's
tensors (keeping the dtype, so that a test can hand a port uint8 or float ids),
runs the contract method and gives numpy back. Nothing here reaches into a port's
private functions: a test fails when a port lacks part of the contract.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util

import numpy as np
import pytest

from encdec.errors import MissingFrameworkError


class Backend:
    """A port seen through the contract. `name` is the port's package under encdec."""

    name = ""
    class_name = ""
    requires: tuple[str, ...] = ()

    def available(self) -> bool:
        return all(importlib.util.find_spec(module) is not None for module in self.requires)

    def model_class(self):
        try:
            module = importlib.import_module(f"encdec.{self.name}")
        except MissingFrameworkError as e:  # pragma: no cover - depends on the install
            pytest.skip(str(e))
        return getattr(module, self.class_name)

    # -- tensors ---------------------------------------------------------------------

    def tensor(self, array):
        raise NotImplementedError

    def numpy(self, x) -> np.ndarray:
        """A framework tensor (or a nest's leaf) as numpy; None and plain ints pass through as numpy."""
        return np.asarray(x)

    def tensors(self, **arrays) -> dict:
        """Framework tensors of the numpy arrays; None is left out, so each port sees its defaults."""
        return {k: self.tensor(v) if isinstance(v, np.ndarray) else v for k, v in arrays.items() if v is not None}

    # -- building --------------------------------------------------------------------

    def from_state(self, config, state: dict, dtype=None):
        return self.model_class().from_state(config, state, dtype=dtype)

    def from_pretrained(self, directory, **kwargs):
        return self.model_class().from_pretrained(directory, **kwargs)

    def save_pretrained(self, model, directory, **kwargs) -> None:
        model.save_pretrained(directory, **kwargs)

    # -- running ---------------------------------------------------------------------

    def no_grad(self):
        return contextlib.nullcontext()

    def forward(self, model, **arrays):
        with self.no_grad():
            return model(**self.tensors(**arrays))

    def encode(self, model, input_ids, attention_mask=None, **options):
        with self.no_grad():
            return model.encode(self.tensor(input_ids), **self.tensors(attention_mask=attention_mask, **options))

    def init_cache(self, model, batch_size, max_length, encoder_outputs, encoder_attention_mask=None):
        mask = None if encoder_attention_mask is None else self.tensor(encoder_attention_mask)
        with self.no_grad():
            return model.init_cache(batch_size, max_length, encoder_outputs, mask)

    def decode_step(self, model, decoder_input_ids, cache, decoder_position_ids=None):
        positions = None if decoder_position_ids is None else self.tensor(decoder_position_ids)
        with self.no_grad():
            return model.decode_step(self.tensor(decoder_input_ids), cache, positions)

    def reorder_cache(self, model, cache, rows):
        with self.no_grad():
            return model.reorder_cache(cache, self.tensor(np.asarray(rows)))

    def generate(self, model, input_ids, attention_mask=None, decoder_input_ids=None, **options):
        with self.no_grad():
            return model.generate(
                self.tensor(input_ids),
                **self.tensors(attention_mask=attention_mask, decoder_input_ids=decoder_input_ids, **options),
            )

    def generated_ids(self, model, input_ids, **kwargs) -> np.ndarray:
        out = self.generate(model, input_ids, **kwargs)
        return self.numpy(out.sequences if hasattr(out, "sequences") else out)

    def cache_numpy(self, cache) -> dict:
        """The cache nest with numpy leaves: a copy (PyTorch may write its tensors in place)."""
        return {
            "index": None if cache["index"] is None else int(self.numpy(cache["index"])),
            "encoder_attention_mask": (
                None if cache["encoder_attention_mask"] is None else self.numpy(cache["encoder_attention_mask"]).copy()
            ),
            "layers": tuple({k: self.numpy(v).copy() for k, v in layer.items()} for layer in cache["layers"]),
        }

    @contextlib.contextmanager
    def watch_compute(self, model):
        """Fails the test if the model's encoder or decoder runs inside the block."""
        def computed(*args, **kwargs):
            raise AssertionError(f"{self.name}: the model computed before rejecting its input")

        parts = [model.encoder, model.decoder]
        for part in parts:
            setattr(part, self.compute_method, computed)
        try:
            yield
        finally:
            for part in parts:
                delattr(part, self.compute_method)

    compute_method = "forward"

    # -- training --------------------------------------------------------------------

    def loss_and_grads(self, model, input_ids, attention_mask, labels) -> tuple[float, dict]:
        """The loss of `labels` and its gradient per stored parameter, by canonical name and layout.

        The gradients are read back through the contract: each is written into its own
        parameter and `canonical_state()` lays them out by canonical name (the port's
        transposes and tied parameters handled as for weights); the weights are restored.
        """
        raise NotImplementedError


class TorchBackend(Backend):
    name, class_name, requires = "pt", "EncoderDecoderModel", ("torch",)

    def tensor(self, array):
        import torch

        return torch.from_numpy(np.ascontiguousarray(array))

    def numpy(self, x):
        import torch

        if isinstance(x, torch.Tensor):
            return x.detach().cpu().float().numpy() if x.dtype == torch.bfloat16 else x.detach().cpu().numpy()
        return np.asarray(x)

    def no_grad(self):
        import torch

        return torch.no_grad()

    def from_state(self, config, state, dtype=None):
        return super().from_state(config, state, dtype).eval()

    def from_pretrained(self, directory, **kwargs):
        return super().from_pretrained(directory, **kwargs).eval()

    def loss_and_grads(self, model, input_ids, attention_mask, labels):
        import torch

        weights = model.canonical_state()
        model.zero_grad(set_to_none=True)
        loss = model(**self.tensors(input_ids=input_ids, attention_mask=attention_mask, labels=labels)).loss
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.grad if p.grad is not None else torch.zeros_like(p))
        grads = model.canonical_state()
        model.load_canonical_state(weights)
        model.zero_grad(set_to_none=True)
        return float(loss), grads


class TFBackend(Backend):
    name, class_name, requires = "tf", "TFEncoderDecoderModel", ("tensorflow", "keras")
    compute_method = "call"

    def tensor(self, array):
        import tensorflow as tf

        return tf.constant(array)

    def numpy(self, x):
        if hasattr(x, "numpy"):
            return np.asarray(x.numpy())
        return np.asarray(x)

    def loss_and_grads(self, model, input_ids, attention_mask, labels):
        import tensorflow as tf

        weights = model.canonical_state()
        # Every weight, the non-trainable pooler too (the loss gives it no gradient: zeros, as transformers').
        variables = [v for v in model.variables if "float" in str(v.dtype)]
        with tf.GradientTape() as tape:
            loss = model(**self.tensors(input_ids=input_ids, attention_mask=attention_mask, labels=labels)).loss
        grads = tape.gradient(loss, variables)
        for variable, grad in zip(variables, grads):
            variable.assign(tf.zeros_like(variable) if grad is None else tf.convert_to_tensor(grad))
        out = model.canonical_state()
        model.load_canonical_state(weights)
        return float(loss), out


class FlaxBackend(Backend):
    name, class_name, requires = "flax", "FlaxEncoderDecoderModel", ("jax", "flax")

    def tensor(self, array):
        # The Flax port takes numpy on the host (its checks run there before anything is traced).
        return np.asarray(array)

    def numpy(self, x):
        return np.asarray(x)

    @contextlib.contextmanager
    def watch_compute(self, model):
        """Fails the test if anything was traced or compiled inside the block: the Flax port's
        checks run on the host, so a rejected input reaches neither JAX nor XLA."""
        from jax._src import dispatch, monitoring

        events = []

        def listener(event, duration, **kwargs):
            if event in (dispatch.JAXPR_TRACE_EVENT, dispatch.BACKEND_COMPILE_EVENT):
                events.append(event)

        monitoring.register_event_duration_secs_listener(listener)
        try:
            yield
        finally:
            monitoring.unregister_event_duration_listener(listener)
        assert not events, f"flax: traced or compiled ({events[0]}) before rejecting its input"

    def loss_and_grads(self, model, input_ids, attention_mask, labels):
        import jax

        batch = self.tensors(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
        params = model.params
        loss, grads = jax.value_and_grad(lambda p: model(**batch, params=p).loss)(params)
        model.params = grads
        try:
            out = model.canonical_state()
        finally:
            model.params = params
        return float(loss), out


def no_compute(port: Backend, model):
    """A block in which `model` must reject its input before any work."""
    return port.watch_compute(model)


BACKENDS = {"pt": TorchBackend(), "tf": TFBackend(), "flax": FlaxBackend()}


def backend(name: str) -> Backend:
    """The named port's backend; the test is skipped when its framework is not installed."""
    b = BACKENDS[name]
    if not b.available():
        pytest.skip(f"{name}: {', '.join(b.requires)} not installed")
    return b


@pytest.fixture(params=list(BACKENDS), ids=[f"{name}-port" for name in BACKENDS], scope="module")
def port(request) -> Backend:
    """Each shared test runs once per port: pt, tf, flax (skipped where the framework is missing).

    The ids are "pt-port", "tf-port", "flax-port": `-k pt-port` selects one port (a bare `-k pt`
    would also select the gpt2 cases)."""
    return backend(request.param)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models run fastest on one PyTorch thread (the references too), and the machine is shared."""
    if importlib.util.find_spec("torch") is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
