"""Training and generating with a `FlaxEncoderDecoderModel` over a device mesh, on JAX's own engine.

The parameters are laid out by ONE table of partitioning rules in the style of T5X
and `flax.linen.logical_to_mesh`: `PARTITION_RULES` maps a regular expression on a
parameter's Flax path (`encoder/encoder/layer/0/attention/self/query/kernel`) to the
logical axes of its dimensions (`("embed", "heads")`), and `LOGICAL_AXIS_RULES` maps
each logical axis to a mesh axis: "batch" to "data" (data parallel), "heads", "mlp"
and "vocab" to "model" (Megatron-style tensor parallel: the query/key/value and
feed-forward input kernels are split by output, the attention-output and
feed-forward-output kernels by input, the vocabulary by row), everything else
replicated. A parameter no rule matches is a `ConfigError`, so a new parameter
cannot slip through unsharded unnoticed.

A dimension is split over a mesh axis only when the axis divides it (JAX places
only evenly divisible arrays); otherwise that dimension is replicated, and so is a
second dimension that asks for a mesh axis an earlier one already took.

Everything runs through `jax.sharding.Mesh`, `NamedSharding` and `jax.jit` with
`in_shardings` / `out_shardings`; XLA's SPMD partitioner inserts the collectives.
The step computes exactly what the single-device step computes (the loss is the
mean over the whole global batch, not a mean of per-device means), up to the
order of floating-point sums.

Generation: `FlaxEncoderDecoderModel.generate` jits its whole decode loop, and a
jitted function follows the shardings of its arguments, so `sharded_generate`
hands it the sharded parameters (`params=`) and the batch's rows split over "data"
(`input_sharding=`, placed after the host checks and the plan): the loop runs
data- and tensor-parallel at once.
"""

from __future__ import annotations

import re
from typing import Callable, Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ..errors import ConfigError, InputError
from .training import loss_fn

__all__ = [
    "PARTITION_RULES",
    "LOGICAL_AXIS_RULES",
    "make_mesh",
    "param_logical_axes",
    "param_partition_specs",
    "shard_params",
    "shard_batch",
    "from_pretrained_sharded",
    "init_opt_state",
    "make_sharded_train_step",
    "sharded_generate",
]

MESH_AXES = ("data", "model")

