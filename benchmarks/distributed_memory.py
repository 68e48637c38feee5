"""Memory per device of a bert-base-sized bert2bert (random weights): FSDP2 against DDP, and JAX
tensor-parallel sharding against replicated parameters.

    python benchmarks/distributed_memory.py [--layers 12] [--hidden 768]

PyTorch: 2 gloo processes on the CPU, each one Adam step on 2 rows of 16 tokens under plain
`DistributedDataParallel` and under FSDP2 (`encdec.pt.distributed.fully_shard_model`); per rank,
the bytes of its parameters, gradients and optimizer state (a DTensor counts its local shard), and
the process's peak RSS (which also holds activations, DDP's gradient buckets, the framework).

JAX: 8 virtual CPU devices, the parameters placed by `encdec.flax.distributed.shard_params` on the
meshes 8x1 (replicated: "model" of size 1), 2x4 and 1x8; per device, the bytes of the shards it
holds (`addressable_shards`), the largest over the devices.

Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile

REPO = str(pathlib.Path(__file__).resolve().parent.parent)
WORLD = 2
MESHES = ("8x1", "2x4", "1x8")
MB = 1e6
sys.path.insert(0, REPO)  # encdec from this checkout


def make_config(layers: int, hidden: int):
    from encdec.config import BertConfig, EncoderDecoderConfig

    encoder, decoder = (BertConfig(hidden_size=hidden, num_hidden_layers=layers, intermediate_size=4 * hidden,
                                   num_attention_heads=max(1, hidden // 64))  # vocabulary 30522, as bert-base
                        for _ in range(2))  # two objects: joining marks the decoder's config as a decoder
    return EncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder, decoder_start_token_id=101,
                                                             pad_token_id=0)


def _local_bytes(tensor) -> int:
    """Bytes this rank holds: a DTensor's local shard, else the whole tensor."""
    local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
    return local.numel() * local.element_size()


def _torch_rank(rank: int, mode: str, layers: int, hidden: int, store: str, out: str) -> None:
    import numpy as np
    import torch
    import torch.distributed as dist

    from encdec.pt import EncoderDecoderModel
    from encdec.pt.distributed import fully_shard_model

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    torch.manual_seed(0)
    model = EncoderDecoderModel(config=make_config(layers, hidden)).train()
    wrapped = torch.nn.parallel.DistributedDataParallel(model) if mode == "ddp" else fully_shard_model(model)
    optimizer = torch.optim.Adam(wrapped.parameters(), lr=1e-4)
    rng = np.random.default_rng(rank)
    ids = torch.from_numpy(rng.integers(1000, 2000, (2, 16)))
    loss = wrapped(input_ids=ids, labels=ids).loss
    loss.backward()
    optimizer.step()  # gradients are kept: the table counts them as they are at the step
    params = list(wrapped.parameters())
    row = {
        "params": sum(_local_bytes(p) for p in params),
        "grads": sum(_local_bytes(p.grad) for p in params if p.grad is not None),
        "optimizer": sum(_local_bytes(v) for s in optimizer.state.values() for v in s.values()
                         if torch.is_tensor(v) and v.dim() > 0),
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # Linux: KiB
        "count": sum(p.numel() for p in model.parameters()) if mode == "ddp" else None,
    }
    rows = [None] * WORLD
    dist.all_gather_object(rows, row)
    if rank == 0:
        pathlib.Path(out).write_text(json.dumps(rows))
    dist.barrier()
    dist.destroy_process_group()


def torch_rows(layers: int, hidden: int) -> dict:
    import torch.multiprocessing as mp

    out = {}
    for mode in ("ddp", "fsdp"):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "rows.json")
            mp.spawn(_torch_rank, args=(mode, layers, hidden, os.path.join(tmp, "store"), path), nprocs=WORLD,
                     join=True)
            out[mode] = json.loads(pathlib.Path(path).read_text())
    return out


def jax_rows(layers: int, hidden: int) -> dict:
    """In this process, started with 8 virtual devices: bytes per device for each mesh."""
    import jax
    import numpy as np

    from encdec.flax import FlaxEncoderDecoderModel
    from encdec.flax import distributed as fd

    config = make_config(layers, hidden)
    shapes = jax.eval_shape(lambda: FlaxEncoderDecoderModel(config).params)
    host = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), shapes)  # bytes do not depend on values
    total = sum(leaf.nbytes for leaf in jax.tree_util.tree_leaves(host))
    out = {"total": total}
    for name in MESHES:
        data, size = (int(n) for n in name.split("x"))
        params = fd.shard_params(host, fd.make_mesh(data, size))
        per_device: dict = {}
        for leaf in jax.tree_util.tree_leaves(params):
            for shard in leaf.addressable_shards:
                per_device[shard.device.id] = per_device.get(shard.device.id, 0) + shard.data.nbytes
        out[name] = max(per_device.values())
        del params
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--jax-only", action="store_true", help=argparse.SUPPRESS)  # the virtual-device process
    args = parser.parse_args()
    if args.jax_only:
        print(json.dumps(jax_rows(args.layers, args.hidden)))
        return
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8")
    jax_out = json.loads(subprocess.run([sys.executable, __file__, "--jax-only", "--layers", str(args.layers),
                                         "--hidden", str(args.hidden)], env=env, check=True, capture_output=True,
                                        text=True).stdout.splitlines()[-1])
    pt = torch_rows(args.layers, args.hidden)
    count = pt["ddp"][0]["count"]
    print(f"bert2bert, hidden {args.hidden}, {args.layers} layers per half: {count / 1e6:.1f}M parameters, "
          f"{jax_out['total'] / MB:.1f} MB in float32\n")
    print("| engine | layout | parameters / device | gradients / device | Adam state / device | "
          "sum / device | peak RSS / process |")
    print("|---|---|---|---|---|---|---|")
    for mode, label in (("ddp", "DDP, 2 processes"), ("fsdp", "FSDP2, 2 processes")):
        worst = max(pt[mode], key=lambda r: r["params"] + r["grads"] + r["optimizer"])
        peak = max(r["peak_rss"] for r in pt[mode])
        held = worst["params"] + worst["grads"] + worst["optimizer"]
        print(f"| PyTorch | {label} | {worst['params'] / MB:.1f} MB | {worst['grads'] / MB:.1f} MB | "
              f"{worst['optimizer'] / MB:.1f} MB | {held / MB:.1f} MB | {peak / MB:.1f} MB |")
    for name in MESHES:
        label = "replicated (8x1)" if name.endswith("x1") else f"tensor parallel ({name})"
        print(f"| JAX | {label}, 8 devices | {jax_out[name] / MB:.1f} MB | | | | |")


if __name__ == "__main__":
    main()
