"""Distributed mode of the conformance suite: the same step sharded and on one device.

    encdec conformance --distributed [--frameworks pt,tf,flax]

For each engine, one SGD step of a seeded tiny bert2bert (no dropout) on one global batch, then
the logits of the updated model on that batch and its greedy and beam ids, once on one device
and once sharded:

- pt: 2 gloo processes on the CPU (`torch.multiprocessing.spawn`), plain `DistributedDataParallel`
  and FSDP2 (`encdec.pt.distributed.fully_shard_model`);
- flax: 8 virtual CPU devices (`--xla_force_host_platform_device_count=8`), meshes 8x1, 4x2, 2x4
  (`encdec.flax.distributed`);
- tf: 2 logical CPU devices, `MirroredStrategy` with Keras `fit` (`encdec.tf.distributed`).

Each engine runs in a fresh interpreter (`python -m encdec.conformance.distributed ENGINE OUT_DIR`),
since device counts and process groups must be set before the framework starts; it writes one
.npz per run, and this process compares them with the tolerance table: loss (relative), the
updated parameters (each parameter's update, measured as gradients are), logits (max abs diff),
ids (identical). One line per comparison; exit status 0 when all agree, 1 otherwise.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

from . import tolerances as tol
from .compare import Comparison, compare_generated, compare_gradients, max_abs_diff, rel_diff

ENGINES = ("pt", "flax", "tf")
PT_MODES = ("ddp", "fsdp")
FLAX_MESHES = ("8x1", "4x2", "2x4")
WORLD = 2  # torch processes, TF logical devices
GLOBAL_BATCH = 8  # rows: divisible by every mesh's "data" axis and by WORLD
LEARNING_RATE = 0.05  # large enough to move every parameter, small enough that generation stays varied
SEED = 3
GENERATE = {"greedy": dict(max_length=9), "beam": dict(max_length=9, num_beams=3, num_return_sequences=2)}


# ---------------------------------------------------------------------------------- the case


def case_config():
    """A tiny bert2bert without dropout (a deterministic step), vocabulary 64 so that a "model" axis
    of 2 or 4 splits the embeddings."""
    from encdec.config import EncoderDecoderConfig

    from .cases import _SPECIAL, tiny_arch

    # two objects: joining marks the decoder's config object as a decoder, as transformers does
    encoder, decoder = (tiny_arch("bert", vocab_size=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
                        for _ in range(2))
    start, eos, pad = _SPECIAL["bert"]
    return EncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder, decoder_start_token_id=start,
                                                             eos_token_id=eos, pad_token_id=pad)


def case_state(config) -> dict[str, np.ndarray]:
    from .cases import seeded_state

    return seeded_state(config, SEED)


def global_batch(config) -> dict[str, np.ndarray]:
    """int64 input_ids, attention_mask (ragged) and labels. Every label is a real token and every row
    has as many, so the mean of the shards' mean losses is the global batch's mean loss."""
    rng = np.random.default_rng(SEED)
    vocab = config.encoder.vocab_size
    ids = rng.integers(4, vocab, (GLOBAL_BATCH, 7))
    lengths = rng.integers(3, 8, GLOBAL_BATCH)
    mask = (np.arange(7)[None, :] < lengths[:, None]).astype(np.int64)
    ids = np.where(mask == 1, ids, config.pad_token_id)
    labels = rng.integers(4, config.decoder.vocab_size, (GLOBAL_BATCH, 5))
    return dict(input_ids=ids, attention_mask=mask, labels=labels)


def shard_rows(batch: dict, rank: int, world: int) -> dict:
    """Rank `rank`'s contiguous slice of the rows of a global batch."""
    rows = len(batch["input_ids"]) // world
    return {k: v[rank * rows:(rank + 1) * rows] for k, v in batch.items()}


# ---------------------------------------------------------------------------------- PyTorch


def _updates(after: dict, before: dict) -> dict:
    """`update/<name>`: each parameter after the step minus before it."""
    return {f"update/{k}": np.asarray(v) - before[k] for k, v in after.items()}


def _pt_run(model, optimizer, batch, generate_model, rank, world):
    import torch
    import torch.distributed as dist

    from encdec.pt.distributed import unsharded

    local = batch if world == 1 else shard_rows(batch, rank, world)
    out = model(**{k: torch.from_numpy(v) for k, v in local.items()})
    optimizer.zero_grad()
    out.loss.backward()
    optimizer.step()
    loss = out.loss.detach().clone()
    if world > 1:
        dist.all_reduce(loss)  # the global batch's loss: the mean of the ranks' (equal-sized) means
    result = {"loss": np.asarray(float(loss) / world)}
    model.eval()
    with torch.no_grad():
        # every rank runs the whole batch: FSDP2 gathers each group's parameters as it goes
        logits = model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits
        result["logits"] = logits.numpy()
        for name, options in GENERATE.items():
            with unsharded(model):  # FSDP2: generate calls parts outside their groups' forward
                result[name] = generate_model.generate(torch.from_numpy(batch["input_ids"]),
                                                       torch.from_numpy(batch["attention_mask"]),
                                                       **options).numpy()
    return result


