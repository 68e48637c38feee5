"""Two gloo processes on the CPU take `STEPS` SGD steps of a tiny bert2bert under DDP or FSDP2.

    python pt_dist_worker.py {ddp|fsdp} {plain|tie} OUT_DIR

Rank 0 writes OUT_DIR/step{i}.npz (the canonical state after step i), OUT_DIR/losses.npy (the
global batch's loss at each step, the mean over the ranks), and for fsdp OUT_DIR/saved (from
encdec.pt.distributed.save_pretrained) and OUT_DIR/direct.npz (each parameter gathered by
DTensor.full_tensor, a path that does not go through full_state_dict).
"""

from __future__ import annotations

import os
import pathlib
import sys
import tempfile

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import dist_lib  # noqa: E402

WORLD = 2


def train(model, config, step_batches, rank, world, optimizer):
    losses = []
    for batch in step_batches:
        local = dist_lib.shard_rows(batch, rank, world)
        out = model(**{k: torch.from_numpy(v) for k, v in local.items()})
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        loss = out.loss.detach().clone()
        dist.all_reduce(loss)
        losses.append(float(loss) / world)
        yield losses


def worker(rank: int, mode: str, variant: str, out_dir: str, store_file: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store_file}", rank=rank, world_size=WORLD)
    from encdec.pt import EncoderDecoderModel
    from encdec.pt.distributed import full_state_dict, fully_shard_model, save_pretrained

    config = dist_lib.model_config(variant)
    model = EncoderDecoderModel.from_state(config, dist_lib.model_state(config)).train()
    if mode == "ddp":
        # plain DDP: no find_unused_parameters
        wrapped = torch.nn.parallel.DistributedDataParallel(model)
    elif mode == "fsdp":
        wrapped = fully_shard_model(model)
    else:
        raise SystemExit(f"unknown mode {mode!r}; expected ddp or fsdp")
    optimizer = torch.optim.SGD(wrapped.parameters(), lr=dist_lib.LEARNING_RATE)
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    losses = []
    for step, losses in enumerate(train(wrapped, config, dist_lib.batches(config), rank, WORLD, optimizer), 1):
        state = full_state_dict(wrapped)
        if rank == 0:
            np.savez(out / f"step{step}.npz", **state)
    if rank == 0:
        np.save(out / "losses.npy", np.array(losses))
    if mode == "fsdp":
        save_pretrained(wrapped, out / "saved")
        direct, full = {}, {}
        for name, param in model.named_parameters(remove_duplicate=False):  # every name of a tied parameter
            if id(param) not in full:
                full[id(param)] = param.full_tensor().detach().numpy().copy()
            direct[name] = full[id(param)]
        if rank == 0:
            np.savez(out / "direct.npz", **direct)
    dist.barrier()
    dist.destroy_process_group()


def main() -> None:
    mode, variant, out_dir = sys.argv[1:4]
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(worker, args=(mode, variant, out_dir, os.path.join(tmp, "store")), nprocs=WORLD, join=True)


if __name__ == "__main__":
    main()
