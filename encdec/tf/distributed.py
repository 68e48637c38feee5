"""Data-parallel training of a `TFEncoderDecoderModel` with `tf.distribute`, on Keras' own `fit`.

`tf.distribute.MirroredStrategy` keeps one copy of every variable per device (a
mirrored variable), splits each global batch of `fit` over the devices, and sums
the gradients across them with an all-reduce before the one optimizer update. The
model must be built, and compiled, inside `strategy.scope()` so that its variables
are created mirrored: `build_model` does the first, `model.compile` inside the
scope the second.

The loss: Keras computes the model's loss (`compute_loss`, the mean over the
replica's labels) on each device; the gradients of the replicas are averaged, so
one step on the global batch equals the single-device step when every replica's
batch holds as many counted labels (no -100 labels, or as many in each slice).

What is not here, and why: the Keras 3 `keras.distribution` API (DataParallel,
ModelParallel, LayoutMap) is for the JAX backend; on the TensorFlow backend it is
a prototype, so this port uses `tf.distribute`. TensorFlow has no tensor-parallel
(model-parallel) strategy for Keras models (DTensor's was withdrawn with Keras 2),
so only data parallelism is offered. `multi_worker_strategy` gives a
`MultiWorkerMirroredStrategy`: the same code on several processes (or machines),
each with `TF_CONFIG` set; `ParameterServerStrategy` is not tested.
A mirrored model saves with its own `save_pretrained` (mirrored variables read as
one value) and `canonical_state`.
"""

from __future__ import annotations

import os
from typing import Callable, Optional, Sequence

import tensorflow as tf

from ..errors import ConfigError

__all__ = ["mirrored_strategy", "multi_worker_strategy", "build_model"]


def mirrored_strategy(devices: Optional[Sequence[str]] = None) -> tf.distribute.MirroredStrategy:
    """A `MirroredStrategy` over `devices` (default: every GPU, else the CPU). On one machine without
    GPUs, give several logical CPU devices (`tf.config.set_logical_device_configuration` before
    TensorFlow starts) to train data-parallel on the CPU."""
    if devices is not None and len(devices) == 0:
        raise ConfigError("devices is empty; expected at least one device name such as '/cpu:0'")
    # Reduction to one device is the all-reduce that works on every device kind (NCCL needs GPUs).
    cross = tf.distribute.ReductionToOneDevice() if devices is not None and not any(
        "GPU" in d.upper() for d in devices) else None
    return tf.distribute.MirroredStrategy(devices=devices, cross_device_ops=cross)


def multi_worker_strategy() -> tf.distribute.MultiWorkerMirroredStrategy:
    """A `MultiWorkerMirroredStrategy` over the cluster that `TF_CONFIG` describes (each worker's
    own copy lists every worker's address and this worker's index). Create it first thing in each
    worker, before any other TensorFlow operation: the collective runtime starts with it."""
    if "TF_CONFIG" not in os.environ:
        raise ConfigError("TF_CONFIG is not set; expected the cluster's JSON, e.g. "
                          '{"cluster": {"worker": ["host0:port", "host1:port"]}, '
                          '"task": {"type": "worker", "index": 0}}')
    # Ring all-reduce runs on every device kind (NCCL needs GPUs); AUTO picks NCCL on GPUs.
    gpus = tf.config.list_physical_devices("GPU")
    implementation = (tf.distribute.experimental.CommunicationImplementation.AUTO if gpus
                      else tf.distribute.experimental.CommunicationImplementation.RING)
    return tf.distribute.MultiWorkerMirroredStrategy(
        communication_options=tf.distribute.experimental.CommunicationOptions(implementation=implementation))


def build_model(strategy: tf.distribute.Strategy, constructor: Callable, *args, **kwargs):
    """`constructor(*args, **kwargs)` (e.g. `TFEncoderDecoderModel.from_state`, `.from_pretrained`)
    inside `strategy.scope()`, so that every variable is created mirrored over its devices."""
    with strategy.scope():
        return constructor(*args, **kwargs)