def _pt_worker(rank: int, mode: str, out_dir: str, store: str) -> None:
    import torch
    import torch.distributed as dist

    from encdec.pt import EncoderDecoderModel
    from encdec.pt.distributed import full_state_dict, fully_shard_model

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    config = case_config()
    model = EncoderDecoderModel.from_state(config, case_state(config)).train()
    wrapped = torch.nn.parallel.DistributedDataParallel(model) if mode == "ddp" else fully_shard_model(model)
    optimizer = torch.optim.SGD(wrapped.parameters(), lr=LEARNING_RATE)
    result = _pt_run(wrapped, optimizer, global_batch(config), model, rank, WORLD)
    state = full_state_dict(wrapped)
    if rank == 0:
        result.update(_updates(state, case_state(config)))
        np.savez(pathlib.Path(out_dir) / f"pt_{mode}.npz", **result)
    dist.barrier()
    dist.destroy_process_group()


def run_pt(out_dir: str) -> None:
    import torch
    import torch.multiprocessing as mp

    from encdec.pt import EncoderDecoderModel

    config = case_config()
    model = EncoderDecoderModel.from_state(config, case_state(config)).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    result = _pt_run(model, optimizer, global_batch(config), model, 0, 1)
    result.update(_updates(model.canonical_state(), case_state(config)))
    np.savez(pathlib.Path(out_dir) / "pt_single.npz", **result)
    for mode in PT_MODES:
        with tempfile.TemporaryDirectory() as tmp:
            mp.spawn(_pt_worker, args=(mode, out_dir, os.path.join(tmp, "store")), nprocs=WORLD, join=True)


# ---------------------------------------------------------------------------------- JAX / Flax


def run_flax(out_dir: str, meshes=FLAX_MESHES) -> None:
    import jax
    import optax

    from encdec.flax import FlaxEncoderDecoderModel
    from encdec.flax import distributed as fd
    from encdec.flax.training import make_train_step

    config = case_config()
    model = FlaxEncoderDecoderModel.from_state(config, case_state(config))
    batch = global_batch(config)
    optimizer = optax.sgd(LEARNING_RATE)

    def flat(tree) -> dict:
        return {"/".join(k.key for k in path): np.asarray(leaf)
                for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}

    before = flat(model.params)

    def finish(params, loss, generate):
        new_logits = jax.jit(lambda p: model(**batch, params=p).logits)(params)
        result = {"loss": np.asarray(loss), "logits": np.asarray(new_logits)}
        for name, options in GENERATE.items():
            result[name] = np.asarray(generate(params, **options).sequences)
        result.update(_updates(flat(params), before))
        return result

    params = jax.device_put(model.params, jax.devices()[0])
    new, _, loss = jax.jit(make_train_step(model, optimizer))(params, optimizer.init(params), batch)
    single = finish(new, loss, lambda p, **o: model.generate(batch["input_ids"], batch["attention_mask"],
                                                              params=p, **o))
    np.savez(pathlib.Path(out_dir) / "flax_single.npz", **single)
    for mesh_name in meshes:
        data, size = (int(n) for n in mesh_name.split("x"))
        mesh = fd.make_mesh(data, size)
        params = fd.shard_params(jax.device_get(model.params), mesh)
        step = fd.make_sharded_train_step(model, optimizer, mesh, params)
        new, _, loss = step(params, fd.init_opt_state(optimizer, params, mesh), batch)
        result = finish(new, loss, lambda p, **o: fd.sharded_generate(model, p, batch["input_ids"],
                                                                       batch["attention_mask"], **o))
        np.savez(pathlib.Path(out_dir) / f"flax_{mesh_name}.npz", **result)


# ---------------------------------------------------------------------------------- TensorFlow


def run_tf(out_dir: str) -> None:
    import keras
    import tensorflow as tf

    from encdec.tf import TFEncoderDecoderModel
    from encdec.tf import distributed as td

    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    config = case_config()
    batch = {k: v.astype(np.int32) for k, v in global_batch(config).items()}
    runs = {"single": tf.distribute.OneDeviceStrategy(devices[0]), "mirrored": td.mirrored_strategy(devices)}
    for name, strategy in runs.items():
        model = td.build_model(strategy, TFEncoderDecoderModel.from_state, config, case_state(config))
        with strategy.scope():
            model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE), jit_compile=False)
        data = tf.data.Dataset.from_tensor_slices(batch).batch(GLOBAL_BATCH)
        history = model.fit(data, epochs=1, verbose=0, shuffle=False)
        result = {"loss": np.asarray(history.history["loss"][-1])}
        with strategy.scope():
            result["logits"] = np.asarray(model(batch, training=False).logits)
            for gen, options in GENERATE.items():
                result[gen] = np.asarray(model.generate(batch["input_ids"], batch["attention_mask"], **options))
        result.update(_updates(model.canonical_state(), case_state(config)))
        np.savez(pathlib.Path(out_dir) / f"tf_{name}.npz", **result)


