"""`encdec conformance --distributed` (encdec.conformance.distributed): the comparisons it makes, and
the whole mode on the CPU (slow: every engine in a fresh interpreter)."""

from __future__ import annotations

import numpy as np
import pytest

from encdec.conformance import cli
from encdec.conformance import distributed as cd
from encdec.conformance.tolerances import FP32_GRAD_REL


def _run(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"loss": np.asarray(2.5), "logits": rng.normal(size=(2, 3, 5)).astype(np.float32),
            "greedy": np.array([[2, 7, 3], [2, 9, 3]]), "beam": np.array([[2, 7, 3], [2, 9, 3]]),
            "update/a": rng.normal(size=(4, 4)).astype(np.float32), "update/b": np.zeros(3, np.float32)}


def _failed(sharded: dict, single: dict) -> list[tuple[str, str]]:
    return [(c.item, c.output) for c in cd.compare_runs(sharded, single, "x_sharded", "x_single", pad=0)
            if not c.passed]


def test_equal_runs_agree_and_each_kind_of_difference_is_caught():
    single = _run()
    comparisons = cd.compare_runs(_run(), single, "x_sharded", "x_single", pad=0)
    assert all(c.passed for c in comparisons)
    assert [c.item for c in comparisons] == ["step"] + ["step/updated_params"] * 2 + \
        ["forward", "generate/greedy", "generate/beam"]
    off = _run()
    off["loss"] = np.asarray(2.5 * (1 + 1e-5))
    assert _failed(off, single) == [("step", "loss")]
    off = _run()
    off["update/a"] = off["update/a"] * (1 + 2 * FP32_GRAD_REL)  # a step off by more than the table allows
    assert _failed(off, single) == [("step/updated_params", "a")]
    off = _run()
    off["logits"] = off["logits"] + 1e-4
    assert _failed(off, single) == [("forward", "logits")]
    off = _run()
    off["beam"] = off["beam"].copy()
    off["beam"][1, 1] = 8
    assert _failed(off, single) == [("generate/beam", "ids")]


def test_the_case_splits_over_every_mesh_and_process_count():
    config = cd.case_config()
    batch = cd.global_batch(config)
    assert config.encoder.hidden_dropout_prob == 0.0 and config.decoder.attention_probs_dropout_prob == 0.0
    for mesh in cd.FLAX_MESHES:
        data, model = (int(n) for n in mesh.split("x"))
        assert cd.GLOBAL_BATCH % data == 0 and config.encoder.vocab_size % model == 0
    assert cd.GLOBAL_BATCH % cd.WORLD == 0
    assert (batch["labels"] >= 0).all()  # every row counts as many labels: the mean of means is the mean
    halves = [cd.shard_rows(batch, r, cd.WORLD)["input_ids"] for r in range(cd.WORLD)]
    np.testing.assert_array_equal(np.concatenate(halves), batch["input_ids"])


def test_flag_refuses_what_it_cannot_run(capsys):
    assert cli.main(["--distributed", "--frameworks", "hf"]) == 2
    assert "pt, flax, tf" in capsys.readouterr().err


@pytest.mark.slow
def test_distributed_mode_agrees_on_every_installed_engine(capsys):
    engines = cd.installed_engines()
    if not engines:
        pytest.skip("no framework installed")
    status = cli.main(["--distributed"])
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith(("ok", "FAIL"))]
    assert status == 0, out[-6000:]
    for run in [r for e in engines for r in cd.sharded_runs(e)]:
        mine = [line for line in lines if line.split()[1] == run]
        # loss, logits, greedy and beam ids, and every parameter's update
        assert {"loss", "logits"} <= {line.split()[5] for line in mine}, run
        assert sum("generate/" in line for line in mine) == 2, run
        assert sum("updated_params" in line for line in mine) > 50, run
