"""compare.py and tolerances.py: by name, both directions, the table's bounds, layer diagnosis."""

from __future__ import annotations

import numpy as np
import pytest

from encdec.conformance import tolerances as tol
from encdec.conformance.compare import (
    compare_generated,
    compare_gradients,
    compare_outputs,
    describe_layer,
    diagnose_layers,
    flatten,
    layer_sequence,
    mean_kl,
    output_order,
    top1_agreement,
)

CTX = dict(case="c", item="forward/x", frameworks=("a", "b"), device="cpu", dtype="float32")


def outputs(n_layers=2, seed=0):
    rng = np.random.default_rng(seed)
    out = {"logits": rng.normal(size=(2, 3, 5)).astype(np.float32), "loss": np.float32(2.5),
           "encoder_last_hidden_state": rng.normal(size=(2, 4, 8)).astype(np.float32)}
    out["encoder_hidden_states"] = tuple(rng.normal(size=(2, 4, 8)).astype(np.float32) for _ in range(n_layers + 1))
    out["decoder_hidden_states"] = tuple(rng.normal(size=(2, 3, 8)).astype(np.float32) for _ in range(n_layers + 1))
    out["cross_attentions"] = tuple(rng.random(size=(2, 2, 3, 4)).astype(np.float32) for _ in range(n_layers))
    return flatten(out)


def test_flatten_names_nested_outputs_and_drops_none():
    flat = flatten({"a": (np.zeros(1), None, [np.ones(2)]), "b": None, "c": {"d": 3}})
    assert sorted(flat) == ["a.0", "a.2.0", "c.d"]


def test_identical_outputs_pass_every_check_and_every_name_is_checked():
    a = outputs()
    comps = compare_outputs(a, {k: v.copy() for k, v in a.items()}, CTX, real=False)
    assert all(c.passed for c in comps)
    assert sorted(c.output for c in comps) == sorted(a)
    loss = next(c for c in comps if c.output == "loss")
    assert (loss.metric, loss.tolerance) == ("rel_diff", tol.FP32_LOSS_REL)


@pytest.mark.parametrize("side", ["left", "right"])
def test_a_name_only_one_side_has_fails_in_both_directions(side):
    a, b = outputs(), outputs()
    victim = a if side == "left" else b
    del victim["cross_attentions.1"]
    comps = compare_outputs(a, b, CTX, real=False)
    bad = [c for c in comps if not c.passed]
    assert [(c.output, c.metric) for c in bad] == [("cross_attentions.1", "present")]
    have = "b" if side == "left" else "a"
    assert bad[0].note.startswith(f"{have} returns 'cross_attentions.1'")


def test_declared_optional_names_may_be_missing():
    a, b = outputs(), outputs()
    a["pooler_output"] = np.zeros(3)
    assert all(c.passed for c in compare_outputs(a, b, CTX, real=False, optional=["pooler_output"]))
    assert not all(c.passed for c in compare_outputs(a, b, CTX, real=False))


def test_shape_mismatch_fails_with_both_shapes():
    a, b = outputs(), outputs()
    b["logits"] = b["logits"][:, :2]
    bad = [c for c in compare_outputs(a, b, CTX, real=False) if not c.passed]
    assert bad[0].metric == "shape" and "[2, 3, 5]" in bad[0].note and "[2, 2, 5]" in bad[0].note


def test_fp32_bounds_tiny_and_real():
    a = outputs()
    b = {k: v.copy() for k, v in a.items()}
    b["logits"] = b["logits"] + np.float32(5e-5)  # over the tiny bound, under the real one
    tiny = {c.output: c for c in compare_outputs(a, b, CTX, real=False)}
    real = {c.output: c for c in compare_outputs(a, b, CTX, real=True)}
    assert not tiny["logits"].passed and tiny["logits"].tolerance == tol.FP32_ACTIVATION_TINY
    assert real["logits"].passed and real["logits"].tolerance == tol.FP32_ACTIVATION_REAL


def test_loss_is_relative_and_nan_never_passes():
    a, b = outputs(), outputs()
    b.update({k: a[k] for k in a})
    b["loss"] = np.float32(2.5 * (1 + 3e-6))
    assert not next(c for c in compare_outputs(a, b, CTX, real=False) if c.output == "loss").passed
    b["loss"], b["logits"] = a["loss"], a["logits"].copy()
    b["logits"][0, 0, 0] = np.nan
    assert not next(c for c in compare_outputs(a, b, CTX, real=False) if c.output == "logits").passed


def test_bf16_checks_logits_by_top1_and_kl_and_masks_positions():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 3, 7)).astype(np.float32) * 4
    other = logits.copy()
    other[1, 2] = -other[1, 2]  # one position's distribution turned upside down
    mask = np.array([[1, 1, 1], [1, 1, 0]])
    assert top1_agreement(logits, other) == pytest.approx(5 / 6)
    assert top1_agreement(logits, other, mask) == 1.0
    assert mean_kl(logits, other, mask) == pytest.approx(0.0, abs=1e-12)
    ctx = dict(CTX, dtype="bfloat16")
    comps = compare_outputs({"logits": logits, "decoder_hidden_states.0": logits},
                            {"logits": other, "decoder_hidden_states.0": other}, ctx, real=False)
    assert {(c.output, c.metric) for c in comps} == {("logits", "top1_agreement"), ("logits", "mean_kl")}
    assert not all(c.passed for c in comps)
    masked = compare_outputs({"logits": logits}, {"logits": other}, ctx, real=False, logits_mask=mask)
    assert all(c.passed for c in masked)


