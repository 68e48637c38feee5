"""JAX/Flax over a device mesh (`encdec.flax.distributed`): the rules table covers every parameter,
and a sharded SGD step and generation equal the single device's on 8 virtual CPU devices.

The mesh tests run tests/distributed/flax_dist_worker.py in a fresh interpreter, since the
virtual device count (XLA_FLAGS) must be set before jax starts.
"""

from __future__ import annotations


import numpy as np
import pytest

pytest.importorskip("flax")
pytest.importorskip("optax")

import dist_lib  # noqa: E402
import jax  # noqa: E402
from jax.sharding import AbstractMesh, PartitionSpec  # noqa: E402

from conftest import FIXTURES  # noqa: E402
from encdec.config import EncoderDecoderConfig  # noqa: E402
from encdec.conformance.tolerances import FP32_GRAD_REL, FP32_LOSS_REL  # noqa: E402
from encdec.errors import ConfigError  # noqa: E402
from encdec.flax import FlaxEncoderDecoderModel  # noqa: E402
from encdec.flax import distributed as fd  # noqa: E402
from tiny_models import PAIRS  # noqa: E402

MESHES = ("2x4", "4x2", "8x1")  # model-heavy, data-heavy, data only


def _leaves(tree):
    return jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: isinstance(x, PartitionSpec))[0]


@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_rules_cover_every_parameter_with_valid_specs(pair):
    mesh = AbstractMesh((2, 4), fd.MESH_AXES)
    variants = ["plain", "proj"] + (["tie"] if PAIRS[pair][0] == PAIRS[pair][1] else [])
    for variant in variants:
        config = dist_lib.model_config(variant, pair=pair, vocab=64)
        params = jax.eval_shape(lambda: FlaxEncoderDecoderModel(config).params)
        specs = fd.param_partition_specs(params, mesh)  # ConfigError for a parameter without a rule
        shapes = {jax.tree_util.keystr(p): leaf.shape for p, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}
        split = 0
        for path, spec in _leaves(specs):
            shape = shapes[jax.tree_util.keystr(path)]
            assert len(spec) == len(shape), (path, spec, shape)
            named = [axis for axis in spec if axis is not None]
            assert len(named) == len(set(named)) and set(named) <= {"model"}, (path, spec)
            assert all(axis is None or size % mesh.shape[axis] == 0 for axis, size in zip(spec, shape)), (path, spec)
            split += bool(named)
        # the tensor-parallel rules really split the layers (widths of 16 or more, vocab 64)
        assert split >= len(shapes) // 3, (pair, variant, split, len(shapes))


@pytest.mark.parametrize("fixture", ["electra2electra", "bert2bart_proj", "rembert2rembert", "xlmr2xlmr"])
def test_rules_cover_every_parameter_of_the_other_architectures(fixture):
    config = EncoderDecoderConfig.from_pretrained(FIXTURES / fixture)
    params = jax.eval_shape(lambda: FlaxEncoderDecoderModel(config).params)
    mesh = AbstractMesh((2, 4), fd.MESH_AXES)
    specs = fd.param_partition_specs(params, mesh)  # ConfigError for a parameter without a rule
    shapes = [leaf.shape for leaf in jax.tree_util.tree_leaves(params)]
    assert [len(spec) for _, spec in _leaves(specs)] == [len(shape) for shape in shapes]


def test_a_parameter_without_a_rule_is_an_error():
    params = {"encoder": {"new_block": {"kernel": np.zeros((4, 4))}}}
    with pytest.raises(ConfigError, match="encoder/new_block/kernel"):
        fd.param_partition_specs(params)


