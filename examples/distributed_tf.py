"""Keras `fit` of a tiny bert2bert under tf.distribute.MirroredStrategy.

On one CPU machine, 2 logical CPU devices (on GPUs, every GPU):

    python examples/distributed_tf.py --cpus 2
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cpus", type=int, default=2, help="logical CPU devices when there is no GPU")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    devices = None
    if not tf.config.list_physical_devices("GPU"):
        # before TensorFlow initialises: split the CPU into logical devices
        tf.config.set_logical_device_configuration(
            tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * args.cpus)
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]

    import keras

    from encdec.config import BertConfig, EncoderDecoderConfig
    from encdec.tf import TFEncoderDecoderModel
    from encdec.tf.distributed import build_model, mirrored_strategy

    strategy = mirrored_strategy(devices)
    print(f"{strategy.num_replicas_in_sync} replicas")
    arch = BertConfig(vocab_size=24, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=16)
    # a copy for the decoder: joining marks the decoder config object as a decoder
    config = EncoderDecoderConfig.from_encoder_decoder_configs(arch, arch.copy(), decoder_start_token_id=1,
                                                               pad_token_id=0)
    model = build_model(strategy, TFEncoderDecoderModel, config=config)
    with strategy.scope():
        model.compile(optimizer=keras.optimizers.Adam(3e-3))  # the model's own loss
    ids = np.random.default_rng(0).integers(3, 24, (512, 8)).astype(np.int32)
    data = tf.data.Dataset.from_tensor_slices({"input_ids": ids, "labels": ids}).batch(32)  # the global batch
    model.fit(data, epochs=args.epochs)


if __name__ == "__main__":
    main()