def test_output_order_follows_the_data_flow():
    names = ["decoder_hidden_states.10", "logits", "encoder_hidden_states.2", "decoder_hidden_states.9", "loss",
             "encoder_hidden_states.10"]
    assert sorted(names, key=output_order) == ["loss", "logits", "encoder_hidden_states.2",
                                               "encoder_hidden_states.10", "decoder_hidden_states.9",
                                               "decoder_hidden_states.10"]


def test_diagnosis_names_the_first_disagreeing_layer_encoder_before_decoder():
    a = outputs(n_layers=11)
    b = {k: v.copy() for k, v in a.items()}
    for name in ("decoder_hidden_states.3", "decoder_hidden_states.11", "logits"):
        b[name] = b[name] + 1.0
    b["encoder_hidden_states.10"] = b["encoder_hidden_states.10"] + 1.0
    diag = diagnose_layers(a, b, CTX, tol.FP32_ACTIVATION_TINY)
    assert diag.first_bad == "encoder_hidden_states.10"
    assert describe_layer(diag.first_bad) == "encoder layer 9 output"
    assert [n for n, _ in diag.layers][:2] == ["encoder_hidden_states.0", "encoder_hidden_states.1"]
    assert dict(diag.layers)["decoder_hidden_states.3"] == pytest.approx(1.0)
    b["encoder_hidden_states.10"] = a["encoder_hidden_states.10"]
    assert diagnose_layers(a, b, CTX, tol.FP32_ACTIVATION_TINY).first_bad == "decoder_hidden_states.3"
    assert describe_layer("decoder_hidden_states.0") == "decoder embeddings"


def test_layer_sequence_without_encoder_layers_uses_the_encoder_output():
    names = {"logits": 0, "decoder_hidden_states.1": 0, "encoder_last_hidden_state": 0, "decoder_hidden_states.0": 0}
    assert layer_sequence(names) == ["encoder_last_hidden_state", "decoder_hidden_states.0",
                                     "decoder_hidden_states.1", "logits"]


def test_gradients_relative_per_parameter_with_a_floor_for_noise():
    big = np.full((3, 3), 2.0, np.float32)
    noise = np.full(3, 1e-9, np.float32)  # like an attention key bias: only rounding noise
    a = {"w": big, "key.bias": noise}
    b = {"w": big * (1 + 1e-6), "key.bias": -noise}
    comps = compare_gradients(a, b, dict(CTX, item="gradients/x"), order=["w", "key.bias"])
    assert [c.output for c in comps] == ["w", "key.bias"] and all(c.passed for c in comps)
    # A small but real gradient (2.5% of the largest) that is 1% off is caught.
    small = np.full(2, 0.05, np.float32)
    comps = compare_gradients({"w": big, "ln.bias": small}, {"w": big, "ln.bias": small * 1.01},
                              dict(CTX, item="gradients/x"), order=["w", "ln.bias"])
    assert [(c.output, c.passed) for c in comps] == [("w", True), ("ln.bias", False)]
    b["w"] = big * (1 + 1e-3)
    del b["key.bias"]
    bad = [c for c in compare_gradients(a, b, dict(CTX, item="gradients/x")) if not c.passed]
    assert {(c.output, c.metric) for c in bad} == {("w", "rel_diff"), ("key.bias", "present")}


def test_generated_ids_identical_after_padding_and_first_difference_named():
    a = np.array([[2, 5, 3], [2, 6, 7]])
    b = np.array([[2, 5, 3, 0, 0], [2, 6, 7, 0, 0]])
    ctx = dict(CTX, item="generate/greedy")
    assert compare_generated(a, b, ctx, pad=0).passed
    b[1, 2] = 8
    c = compare_generated(a, b, ctx, pad=0)
    assert not c.passed and c.value == 1 and "row 1, position 2" in c.note
    assert not compare_generated(a, b[:1], ctx, pad=0).passed


def test_checks_follow_the_design_table():
    assert tol.checks_for("decoder_hidden_states.1", "float32", real=False)[0].bound == 1e-5
    assert tol.checks_for("encoder_last_hidden_state", "float32", real=True)[0].bound == 1e-4
    assert tol.checks_for("loss", "float32", real=True)[0].bound == 1e-6
    assert tol.checks_for("loss", "bfloat16", real=False)[0].bound == 1e-2
    top1, kl = tol.checks_for("logits", "bfloat16", real=False)
    assert (top1.metric, top1.bound, top1.at_least, kl.metric, kl.bound) == ("top1_agreement", 0.99, True,
                                                                             "mean_kl", 1e-3)
    assert tol.GRADIENT_CHECK.bound == 1e-4 and tol.GENERATION_CHECK.bound == 0
