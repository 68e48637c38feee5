"""Shared helpers of the TensorFlow tests: tiny random configs, and the references holding the same weights.

The references are transformers 5's PyTorch EncoderDecoderModel (built from the same
config dict, run in the test) and encdec's PyTorch port. Both get exactly the numpy
weights the TF model gets.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402

try:
    # Few threads: the machine is shared, and the tiny models gain nothing from more.
    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(1)
except RuntimeError:  # TensorFlow already ran an op in this process
    pass

from encdec.config import EncoderDecoderConfig, GenerationConfig  # noqa: E402
from encdec.tf import TFEncoderDecoderModel  # noqa: E402
from tiny_models import (  # noqa: E402,F401  (re-exported for the TF tests)
    EOS,
    PAD,
    PAIRS,
    START,
    arch_config,
    hf_model,
    joined_config,
    quiet_transformers,
    random_batch,
    random_state,
)


def pt_port_model(config: EncoderDecoderConfig, state: dict):
    """encdec's own PyTorch port holding `state`."""
    from encdec.pt import EncoderDecoderModel

    model = EncoderDecoderModel.from_state(config, state)
    model.generation_config = GenerationConfig.from_model_config(config)
    return model.eval()


def tf_model(config: EncoderDecoderConfig, state: dict) -> TFEncoderDecoderModel:
    return TFEncoderDecoderModel.from_state(config, state)


def torch_batch(batch: dict) -> dict:
    return {k: torch.from_numpy(np.ascontiguousarray(v)).long() for k, v in batch.items()}


def numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().numpy()
    if isinstance(x, tf.Tensor):
        return x.numpy()
    return np.asarray(x)


def close(got, expected, atol: float = 1e-5) -> None:
    np.testing.assert_allclose(numpy(got), numpy(expected), rtol=0, atol=atol)