def test_rule_axes_follow_the_flax_layouts():
    """Megatron layout: qkv and feed-forward input split by output, their outputs by input."""
    expected = {
        "decoder/bert/encoder/layer/0/attention/self/query/kernel": PartitionSpec(None, "model"),
        "decoder/bert/encoder/layer/0/attention/output/dense/kernel": PartitionSpec("model", None),
        "decoder/bert/encoder/layer/0/intermediate/dense/kernel": PartitionSpec(None, "model"),
        "decoder/bert/encoder/layer/0/output/dense/kernel": PartitionSpec("model", None),
        "decoder/bert/embeddings/word_embeddings/embedding": PartitionSpec("model", None),
        "decoder/transformer/h/0/attn/c_attn/kernel": PartitionSpec("model", None),  # GPT-2: [out, in]
        "decoder/transformer/h/0/mlp/c_proj/kernel": PartitionSpec(None, "model"),
        "encoder/pooler/dense/kernel": PartitionSpec(None, None),
    }
    found = {}
    for pair in ("bert2bert", "bert2gpt2"):
        config = dist_lib.model_config("plain", pair=pair, vocab=64)
        params = jax.eval_shape(lambda: FlaxEncoderDecoderModel(config).params)
        for path, spec in _leaves(fd.param_partition_specs(params)):
            found["/".join(k.key for k in path)] = spec
    assert {k: found[k] for k in expected} == expected


def _load(path):
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def _part(result, prefix):
    return {k: v for k, v in result.items() if k.startswith(prefix)}


@pytest.mark.slow
def test_sharded_step_and_generation_equal_one_device(tmp_path):
    dist_lib.run_worker("flax_dist_worker.py", str(tmp_path), *MESHES, timeout=1800)
    single = _load(tmp_path / "single.npz")
    before = None
    for mesh in MESHES:
        sharded = _load(tmp_path / f"mesh_{mesh}.npz")
        assert list(sharded["devices"]) == [8], mesh  # every parameter lives on all 8 devices
        if not mesh.endswith("x1"):  # a "model" axis of 2 or 4 splits the layers
            assert int(sharded["model_split"]) > 0, mesh
        a, b = float(sharded["loss"]), float(single["loss"])
        assert abs(a - b) / max(abs(a), abs(b)) <= FP32_LOSS_REL, (mesh, a, b)
        # updated params: the SGD update (params after - before = -learning rate x gradient),
        # measured as the tolerance table measures gradients
        if before is None:
            config = dist_lib.model_config("plain", vocab=64)
            model = FlaxEncoderDecoderModel.from_state(config, dist_lib.model_state(config))
            before = {"params/" + "/".join(k.key for k in p): np.asarray(v)
                      for p, v in jax.tree_util.tree_flatten_with_path(model.params)[0]}
        updates = {k: v - before[k] for k, v in _part(sharded, "params/").items()}
        reference = {k: v - before[k] for k, v in _part(single, "params/").items()}
        diffs = dist_lib.grad_rel_diffs(updates, reference)
        worst = max(diffs, key=diffs.get)
        assert diffs[worst] <= FP32_GRAD_REL, (mesh, worst, diffs[worst])
        for name in ("greedy", "beam"):
            np.testing.assert_array_equal(sharded[name], single[name], err_msg=f"{mesh} {name}")
            # the batch is searched data-parallel: the loop's rows lie in as many slices as the data axis
            assert int(sharded[f"{name}_row_slices"]) == int(mesh.split("x")[0]), (mesh, name)
    # a transformers checkpoint loaded straight into the 2x4 layout: the same values, and each
    # device holding a quarter of every split parameter (never the whole tensor)
    loaded = _load(tmp_path / "loaded.npz")
    names = [k[len("same/"):] for k in loaded if k.startswith("same/")]
    assert all(bool(loaded[f"same/{n}"]) for n in names)
    split = 0
    for n in names:
        shards, full = loaded[f"shard/{n}"], tuple(loaded[f"full/{n}"])
        assert len(shards) == 8
        if any(tuple(s) != full for s in shards):
            split += 1
            assert all(int(np.prod(s)) * 4 == int(np.prod(full)) for s in shards), (n, shards, full)
    assert split >= len(names) // 3, (split, len(names))