def installed_engines() -> list[str]:
    """The engines whose framework is installed (flax needs optax too)."""
    import importlib.util

    needs = {"pt": ("torch",), "flax": ("jax", "flax", "optax"), "tf": ("tensorflow", "keras")}
    return [e for e in ENGINES if all(importlib.util.find_spec(m) is not None for m in needs[e])]


def _engine_main(engine: str, out_dir: str) -> None:
    """The fresh interpreter's side: set the devices up before the framework starts, then run."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if engine == "pt":
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        run_pt(out_dir)
    elif engine == "flax":
        os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
        os.environ["JAX_PLATFORMS"] = "cpu"
        run_flax(out_dir)
    elif engine == "tf":
        import tensorflow as tf

        tf.config.set_logical_device_configuration(
            tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * WORLD)
        run_tf(out_dir)
    else:
        raise SystemExit(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")


# ---------------------------------------------------------------------------------- comparing


def _load(path: pathlib.Path) -> dict:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def sharded_runs(engine: str) -> list[str]:
    return {"pt": [f"pt_{m}" for m in PT_MODES], "flax": [f"flax_{m}" for m in FLAX_MESHES],
            "tf": ["tf_mirrored"]}[engine]


def compare_runs(sharded: dict, single: dict, run: str, reference: str, pad: int) -> list[Comparison]:
    """The sharded run against the single device: loss, each parameter's update, logits, ids."""
    ctx = dict(case="distributed", frameworks=(run, reference), device="cpu", dtype="float32")
    loss = rel_diff(sharded["loss"], single["loss"])
    out = [Comparison(**ctx, item="step", output="loss", metric="rel_diff", value=loss, tolerance=tol.FP32_LOSS_REL,
                      passed=tol.Check("rel_diff", tol.FP32_LOSS_REL).passes(loss))]
    # With SGD the update is -learning rate x gradient: it is measured as gradients are.
    updates = [{k[len("update/"):]: v for k, v in r.items() if k.startswith("update/")} for r in (sharded, single)]
    out += [dict_replace(c, item="step/updated_params") for c in compare_gradients(*updates, {**ctx, "item": ""})]
    logits = max_abs_diff(sharded["logits"], single["logits"])
    check = tol.Check("max_abs_diff", tol.FP32_ACTIVATION_TINY)
    out.append(Comparison(**ctx, item="forward", output="logits", metric=check.metric, value=logits,
                          tolerance=check.bound, passed=check.passes(logits)))
    for name in GENERATE:
        out.append(dict_replace(compare_generated(sharded[name], single[name], {**ctx, "item": ""}, pad),
                                item=f"generate/{name}"))
    return out


def dict_replace(comparison: Comparison, **changes) -> Comparison:
    import dataclasses

    return dataclasses.replace(comparison, **changes)


def run_distributed(engines=ENGINES, work_dir: str | None = None, timeout: float = 1800) -> list[Comparison]:
    """Run each engine in a fresh interpreter and compare its sharded runs with its single device.
    An engine whose worker fails gives one failed comparison holding the end of its output."""
    comparisons = []
    pad = case_config().pad_token_id
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = pathlib.Path(work_dir or tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        for engine in engines:
            proc = subprocess.run([sys.executable, "-m", "encdec.conformance.distributed", engine, str(out_dir)],
                                  capture_output=True, text=True, timeout=timeout)
            if proc.returncode != 0:
                comparisons.append(Comparison(
                    case="distributed", item="run", frameworks=(engine, engine), device="cpu", dtype="float32",
                    output="exit_status", metric="exit_status", value=float(proc.returncode), tolerance=0.0,
                    passed=False, note=(proc.stdout[-2000:] + proc.stderr[-4000:]).strip()))
                continue
            single = _load(out_dir / f"{engine}_single.npz")
            for run in sharded_runs(engine):
                comparisons += compare_runs(_load(out_dir / f"{run}.npz"), single, run, f"{engine}_single", pad)
    return comparisons


def format_comparison(c: Comparison) -> str:
    value = "-" if c.value is None else f"{c.value:.3g}"
    bound = "" if c.tolerance is None else f" (bound {c.tolerance:g})"
    line = f"{'ok  ' if c.passed else 'FAIL'} {c.frameworks[0]} vs {c.frameworks[1]}  {c.item}  {c.output}  " \
           f"{c.metric} {value}{bound}"
    return line + (f"  {c.note}" if c.note and not c.passed else "")


def main(engines=ENGINES) -> int:
    """Print one line per comparison and a summary; 0 when every one agrees, else 1."""
    comparisons = run_distributed(engines)
    for c in comparisons:
        print(format_comparison(c))
    failed = sum(not c.passed for c in comparisons)
    print(f"distributed: {len(comparisons) - failed} of {len(comparisons)} comparisons agree")
    return 0 if comparisons and not failed else 1


if __name__ == "__main__":
    _engine_main(*sys.argv[1:3])
