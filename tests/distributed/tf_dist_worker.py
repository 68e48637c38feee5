"""Keras `fit` of a tiny bert2bert under tf.distribute on one machine, and on one device
(encdec.tf.distributed).

    python tf_dist_worker.py OUT_DIR                      # MirroredStrategy, 2 logical CPU devices
    python tf_dist_worker.py OUT_DIR --worker I P0,P1     # MultiWorkerMirroredStrategy, worker I of 2

The logical devices, and TF_CONFIG, are set before TensorFlow initialises (only a fresh process
can). The first form writes OUT_DIR/single.npz and OUT_DIR/mirrored.npz; the second is started
once per worker (each listening on localhost:P<i>) and worker 0 writes OUT_DIR/multiworker.npz.
Each holds the canonical state after each of the `STEPS` steps (stepN/<name>), and the loss
Keras reports (lossN).
"""

from __future__ import annotations

import json
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
MULTIWORKER = "--worker" in sys.argv
if MULTIWORKER:
    # TF_CONFIG is read when the strategy is created; every worker lists the same cluster.
    _index, _ports = int(sys.argv[3]), sys.argv[4].split(",")
    os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"localhost:{p}" for p in _ports]},
                                          "task": {"type": "worker", "index": _index}})

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

if not MULTIWORKER:
    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2
    )

import keras  # noqa: E402

# whole tracebacks: the multi-worker test recognises a known Keras failure by the frame it is raised in
keras.config.disable_traceback_filtering()

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import dist_lib  # noqa: E402

from encdec.tf import TFEncoderDecoderModel  # noqa: E402
from encdec.tf import distributed as td  # noqa: E402


def train(strategy) -> dict:
    config = dist_lib.model_config("plain")
    model = td.build_model(strategy, TFEncoderDecoderModel.from_state, config, dist_lib.model_state(config))
    with strategy.scope():
        model.compile(optimizer=keras.optimizers.SGD(dist_lib.LEARNING_RATE), jit_compile=False)
    # Every worker reads the whole global batch; the strategy gives each replica its rows (DATA
    # sharding: no input files to split).
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    out = {}
    for step, batch in enumerate(dist_lib.batches(config), 1):
        data = tf.data.Dataset.from_tensor_slices({k: v.astype(np.int32) for k, v in batch.items()})
        data = data.batch(dist_lib.GLOBAL_BATCH).with_options(options)
        history = model.fit(data, epochs=1, verbose=0, shuffle=False)
        out[f"loss{step}"] = np.asarray(history.history["loss"][-1])
        out.update({f"step{step}/{k}": v for k, v in model.canonical_state().items()})
    return out


def main() -> None:
    out_dir = pathlib.Path(sys.argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    if MULTIWORKER:
        strategy = td.multi_worker_strategy()
        assert strategy.num_replicas_in_sync == 2, strategy.num_replicas_in_sync
        result = train(strategy)
        if strategy.cluster_resolver.task_id == 0:
            np.savez(out_dir / "multiworker.npz", **result)
        return
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    assert len(devices) == 2, devices
    np.savez(out_dir / "single.npz", **train(tf.distribute.OneDeviceStrategy(devices[0])))
    mirrored = td.mirrored_strategy(devices)
    assert mirrored.num_replicas_in_sync == 2
    np.savez(out_dir / "mirrored.npz", **train(mirrored))


if __name__ == "__main__":
    main()
