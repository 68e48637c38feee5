"""Train a tiny bert2bert on a copy task with 2 processes on the CPU: plain DDP or FSDP2.

    torchrun --nproc-per-node 2 examples/distributed_torch.py --mode ddp
    torchrun --nproc-per-node 2 examples/distributed_torch.py --mode fsdp --tie --save /tmp/fsdp-model

Each process takes its half of every global batch. DDP needs no find_unused_parameters;
FSDP2 shards every layer (a tied encoder/decoder layer pair is one group). The folder
`--save` writes is the one a single process writes (rank 0 gathers the full weights).
At the end every rank generates from the trained model (`unsharded` for FSDP2).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.distributed as dist

from encdec.config import BertConfig, EncoderDecoderConfig
from encdec.pt import EncoderDecoderModel
from encdec.pt.distributed import fully_shard_model, save_pretrained, unsharded

PAD, START, VOCAB, LENGTH = 0, 1, 24, 8


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=("ddp", "fsdp"), default="ddp")
    parser.add_argument("--tie", action="store_true", help="tie_encoder_decoder=True")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--save", default=None)
    args = parser.parse_args()
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    arch = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=16)
    # a copy for the decoder: joining marks the decoder config object as a decoder
    config = EncoderDecoderConfig.from_encoder_decoder_configs(
        arch, arch.copy(), decoder_start_token_id=START, pad_token_id=PAD, tie_encoder_decoder=args.tie)
    model = EncoderDecoderModel(config=config).train()  # the same random weights on every rank (seed 0)
    if args.mode == "ddp":
        model = torch.nn.parallel.DistributedDataParallel(model)
    else:
        model = fully_shard_model(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)  # the same global batches on every rank; each takes its rows
    for step in range(args.steps):
        ids = torch.from_numpy(rng.integers(3, VOCAB, (8 * world, LENGTH)))
        local = ids.chunk(world)[rank]
        loss = model(input_ids=local, labels=local).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if rank == 0 and step % 10 == 0:
            print(f"step {step}: loss {loss.item():.3f}")
    # every rank generates the same rows: under FSDP2, generate calls the model's parts outside
    # their groups' forward, so their full parameters are gathered for it
    bare = model.module if args.mode == "ddp" else model
    with torch.no_grad(), unsharded(model):
        out = bare.eval().generate(ids[:2], max_length=LENGTH + 1)
    if rank == 0:
        print(f"input     {ids[:2].tolist()}\ngenerated {out[:, 1:].tolist()}")
    if args.save:
        save_pretrained(model, args.save)  # every rank calls it; rank 0 writes
        if rank == 0:
            print(f"saved to {args.save}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
