"""Keras `fit` of a tiny bert2bert under tf.distribute.MirroredStrategy on 2 logical CPU devices,
and on one device (encdec.tf.distributed).

    python tf_dist_worker.py OUT_DIR

The logical devices are set before TensorFlow initialises (only a fresh process can). Writes
OUT_DIR/single.npz and OUT_DIR/mirrored.npz: the canonical state after each of the `STEPS`
steps (stepN/<name>), and the loss Keras reports (loss).
"""

from __future__ import annotations

import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2
)

import keras  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import dist_lib  # noqa: E402

from encdec.tf import TFEncoderDecoderModel  # noqa: E402
from encdec.tf import distributed as td  # noqa: E402


def train(strategy) -> dict:
    config = dist_lib.model_config("plain")
    model = td.build_model(strategy, TFEncoderDecoderModel.from_state, config, dist_lib.model_state(config))
    with strategy.scope():
        model.compile(optimizer=keras.optimizers.SGD(dist_lib.LEARNING_RATE), jit_compile=False)
    out = {}
    for step, batch in enumerate(dist_lib.batches(config), 1):
        data = tf.data.Dataset.from_tensor_slices({k: v.astype(np.int32) for k, v in batch.items()})
        history = model.fit(data.batch(dist_lib.GLOBAL_BATCH), epochs=1, verbose=0, shuffle=False)
        out[f"loss{step}"] = np.asarray(history.history["loss"][-1])
        out.update({f"step{step}/{k}": v for k, v in model.canonical_state().items()})
    return out


def main() -> None:
    out_dir = pathlib.Path(sys.argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    assert len(devices) == 2, devices
    np.savez(out_dir / "single.npz", **train(tf.distribute.OneDeviceStrategy(devices[0])))
    mirrored = td.mirrored_strategy(devices)
    assert mirrored.num_replicas_in_sync == 2
    np.savez(out_dir / "mirrored.npz", **train(mirrored))


if __name__ == "__main__":
    main()
