"""Train a tiny bert2bert with its parameters sharded over a ("data", "model") mesh, then generate.

On one CPU machine, 8 virtual devices:

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python examples/distributed_flax.py --mesh 2x4

The rules table of encdec.flax.distributed lays every parameter out (heads, feed-forward and
vocabulary split over "model"); each batch is split over "data".
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from encdec.config import BertConfig, EncoderDecoderConfig  # noqa: E402
from encdec.flax import FlaxEncoderDecoderModel  # noqa: E402
from encdec.flax import distributed as fd  # noqa: E402

PAD, START, EOS, VOCAB, LENGTH = 0, 1, 2, 24, 8


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mesh", default="2x4", help="DATAxMODEL, e.g. 8x1, 4x2, 2x4")
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    data, size = (int(n) for n in args.mesh.split("x"))
    mesh = fd.make_mesh(data, size)
    arch = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=16)
    # a copy for the decoder: joining marks the decoder config object as a decoder
    config = EncoderDecoderConfig.from_encoder_decoder_configs(arch, arch.copy(), decoder_start_token_id=START,
                                                               pad_token_id=PAD, eos_token_id=EOS)
    model = FlaxEncoderDecoderModel(config)
    params = fd.shard_params(jax.device_get(model.params), mesh)  # each device gets only its slices
    optimizer = optax.adamw(3e-3)
    opt_state = fd.init_opt_state(optimizer, params, mesh)
    step = fd.make_sharded_train_step(model, optimizer, mesh, params)
    rng = np.random.default_rng(0)
    for i in range(args.steps):
        ids = rng.integers(3, VOCAB, (8 * data, LENGTH)).astype(np.int32)
        params, opt_state, loss = step(params, opt_state, {"input_ids": ids, "labels": ids})
        if i % 10 == 0:
            print(f"step {i}: loss {float(loss):.3f}")
    query = rng.integers(3, VOCAB, (2, LENGTH)).astype(np.int32)
    out = fd.sharded_generate(model, params, query, max_length=LENGTH + 1)
    print("input    ", query.tolist())
    print("generated", np.asarray(out.sequences).tolist())


if __name__ == "__main__":
    main()