# Regex on the "/"-joined Flax path -> logical axes of the parameter's dimensions, first match
# wins. Flax layouts: BERT-family kernels are [in, out]; GPT-2's Conv1D kernels are [out, in].
PARTITION_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    # embeddings: [rows, width]
    (r"(word_embeddings|wte)/embedding$", ("vocab", "embed")),
    (r"(position_embeddings|wpe)/embedding$", ("positions", "embed")),
    (r"token_type_embeddings/embedding$", ("types", "embed")),
    (r"(LayerNorm|layer_norm|ln_1|ln_2|ln_cross_attn|ln_f)/(scale|bias)$", ("embed",)),
    # BERT-family attention (self and cross): query/key/value split by head, output by input
    (r"/self/(query|key|value)/kernel$", ("embed", "heads")),
    (r"/self/(query|key|value)/bias$", ("heads",)),
    (r"attention/output/dense/kernel$", ("heads", "embed")),
    (r"attention/output/dense/bias$", ("embed",)),
    # BERT-family feed-forward
    (r"intermediate/dense/kernel$", ("embed", "mlp")),
    (r"intermediate/dense/bias$", ("mlp",)),
    (r"layer/\d+/output/dense/kernel$", ("mlp", "embed")),
    (r"layer/\d+/output/dense/bias$", ("embed",)),
    # GPT-2 attention: fused query/key/value [3*embed or 2*embed, embed], output [embed, heads]
    (r"(attn|crossattention)/(c_attn|q_attn)/kernel$", ("heads", "embed")),
    (r"(attn|crossattention)/(c_attn|q_attn)/bias$", ("heads",)),
    (r"(attn|crossattention)/c_proj/kernel$", ("embed", "heads")),
    (r"(attn|crossattention)/c_proj/bias$", ("embed",)),
    # GPT-2 feed-forward
    (r"mlp/c_fc/kernel$", ("mlp", "embed")),
    (r"mlp/c_fc/bias$", ("mlp",)),
    (r"mlp/c_proj/kernel$", ("embed", "mlp")),
    (r"mlp/c_proj/bias$", ("embed",)),
    # LM heads (their projection is the tied word embeddings), pooler, the projection between halves
    (r"(predictions/transform|lm_head)/dense/kernel$", ("embed", "embed")),
    (r"(predictions/transform|lm_head)/dense/bias$", ("embed",)),
    (r"(cls/predictions|lm_head)/bias$", ("vocab",)),
    (r"(pooler/dense|enc_to_dec_proj)/kernel$", ("embed", "embed")),
    (r"(pooler/dense|enc_to_dec_proj)/bias$", ("embed",)),
    # ELECTRA: the embeddings' projection to the hidden width, the generator head (hidden -> embedding
    # width; its output projection is the tied word embeddings, or an untied [width, vocab] kernel)
    (r"(embeddings_project|generator_predictions/dense)/kernel$", ("embed", "embed")),
    (r"(embeddings_project|generator_predictions/dense)/bias$", ("embed",)),
    (r"generator_lm_head/kernel$", ("embed", "vocab")),
    # RemBERT: the embeddings' projection to the hidden width, the head (dense to the output embedding
    # width, then output embeddings of their own, [vocab, width] as an embedding table)
    (r"(embedding_hidden_mapping_in|cls/predictions/dense)/kernel$", ("embed", "embed")),
    (r"(embedding_hidden_mapping_in|cls/predictions/dense)/bias$", ("embed",)),
    (r"cls/predictions/decoder/embedding$", ("vocab", "embed")),
    (r"cls/predictions/decoder/bias$", ("vocab",)),
    # BART's decoder: tables, the embeddings' LayerNorm, attention split by head as BERT's, fc1/fc2 as
    # BERT's feed-forward
    (r"embed_tokens/embedding$", ("vocab", "embed")),
    (r"embed_positions/embedding$", ("positions", "embed")),
    (r"layernorm_embedding/(scale|bias)$", ("embed",)),
    (r"(self_attn|encoder_attn)/(q_proj|k_proj|v_proj)/kernel$", ("embed", "heads")),
    (r"(self_attn|encoder_attn)/(q_proj|k_proj|v_proj)/bias$", ("heads",)),
    (r"(self_attn|encoder_attn)/out_proj/kernel$", ("heads", "embed")),
    (r"(self_attn|encoder_attn)/out_proj/bias$", ("embed",)),
    (r"/fc1/kernel$", ("embed", "mlp")),
    (r"/fc1/bias$", ("mlp",)),
    (r"/fc2/kernel$", ("mlp", "embed")),
    (r"/fc2/bias$", ("embed",)),
)

# Logical axis -> mesh axis (None: replicated), as `flax.linen.logical_to_mesh` takes them.
LOGICAL_AXIS_RULES: tuple[tuple[str, Optional[str]], ...] = (
    ("batch", "data"),
    ("vocab", "model"),
    ("heads", "model"),
    ("mlp", "model"),
    ("embed", None),
    ("positions", None),
    ("types", None),
)

_COMPILED_RULES = [(re.compile(pattern), axes) for pattern, axes in PARTITION_RULES]


def make_mesh(data: int, model: int, devices: Optional[Sequence] = None) -> Mesh:
    """A `("data", "model")` mesh of `data * model` devices (default: the first ones of `jax.devices()`)."""
    devices = list(jax.devices() if devices is None else devices)
    if data < 1 or model < 1 or data * model > len(devices):
        raise ConfigError(f"a mesh of data={data} x model={model} needs {data * model} devices; "
                          f"expected at most the {len(devices)} present")
    return Mesh(np.array(devices[:data * model]).reshape(data, model), MESH_AXES)


def _path_str(path) -> str:
    return "/".join(str(getattr(key, "key", getattr(key, "idx", key))) for key in path)


