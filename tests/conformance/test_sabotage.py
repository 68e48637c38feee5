"""The suite fails when it should: each test breaks one thing in one port, for real
(a changed tensor in a converted checkpoint, or a port function monkeypatched in
this process), runs `encdec conformance` and checks that it exits non-zero and
names the output that disagrees and the first layer that does."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from encdec.conformance import cli, suite
from conformance_helpers import available, patch_everywhere, require


def run_cli(tmp_path, *argv: str) -> tuple[int, dict]:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    report = tmp_path / "report.json"
    status = cli.run(parser.parse_args([*argv, "--cases", "quick", "--devices", "cpu", "--no-progress",
                                        "--report", str(report)]))
    return status, json.loads(report.read_text())


def pick(preferred: list[str]) -> str:
    """The first port of `preferred` that can run here (the sabotage works in any of them)."""
    for name in preferred:
        if name in available([name]):
            return name
    pytest.skip(f"none of {preferred} can run here")


def witnesses(target: str) -> list[str]:
    """Runners compared with the sabotaged one: a second framework, and the reference when installed."""
    others = [n for n in available(["pt", "hf"]) if n != target]
    if not others:
        pytest.skip(f"nothing to compare {target} with")
    return others


def failed(report: dict, framework: str) -> list[dict]:
    return [c for c in report["comparisons"] if not c["pass"] and framework in c["frameworks"]]


def diagnosis(report: dict, item: str, pair: list[str]) -> dict:
    for d in report["layer_diagnoses"]:
        if d["item"] == item and sorted(d["frameworks"]) == sorted(pair):
            return d
    raise AssertionError(f"no layer diagnosis for {item} {pair}")


def assert_only(report: dict, target: str) -> None:
    """Every failure involves the sabotaged framework; the others still agree."""
    bad = [c for c in report["comparisons"] if not c["pass"]]
    assert bad and all(target in c["frameworks"] for c in bad), [c["frameworks"] for c in bad]
    assert all(c["pass"] for c in report["comparisons"] if target not in c["frameworks"])


def test_a_changed_tensor_in_one_converted_checkpoint(tmp_path, monkeypatch):
    """(a) One tensor of decoder layer 1 changed in one framework's converted checkpoint."""
    target = pick(["flax", "tf", "pt"])
    others = witnesses(target)
    from encdec.conformance.runners import RUNNERS
    from encdec.config import EncoderDecoderConfig
    from encdec.weights.convert import load_state, save_state
    from encdec.weights.names import model_spec

    victim = "decoder.bert.encoder.layer.1.crossattention.output.dense.weight"
    fmt = RUNNERS[target].native_format
    real_prepare = suite.prepare_checkpoint

    def tampered(src, to, workdir):
        dst = real_prepare(src, to, workdir)
        if to == fmt:
            spec = model_spec(EncoderDecoderConfig.from_pretrained(dst))
            state, _ = load_state(dst, spec)
            # One output unit's row (a change shared by every unit would vanish in the LayerNorm).
            state[victim][3] += np.float32(0.1)
            save_state(state, spec, dst, to)
        return dst

    monkeypatch.setattr(suite, "prepare_checkpoint", tampered)
    status, report = run_cli(tmp_path, "--frameworks", ",".join([target, *others]), "--models", "bert2bert",
                             "--items", "forward/ragged3")
    assert status == 1
    assert_only(report, target)
    bad = {c["output"] for c in failed(report, target)}
    assert "decoder_hidden_states.2" in bad and "logits" in bad
    assert not bad & {"decoder_hidden_states.0", "decoder_hidden_states.1", "encoder_last_hidden_state"}
    diag = diagnosis(report, "forward/ragged3", [target, others[0]])
    assert diag["first_bad_layer"] == "decoder_hidden_states.2"
    assert diag["first_bad_layer_description"] == "decoder layer 1 output"
    assert any("First disagreeing layer: decoder_hidden_states.2" in f for f in report["failures"])


def _flip(original):
    def flipped(mask, *args, **kwargs):
        return original(1 - mask, *args, **kwargs)  # masked <-> attended

    return flipped


def test_b_flipped_mask_convention_in_one_port(tmp_path, monkeypatch):
    """(b) The port's attention_bias masks the tokens it should attend, and attends the pads."""
    target = pick(["tf", "flax", "pt"])
    others = witnesses(target)
    package = f"encdec.{target}"
    __import__(package)
    common = __import__(f"{package}.common", fromlist=["attention_bias"])
    patch_everywhere(monkeypatch, package, "attention_bias", _flip(common.attention_bias))
    status, report = run_cli(tmp_path, "--frameworks", ",".join([target, *others]), "--models", "bert2bert",
                             "--items", "forward/ragged3")
    assert status == 1
    assert_only(report, target)
    bad = {c["output"] for c in failed(report, target)}
    assert "encoder_hidden_states.1" in bad and "encoder_hidden_states.0" not in bad
    diag = diagnosis(report, "forward/ragged3", [target, others[0]])
    assert diag["first_bad_layer"] == "encoder_hidden_states.1"
    assert diag["first_bad_layer_description"] == "encoder layer 0 output"


