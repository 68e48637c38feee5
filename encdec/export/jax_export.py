"""JAX exports: the Flax port's forward pass and its compiled generate, serialized with `jax.export`.

An export folder holds (besides what `encdec.export` adds):

    forward.jax      forward(*params, input_ids [b, s], attention_mask [b, s], decoder_input_ids [b, t])
                     -> logits [b, t, V] float32
    generate.jax     generate(*params, input_ids [b, s], attention_mask [b, s])
                     -> (sequences [b * num_return_sequences, max_length] int32, length int32 [])
    params.npz       the parameters, one array per argument (bfloat16 stored as its uint16 bits)
    jax_export.json  the parameter names in argument order, the dtype, the generation fixed at export

Both functions take the parameters as their leading arguments rather than holding
them as constants: the two programs share one copy of the weights, the serialized
programs stay small (a constant weight would be written into each), and weights of
the same shapes (a fine-tuned copy) can be swapped in without exporting again.
The batch `b` and the lengths `s`, `t` are symbolic (any size up to the position
tables); ids and masks are int32. Generation options are fixed at export time; the
rows of `sequences` past `length` are padding (as `generate` pads, and cropped by
`load(...).generate`). Generation runs per batch row (`jax.vmap` of a one-row search,
since the port plans a search for a concrete batch); each row is searched as in a batch.

Deserializing needs only jax and numpy (see `STANDALONE_LOADER`). The port's traced
generate checks ids on the host through callbacks, which `jax.export` cannot
serialize; the exported programs leave them out, so `load(...)` checks its inputs
on the host before it calls them (out-of-range ids are silent in JAX).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from ..errors import ConfigError, ExportError, InputError

DTYPES = ("float32", "bfloat16", "float16")
# generate's options an export can fix; sampling is left out (it would need a key per call)
GENERATION_OPTIONS = ("max_length", "max_new_tokens", "min_length", "num_beams", "num_return_sequences",
                      "length_penalty", "early_stopping", "no_repeat_ngram_size", "repetition_penalty",
                      "eos_token_id")
FORWARD_FILE = "forward.jax"
GENERATE_FILE = "generate.jax"
PARAMS_FILE = "params.npz"
META_FILE = "jax_export.json"
# Programs are lowered for both; `Exported.call` runs the one of the device it is called on.
PLATFORMS = ("cpu", "cuda")


def write(model_dir: Path, out: Path, *, dtype: str, opset: Optional[int], generation: Mapping[str, Any]) -> None:
    """Export the model folder `model_dir` into the empty folder `out` (see the module docstring)."""
    import jax
    import jax.numpy as jnp

    from ..flax import FlaxEncoderDecoderModel
    from ..generation import plan_generation

    model = FlaxEncoderDecoderModel.from_pretrained(model_dir, dtype=jnp.dtype(dtype))
    generation = dict(generation)
    try:
        plan = plan_generation(model.config, None, model.generation_config, generation, None, 1, port_options=()).plan
    except (ConfigError, InputError) as e:
        raise ExportError(f"generation options {generation}: {e}") from None
    if plan.do_sample:
        raise ExportError("a jax export fixes greedy or beam search; the model's generation config samples "
                          "(do_sample=True): expected generation options without sampling")
    # The export's weights are in its dtype (the port keeps the checkpoint's and computes in `dtype`).
    params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype), model.params)
    names, leaves = _flat_params(params)
    exported = {
        FORWARD_FILE: _forward_program(model, params),
        GENERATE_FILE: _generate_program(model, params, generation, plan),
    }
    for name, program in exported.items():
        (out / name).write_bytes(program.serialize())
    stored = {f"p{i:04d}": _storable(x) for i, x in enumerate(leaves)}
    np.savez(out / PARAMS_FILE, **stored)
    meta = {
        "format": 1,
        "dtype": dtype,
        "params": [{"key": key, "name": name} for key, name in zip(stored, names)],
        "forward": {"file": FORWARD_FILE, "inputs": ["input_ids", "attention_mask", "decoder_input_ids"],
                    "outputs": ["logits"]},
        "generate": {"file": GENERATE_FILE, "inputs": ["input_ids", "attention_mask"],
                     "outputs": ["sequences", "length"], "options": generation,
                     "max_length": plan.max_length, "num_beams": plan.num_beams,
                     "num_return_sequences": plan.num_return_sequences,
                     "eos_token_ids": list(plan.eos_token_ids)},
        "max_positions": {"encoder": model.config.encoder.max_positions,
                          "decoder": model.config.decoder.max_positions},
        "jax_version": jax.__version__,
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def _forward_program(model, params):
    """The exported forward(*params, input_ids [b, s], attention_mask [b, s], decoder_input_ids [b, t])
    -> float32 logits [b, t, V], b, s and t symbolic."""
    import jax
    import jax.numpy as jnp
    from jax import export

    treedef = jax.tree_util.tree_structure(params)
    param_specs = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in jax.tree_util.tree_leaves(params)]
    enc_limit, dec_limit = model.config.encoder.max_positions, model.config.decoder.max_positions
    b, s, t = export.symbolic_shape("b, s, t", constraints=(f"s <= {enc_limit}", f"t <= {dec_limit}"))
    ids, decoder_ids = jax.ShapeDtypeStruct((b, s), jnp.int32), jax.ShapeDtypeStruct((b, t), jnp.int32)

    def forward(leaves, input_ids, attention_mask, decoder_input_ids):
        out = model(input_ids, attention_mask, decoder_input_ids, params=jax.tree_util.tree_unflatten(treedef, leaves))
        return out.logits.astype(jnp.float32)

    forward_fn = _without_host_callbacks(forward, param_specs, ids, ids, decoder_ids)
    return _export(lambda *args: forward_fn(*args)[0], param_specs + [ids, ids, decoder_ids])


def _generate_program(model, params, generation: dict, plan):
    """The exported generate(*params, input_ids [b, s], attention_mask [b, s]) -> (sequences
    [b * num_return_sequences, max_length] int32, length int32 []), b and s symbolic.

    The port plans a search for a concrete batch, so one row is traced (a batch of one)
    and `jax.vmap` maps it over the rows: each row is searched as in a batch."""
    import jax
    import jax.numpy as jnp
    from jax import export

    treedef = jax.tree_util.tree_structure(params)
    param_specs = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in jax.tree_util.tree_leaves(params)]
    b, s = export.symbolic_shape("b, s", constraints=(f"s <= {model.config.encoder.max_positions}",))

    def one_row(leaves, input_ids, attention_mask):
        # [s] -> [num_return_sequences, max_length]
        out = model.generate(input_ids[None], attention_mask[None], params=jax.tree_util.tree_unflatten(treedef, leaves),
                             **generation)
        return out.sequences

    row = jax.ShapeDtypeStruct((s,), jnp.int32)
    row_fn = _without_host_callbacks(one_row, param_specs, row, row)
    eos = np.asarray(plan.eos_token_ids, np.int32)

    def generate(*args):
        *leaves, input_ids, attention_mask = args
        sequences = jax.vmap(lambda i, m: row_fn(*leaves, i, m)[0])(input_ids, attention_mask)  # [b, r, L]
        sequences = sequences.reshape(-1, plan.max_length)  # [b * r, L], each item's r rows together
        return sequences, _generated_length(sequences, eos, plan.prompt_length, plan.max_length)

    return _export(generate, param_specs + [jax.ShapeDtypeStruct((b, s), jnp.int32)] * 2)


def _flat_params(params) -> tuple[list[str], list]:
    """(names "decoder/bert/...", leaves) in the order jax flattens the params: the argument order."""
    import jax

    paths, _ = jax.tree_util.tree_flatten_with_path(params)
    return ["/".join(str(k.key) for k in path) for path, _ in paths], [leaf for _, leaf in paths]


def _storable(x) -> np.ndarray:
    # npz has no bfloat16: its bits are stored as uint16 and viewed back on load
    array = np.asarray(x)
    return array.view(np.uint16) if array.dtype.name == "bfloat16" else array


def _without_host_callbacks(fn, param_specs, *arg_specs):
    """`fn(leaves, *args)` traced once, as a function of `(*leaves, *args)` returning a list of outputs,
    without the host callbacks (the port's traced value checks) that `jax.export` cannot serialize."""
    import jax
    from jax.extend import core as jcore

    closed = jax.make_jaxpr(fn)(param_specs, *arg_specs)
    eqns = [e for e in closed.jaxpr.eqns if e.primitive.name != "debug_callback"]
    return jcore.jaxpr_as_fun(closed.replace(jaxpr=closed.jaxpr.replace(eqns=eqns)))


def _export(fn, specs):
    import jax
    from jax import export

    try:
        return export.export(jax.jit(fn), platforms=PLATFORMS)(*specs)
    except Exception as e:  # noqa: BLE001 - what jax.export refused is named in the message
        raise ExportError(f"jax.export could not export the model ({type(e).__name__}: {e})") from e


def _generated_length(sequences, eos, prompt_length: int, max_length: int):
    """How many columns `generate` returns: the longest row, each ending at its first eos after the
    prompt (a row without one runs to `max_length`). sequences `[N, L]` -> int32 []."""
    import jax.numpy as jnp

    if eos.size == 0:
        return jnp.asarray(max_length, jnp.int32)
    positions = jnp.arange(max_length, dtype=jnp.int32)[None, :]  # [1, L]
    is_end = jnp.isin(sequences, eos) & (positions >= prompt_length)
    ends = jnp.where(jnp.any(is_end, axis=1), jnp.argmax(is_end, axis=1) + 1, max_length)  # [N]
    return jnp.max(ends).astype(jnp.int32)


# ---------------------------------------------------------------------------
# Running an export


def load(path: str | os.PathLike) -> "JaxExportRunner":
    """The runner of the JAX export at `path` (needs jax and encdec, not flax)."""
    return JaxExportRunner(path)


class JaxExportRunner:
    """Runs a JAX export: `forward` -> float32 logits, `generate` -> ids cropped to the generated length.

    Inputs are checked on the host first (the exported programs do not check id values)."""

    def __init__(self, path: str | os.PathLike) -> None:
        import jax
        import jax.numpy as jnp
        from jax import export

        from ..config import EncoderDecoderConfig

        self.path = Path(path)
        try:
            self.meta = json.loads((self.path / META_FILE).read_text())
        except FileNotFoundError:
            raise ExportError(f"{self.path}: no {META_FILE}; expected a folder written by encdec export --to jax") from None
        self.config = EncoderDecoderConfig.from_pretrained(self.path)
        with np.load(self.path / PARAMS_FILE) as stored:
            leaves = [stored[p["key"]] for p in self.meta["params"]]
        if self.meta["dtype"] == "bfloat16":
            leaves = [x.view(jnp.bfloat16) for x in leaves]
        self.params = jax.device_put(leaves)
        self.programs = {name: export.deserialize(bytearray((self.path / self.meta[name]["file"]).read_bytes()))
                         for name in ("forward", "generate")}

    def forward(self, input_ids, attention_mask, decoder_input_ids) -> np.ndarray:
        """logits `[B, T, V]` float32 of `input_ids` `[B, S]`, `attention_mask` `[B, S]`, `decoder_input_ids` `[B, T]`."""
        from .. import inputs

        if attention_mask is None:
            attention_mask = np.ones(np.shape(input_ids), np.int32)
        inputs.check_model_inputs(self.config, input_ids, attention_mask, decoder_input_ids)
        ids = [np.asarray(x, np.int32) for x in (input_ids, attention_mask, decoder_input_ids)]
        return np.asarray(self.programs["forward"].call(*self.params, *ids), np.float32)

    def generate(self, input_ids, attention_mask=None, **options) -> np.ndarray:
        """ids `[B * num_return_sequences, length]` with the options fixed at export; `options` may only
        repeat them (anything else is an ExportError: the search is compiled into the export)."""
        from .. import inputs

        fixed = self.meta["generate"]["options"]
        differing = {k: v for k, v in options.items() if k not in fixed or fixed[k] != v}
        if differing:
            raise ExportError(f"generate options {differing} differ from those fixed at export ({fixed}); "
                              f"expected none, or the same values (export again to change them)")
        if attention_mask is None:
            attention_mask = np.ones(np.shape(input_ids), np.int32)
        inputs.check_encoder_inputs(self.config, input_ids, attention_mask)
        sequences, length = self.programs["generate"].call(
            *self.params, np.asarray(input_ids, np.int32), np.asarray(attention_mask, np.int32))
        return np.asarray(sequences)[:, : int(length)]


# What a user runs with jax and numpy alone (no encdec, no flax): docs/export.md shows it.
STANDALONE_LOADER = '''\
import json
import numpy as np
import jax
import jax.numpy as jnp
from jax import export


def load_encdec_jax(path):
    """(forward, generate) of an `encdec export --to jax` folder; needs jax and numpy only."""
    meta = json.load(open(f"{path}/jax_export.json"))
    with np.load(f"{path}/params.npz") as stored:
        params = [stored[p["key"]] for p in meta["params"]]
    if meta["dtype"] == "bfloat16":  # stored as its uint16 bits
        params = [p.view(jnp.bfloat16) for p in params]
    params = jax.device_put(params)
    programs = {name: export.deserialize(bytearray(open(f"{path}/{meta[name]['file']}", "rb").read()))
                for name in ("forward", "generate")}

    def forward(input_ids, attention_mask, decoder_input_ids):  # int32 [b, s], [b, s], [b, t]
        return np.asarray(programs["forward"].call(*params, input_ids, attention_mask, decoder_input_ids))

    def generate(input_ids, attention_mask):  # int32 [b, s] -> ids [b * num_return_sequences, length]
        sequences, length = programs["generate"].call(*params, input_ids, attention_mask)
        return np.asarray(sequences)[:, : int(length)]

    return forward, generate
'''
