"""The suite fails when one weight of a BART, ELECTRA or RemBERT model is changed in one port's
converted checkpoint, and names that port and the first output that disagrees: the newer
architectures are held as the older ones are (test_sabotage.py)."""

from __future__ import annotations

import numpy as np
import pytest

from conformance_helpers import available
from test_sabotage import assert_only, failed, pick, run_cli

from encdec.conformance import suite

# fixture case -> (a tensor only that architecture has, the first outputs its change reaches)
VICTIMS = {
    "bert2bart": ("decoder.model.decoder.layers.0.fc1.weight", "decoder_hidden_states.1"),
    "electra2electra": ("decoder.generator_predictions.dense.weight", "logits"),
    "rembert2rembert": ("encoder.encoder.embedding_hidden_mapping_in.weight", "encoder_hidden_states.0"),
}


@pytest.mark.parametrize("case", sorted(VICTIMS))
def test_one_changed_weight_of_a_new_architecture_fails_its_port(tmp_path, monkeypatch, case):
    from encdec.config import EncoderDecoderConfig
    from encdec.conformance.runners import RUNNERS
    from encdec.weights.convert import load_state, save_state
    from encdec.weights.names import model_spec

    target = pick(["tf", "flax", "pt"])
    others = [n for n in available(["pt", "flax", "tf"]) if n != target][:1]
    if not others:
        pytest.skip(f"nothing to compare {target} with")
    victim, first_bad = VICTIMS[case]
    fmt = RUNNERS[target].native_format
    real_prepare = suite.prepare_checkpoint

    def tampered(src, to, workdir):
        dst = real_prepare(src, to, workdir)
        if to == fmt:
            spec = model_spec(EncoderDecoderConfig.from_pretrained(dst))
            state, _ = load_state(dst, spec)
            state[victim][1] += np.float32(0.1)  # one output unit's row
            save_state(state, spec, dst, to)
        return dst

    monkeypatch.setattr(suite, "prepare_checkpoint", tampered)
    status, report = run_cli(tmp_path, "--frameworks", ",".join([target, *others]), "--no-reference",
                             "--models", f"fixture:{case}", "--items", "forward/golden")
    assert status == 1
    assert_only(report, target)
    bad = {c["output"] for c in failed(report, target)}
    assert first_bad in bad and "logits" in bad, bad