def test_c_dropped_bias_in_one_port(tmp_path, monkeypatch):
    """(c) The PyTorch port's enc_to_dec_proj forgets its bias: the encoder still agrees,
    the decoder's first layer (the first to read the projected states) does not."""
    require("pt")
    others = witnesses("pt")
    import torch.nn.functional as F

    from encdec.conformance.runners import PTRunner

    real_place = PTRunner._place

    def place_without_bias(self, state, dtype):
        model = real_place(self, state, dtype)
        proj = model.enc_to_dec_proj  # transformers' attribute name, the same in every port
        proj.forward = lambda hidden: F.linear(hidden, proj.weight)
        return model

    monkeypatch.setattr(PTRunner, "_place", place_without_bias)
    status, report = run_cli(tmp_path, "--frameworks", ",".join(["pt", *others]), "--models", "bert2bert_proj",
                             "--items", "forward/ragged3")
    assert status == 1
    assert_only(report, "pt")
    bad = {c["output"] for c in failed(report, "pt")}
    assert not {o for o in bad if o.startswith("encoder_")}
    assert "decoder_hidden_states.0" not in bad and "decoder_hidden_states.1" in bad
    diag = diagnosis(report, "forward/ragged3", ["pt", others[0]])
    assert diag["first_bad_layer"] == "decoder_hidden_states.1"


def _arange_positions(port: str):
    if port == "flax":
        import jax.numpy as jnp

        def positions(input_ids, padding_idx, past_length=0):
            return jnp.broadcast_to(jnp.arange(input_ids.shape[1]) + past_length, input_ids.shape)
    elif port == "tf":
        import tensorflow as tf

        def positions(input_ids, padding_idx, past_length=0):
            row = tf.range(tf.shape(input_ids)[1]) + tf.cast(past_length, tf.int32)
            return tf.broadcast_to(row[None, :], tf.shape(input_ids))
    else:
        import torch

        def positions(input_ids, padding_idx, past_length=0):
            row = torch.arange(input_ids.shape[1], device=input_ids.device) + past_length
            return row.expand_as(input_ids)
    return positions


def test_d_arange_positions_for_roberta_in_one_port(tmp_path, monkeypatch):
    """(d) RoBERTa positions counted 0, 1, 2... (plain arange) instead of from
    padding_idx + 1 over the non-pad tokens: transformers' old Flax defect."""
    target = pick(["flax", "tf", "pt"])
    others = witnesses(target)
    __import__(f"encdec.{target}.roberta")
    patch_everywhere(monkeypatch, f"encdec.{target}", "create_position_ids_from_input_ids",
                     _arange_positions(target))
    status, report = run_cli(tmp_path, "--frameworks", ",".join([target, *others]), "--models", "roberta2roberta",
                             "--items", "forward/ragged3")
    assert status == 1
    assert_only(report, target)
    bad = {c["output"] for c in failed(report, target)}
    assert {"encoder_hidden_states.0", "decoder_hidden_states.0", "logits"} <= bad
    diag = diagnosis(report, "forward/ragged3", [target, others[0]])
    assert diag["first_bad_layer"] == "encoder_hidden_states.0"
    assert diag["first_bad_layer_description"] == "encoder embeddings"


class _TiesReversedLax:
    """`jax.lax` as the sabotaged module sees it: `top_k` puts the higher index first
    among equal scores (lax.top_k puts the lower one first); the rest is jax.lax."""

    def __getattr__(self, name):
        import jax

        return getattr(jax.lax, name)

    @staticmethod
    def top_k(operand, k, **kwargs):
        import jax
        import jax.numpy as jnp

        n = operand.shape[-1]
        values, indices = jax.lax.top_k(jnp.flip(operand, -1), k, **kwargs)
        return values, n - 1 - indices


def test_e_broken_beam_tie_breaking_in_one_port(tmp_path, monkeypatch):
    """(e) The Flax port's beam search breaks ties between equal scores the other way:
    the forward outputs still agree with the TF port's; the beam search's ids do not.
    (transformers is no witness here: torch.topk leaves the order of ties unspecified.)"""
    require("flax", "tf")
    import encdec.flax.generation as generation

    monkeypatch.setattr(generation, "lax", _TiesReversedLax())
    status, report = run_cli(tmp_path, "--frameworks", "flax,tf", "--no-reference", "--models", "bert2bert_ties")
    assert status == 1
    assert_only(report, "flax")
    bad = failed(report, "flax")
    assert {(c["item"], c["output"]) for c in bad} == {("generate/beam3_ties", "ids")}
    assert "first difference at row" in bad[0]["note"]
    forward = [c for c in report["comparisons"] if c["item"] == "forward/ragged3"]
    assert forward and all(c["pass"] for c in forward)
    assert any(f.startswith("bert2bert_ties generate/beam3_ties") for f in report["failures"])


def test_f_a_query_with_no_key_to_attend_averages_the_values_in_one_port(tmp_path, monkeypatch):
    """(f) The PyTorch port's decoder masks with a finite bias (-1e9) instead of the
    dtype's minimum, so a leading pad's query no longer counts as attending no key
    and gets the mean of the values instead of a zero output: the left-padded decoder
    item fails at those positions only, and every other item still agrees."""
    require("pt")
    witness = [n for n in available(["tf", "flax"])][:1]
    if not witness:
        pytest.skip("needs a second port: transformers itself spreads such a query over every key")
    import torch

    import encdec.pt.common as common

    original = common.causal_bias

    def finite_causal_bias(*args, **kwargs):
        return torch.clamp(original(*args, **kwargs), min=-1e9)

    patch_everywhere(monkeypatch, "encdec.pt", "causal_bias", finite_causal_bias)
    status, report = run_cli(tmp_path, "--frameworks", ",".join(["pt", *witness]), "--no-reference",
                             "--models", "bert2bert", "--items", "forward/left3,forward/ragged3")
    assert status == 1
    assert_only(report, "pt")
    bad = failed(report, "pt")
    assert {c["item"] for c in bad} == {"forward/left3"}
    outputs = {c["output"] for c in bad}
    assert {"decoder_hidden_states.1", "logits"} <= outputs
    assert not outputs & {"loss", "decoder_hidden_states.0", "encoder_last_hidden_state"}
    diag = diagnosis(report, "forward/left3", ["pt", witness[0]])
    assert diag["first_bad_layer"] == "decoder_hidden_states.1"
