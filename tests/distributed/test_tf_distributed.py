"""TensorFlow with tf.distribute (`encdec.tf.distributed`): Keras `fit` under MirroredStrategy on
2 logical CPU devices takes the same steps as on one device.

The two-device test runs tests/distributed/tf_dist_worker.py in a fresh interpreter, since the
logical devices must be configured before TensorFlow initialises.
"""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import dist_lib  # noqa: E402

from encdec.conformance.tolerances import FP32_GRAD_REL, FP32_LOSS_REL  # noqa: E402
from encdec.errors import ConfigError  # noqa: E402
from encdec.tf import TFEncoderDecoderModel  # noqa: E402
from encdec.tf import distributed as td  # noqa: E402


def test_build_model_creates_mirrored_variables():
    strategy = td.mirrored_strategy(["/cpu:0"])
    config = dist_lib.model_config("plain")
    model = td.build_model(strategy, TFEncoderDecoderModel.from_state, config, dist_lib.model_state(config))
    assert model.trainable_variables
    # a Keras variable holds the TensorFlow variable; created in the scope, that one is mirrored
    assert all(isinstance(v.value, tf.distribute.DistributedValues) for v in model.trainable_variables)
    with pytest.raises(ConfigError, match="devices is empty"):
        td.mirrored_strategy([])


def _load(path):
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


@pytest.mark.slow
def test_mirrored_fit_steps_equal_one_device(tmp_path):
    dist_lib.run_worker("tf_dist_worker.py", str(tmp_path))
    single, mirrored = _load(tmp_path / "single.npz"), _load(tmp_path / "mirrored.npz")
    config = dist_lib.model_config("plain")
    before_a = before_b = dist_lib.model_state(config)
    for step in range(1, dist_lib.STEPS + 1):
        a, b = float(mirrored[f"loss{step}"]), float(single[f"loss{step}"])
        assert abs(a - b) / max(abs(a), abs(b)) <= FP32_LOSS_REL, (step, a, b)
        prefix = f"step{step}/"
        # each step's update, measured as gradients are (the tolerance table's gradient row)
        after_a = {k[len(prefix):]: v for k, v in mirrored.items() if k.startswith(prefix)}
        after_b = {k[len(prefix):]: v for k, v in single.items() if k.startswith(prefix)}
        diffs = dist_lib.grad_rel_diffs({k: v - before_a[k] for k, v in after_a.items()},
                                        {k: v - before_b[k] for k, v in after_b.items()})
        worst = max(diffs, key=diffs.get)
        assert diffs[worst] <= FP32_GRAD_REL, (step, worst, diffs[worst])
        before_a, before_b = after_a, after_b
        assert max(dist_lib.max_abs_diff(after_a, after_b).values()) <= 1e-6