def _logical_axes(path: str, ndim: int) -> tuple[str, ...]:
    for pattern, axes in _COMPILED_RULES:
        if pattern.search(path):
            if len(axes) != ndim:
                raise ConfigError(f"the partitioning rule {pattern.pattern!r} gives {len(axes)} axes {axes} to "
                                  f"{path}, which has {ndim} dimensions; expected one axis per dimension")
            return axes
    raise ConfigError(f"no partitioning rule matches the parameter {path}; expected a rule for it in "
                      "encdec.flax.distributed.PARTITION_RULES")


def param_logical_axes(params) -> dict:
    """The params tree with each leaf replaced by its logical axes (a tuple of names) from `PARTITION_RULES`.
    ConfigError naming the path of a parameter no rule matches."""
    return jax.tree_util.tree_map_with_path(lambda path, leaf: _logical_axes(_path_str(path), np.ndim(leaf)),
                                            params)


def _mesh_spec(axes: tuple[str, ...], shape: tuple[int, ...], mesh: Optional[Mesh]) -> PartitionSpec:
    """Logical axes -> PartitionSpec: a mesh axis is used once, and only where it divides the dimension."""
    mapping = dict(LOGICAL_AXIS_RULES)
    used, spec = set(), []
    for name, size in zip(axes, shape):
        if name not in mapping:
            raise ConfigError(f"the logical axis {name!r} has no mesh axis; expected one of {sorted(mapping)} "
                              "(encdec.flax.distributed.LOGICAL_AXIS_RULES)")
        axis = mapping[name]
        if axis is not None and (axis in used or (mesh is not None and size % mesh.shape[axis])):
            axis = None
        if axis is not None:
            used.add(axis)
        spec.append(axis)
    return PartitionSpec(*spec)


def param_partition_specs(params, mesh: Optional[Mesh] = None) -> dict:
    """The params tree of `PartitionSpec`s the rules give; with `mesh`, a dimension its mesh axis does
    not divide is replicated instead (leaves may be arrays or `jax.ShapeDtypeStruct`s)."""
    logical = param_logical_axes(params)
    return jax.tree_util.tree_map(lambda leaf, axes: _mesh_spec(axes, np.shape(leaf), mesh), params, logical,
                                  is_leaf=lambda x: isinstance(x, tuple) and all(isinstance(a, str) for a in x))


def _param_shardings(params, mesh: Mesh) -> dict:
    return jax.tree_util.tree_map(lambda spec: NamedSharding(mesh, spec), param_partition_specs(params, mesh),
                                  is_leaf=lambda x: isinstance(x, PartitionSpec))


def shard_params(params, mesh: Mesh) -> dict:
    """`params` (numpy or jax arrays) placed on `mesh` by the rules. From host (numpy) arrays each
    device receives only its own slice: a checkpoint read with `encdec.weights` loads straight
    into the sharded layout."""
    return jax.device_put(params, _param_shardings(params, mesh))


def from_pretrained_sharded(directory, mesh: Mesh, *, fmt: Optional[str] = None, config=None, **kwargs):
    """`FlaxEncoderDecoderModel.from_pretrained`, with the parameters placed on `mesh` by the rules
    straight from the host: the checkpoint is read into numpy (`encdec.weights`) and each device
    receives only its own slice of every tensor, never a full copy. Computes in float32; the
    parameters keep the checkpoint's dtype."""
    from ..weights.names import model_spec
    from ..weights.pretrained import read_model_folder
    from .encoder_decoder import FlaxEncoderDecoderModel

    folder = read_model_folder(directory, fmt=fmt, config=config, **kwargs)
    tree: dict = {}
    for p in model_spec(folder.config):  # stored parameters only: the model re-ties the others
        *parents, leaf = p.flax_path.split("/")
        node = tree
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = np.ascontiguousarray(p.to_flax(np.asarray(folder.state[p.name])))
    model = FlaxEncoderDecoderModel(folder.config, params=shard_params(tree, mesh))
    if folder.generation_config is not None:
        model.generation_config = folder.generation_config
    return model


def _batch_sharding(mesh: Mesh, batch: dict) -> dict:
    rows = {np.shape(v)[0] for v in batch.values()}
    size = mesh.shape["data"]
    if any(r % size for r in rows):
        raise InputError(f"the batch has {sorted(rows)} rows; expected a multiple of the mesh's data axis ({size})")
    return {k: NamedSharding(mesh, PartitionSpec("data", *([None] * (np.ndim(v) - 1)))) for k, v in batch.items()}


