"""One SGD step and generation of a tiny bert2bert on 8 virtual CPU devices, sharded by
encdec.flax.distributed, and on one device.

    python flax_dist_worker.py OUT_DIR DATAxMODEL [DATAxMODEL ...]

XLA_FLAGS asks for 8 host devices before jax is imported (only a fresh process can). Writes
OUT_DIR/single.npz and OUT_DIR/mesh_DxM.npz: loss, params/<path> (after the SGD step: with plain SGD
the update is -learning_rate times the gradient, so it compares the gradients),
greedy and beam ids, and for meshes the number of parameters split over "model" and the number of
row slices the decode loop's ids were split into (the data axis).
"""

from __future__ import annotations

import os
import pathlib
import sys

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import dist_lib  # noqa: E402

from encdec.flax import FlaxEncoderDecoderModel  # noqa: E402
from encdec.flax import distributed as fd  # noqa: E402
from encdec.flax.training import make_train_step  # noqa: E402

GENERATE = {"greedy": dict(max_length=9), "beam": dict(max_length=9, num_beams=3, num_return_sequences=2)}


def flat(tree, prefix):
    return {prefix + "/".join(k.key for k in path): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def run_single(model, batch):
    device = jax.devices()[0]
    params = jax.device_put(model.params, device)
    optimizer = optax.sgd(dist_lib.LEARNING_RATE)
    new_params, _, loss = jax.jit(make_train_step(model, optimizer))(params, optimizer.init(params), batch)
    out = {"loss": np.asarray(loss), **flat(new_params, "params/")}
    for name, options in GENERATE.items():
        out[name] = np.asarray(model.generate(batch["input_ids"], batch["attention_mask"], params=params,
                                              **options).sequences)
    return out


def run_mesh(model, batch, data, size):
    mesh = fd.make_mesh(data, size)
    params = fd.shard_params(jax.device_get(model.params), mesh)
    optimizer = optax.sgd(dist_lib.LEARNING_RATE)
    opt_state = fd.init_opt_state(optimizer, params, mesh)
    step = fd.make_sharded_train_step(model, optimizer, mesh, params)
    specs = fd.param_partition_specs(params, mesh)
    split = sum("model" in tuple(s) for s in jax.tree_util.tree_leaves(
        specs, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec)))
    new_params, _, loss = step(params, opt_state, batch)
    on_devices = {len(leaf.sharding.device_set) for leaf in jax.tree_util.tree_leaves(new_params)}
    out = {"loss": np.asarray(loss), **flat(new_params, "params/"),
           "model_split": np.asarray(split), "devices": np.asarray(sorted(on_devices))}
    for name, options in GENERATE.items():
        ids, row_slices = _with_loop_row_slices(lambda: fd.sharded_generate(
            model, params, batch["input_ids"], batch["attention_mask"], **options).sequences)
        out[name], out[f"{name}_row_slices"] = np.asarray(ids), np.asarray(row_slices)
    return out


def _with_loop_row_slices(call):
    """`call()`, and into how many row slices the decode loop's output ids were split: generate
    fetches the loop's outputs with jax.device_get, seen here before they leave the devices."""
    seen, real = [], jax.device_get

    def spy(x):
        if isinstance(x, dict) and "sequences" in x:
            seen.append(len({shard.index[0].indices(x["sequences"].shape[0]) for shard in x["sequences"].addressable_shards}))
        return real(x)

    jax.device_get = spy
    try:
        result = call()
    finally:
        jax.device_get = real
    return result, seen[-1]


def load_sharded(fixture: str) -> dict:
    """A transformers checkpoint loaded straight into a 2x4 layout: per parameter, the shape each
    device holds, and whether the values equal from_pretrained's on one device."""
    mesh = fd.make_mesh(2, 4)
    sharded = fd.from_pretrained_sharded(fixture, mesh)
    plain = FlaxEncoderDecoderModel.from_pretrained(fixture)
    out = {}
    for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(sharded.params)[0],
                            jax.tree_util.tree_leaves(plain.params)):
        name = "/".join(k.key for k in path)
        out[f"shard/{name}"] = np.asarray([s.data.shape for s in a.addressable_shards])
        out[f"full/{name}"] = np.asarray(a.shape)
        out[f"same/{name}"] = np.asarray(np.array_equal(np.asarray(a), np.asarray(b)))
    return out


def main() -> None:
    out_dir = pathlib.Path(sys.argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    config = dist_lib.model_config("plain", vocab=64)
    model = FlaxEncoderDecoderModel.from_state(config, dist_lib.model_state(config))
    batch = dist_lib.batches(config, steps=1, batch=8)[0]
    np.savez(out_dir / "single.npz", **run_single(model, batch))
    fixture = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "hf" / "bert2bert"
    np.savez(out_dir / "loaded.npz", **load_sharded(str(fixture)))
    for mesh in sys.argv[2:]:
        data, size = (int(n) for n in mesh.split("x"))
        np.savez(out_dir / f"mesh_{mesh}.npz", **run_mesh(model, batch, data, size))


if __name__ == "__main__":
    main()