def shard_batch(batch: dict, mesh: Mesh) -> dict:
    """A batch dict of `[B, ...]` arrays split by rows over the mesh's "data" axis (B a multiple of it)."""
    return jax.device_put({k: np.asarray(v) for k, v in batch.items()}, _batch_sharding(mesh, batch))


def _opt_state_shardings(optimizer, params, mesh: Mesh):
    """The optimizer state laid out as the parameters it tracks; its other leaves (counts) replicated."""
    import optax

    shapes = jax.eval_shape(optimizer.init, params)
    replicated = NamedSharding(mesh, PartitionSpec())
    return optax.tree_utils.tree_map_params(
        optimizer, lambda _, sharding: sharding, shapes, _param_shardings(params, mesh),
        transform_non_params=lambda _: replicated,
    )


def init_opt_state(optimizer, params, mesh: Mesh):
    """`optimizer.init(params)`, each state tree laid out as the parameters (`shard_params`)."""
    return jax.jit(optimizer.init, out_shardings=_opt_state_shardings(optimizer, params, mesh))(params)


def make_sharded_train_step(model, optimizer, mesh: Mesh, params) -> Callable:
    """`step(params, opt_state, batch, dropout_rng=None) -> (params, opt_state, loss)`, one optax
    update (as `encdec.flax.training.make_train_step`) compiled with `jax.jit` for the mesh: params
    and optimizer state by the rules, the batch split over "data", the loss replicated. `params`
    (arrays or shapes) fixes the layout. Batches given as numpy are placed by `shard_batch`.
    """
    import optax

    param_sh = _param_shardings(params, mesh)
    opt_sh = _opt_state_shardings(optimizer, params, mesh)
    replicated = NamedSharding(mesh, PartitionSpec())
    compiled = {}

    def step(params, opt_state, batch, dropout_rng):
        train = dropout_rng is not None
        loss, grads = jax.value_and_grad(lambda p: loss_fn(model, p, batch, dropout_rng, train))(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    def sharded_step(params, opt_state, batch: dict, dropout_rng=None):
        key = (tuple(sorted(batch)), dropout_rng is None)
        if key not in compiled:
            batch_sh = _batch_sharding(mesh, batch)
            rng_sh = None if dropout_rng is None else replicated
            compiled[key] = jax.jit(step, in_shardings=(param_sh, opt_sh, batch_sh, rng_sh),
                                    out_shardings=(param_sh, opt_sh, replicated))
        return compiled[key](params, opt_state, shard_batch(batch, mesh), dropout_rng)

    return sharded_step


def sharded_generate(model, params, input_ids, attention_mask=None, *, mesh: Optional[Mesh] = None, **options):
    """`model.generate(input_ids, attention_mask, params=params, **options)` over a mesh: the
    parameters as they are sharded (from `shard_params`), the batch's rows split over the mesh's
    "data" axis. The jitted decode loop follows its arguments' shardings, so it runs data- and
    tensor-parallel at once. `mesh` defaults to the mesh of `params`. The rows must be a multiple
    of the data axis (InputError otherwise). Returns what `generate` returns; the ids are the
    single device's."""
    mesh = mesh if mesh is not None else _params_mesh(params)
    rows = np.shape(input_ids)[0]
    size = mesh.shape["data"]
    if rows % size:
        raise InputError(f"the batch has {rows} rows; expected a multiple of the mesh's data axis ({size})")
    rows_split = NamedSharding(mesh, PartitionSpec("data", None))
    return model.generate(input_ids, attention_mask, params=params, input_sharding=rows_split, **options)


def _params_mesh(params) -> Mesh:
    for leaf in jax.tree_util.tree_leaves(params):
        sharding = getattr(leaf, "sharding", None)
        if isinstance(sharding, NamedSharding):
            return sharding.mesh
    raise ConfigError("the params carry no mesh (they are not laid out by shard_params); expected "
                      "sharded_generate(..., mesh=mesh) or params from shard_params")
