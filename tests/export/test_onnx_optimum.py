"""An encdec ONNX export loaded by optimum (`ORTModelForSeq2SeqLM.from_pretrained(OUT)`, in
.venv-optimum: tools/venv_optimum.sh) generates with the cache graph, and gives the ids of encdec's
own runner (`encdec.onnx`) and of transformers (the fixtures' goldens)."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "hf"
VENV_OPTIMUM = Path(os.environ.get("VENV_OPTIMUM", REPO / ".venv-optimum"))
# name -> generate options; the golden key of the same name, where there is one
GENERATIONS = {
    "greedy": dict(max_length=12, num_beams=1),
    "beam3": dict(max_length=12, num_beams=3, early_stopping=True),
    "beam3_ret2_lp2": dict(max_length=12, num_beams=3, num_return_sequences=2, length_penalty=2.0,
                           early_stopping=False),
    "beam3_no_repeat2": dict(max_length=12, num_beams=3, no_repeat_ngram_size=2),
}

# Runs in .venv-optimum (no encdec): argv = export folder, golden.npz, options JSON. Prints the ids
# per option name, and how often each decoder graph ran.
_OPTIMUM_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np, torch
    from optimum.onnxruntime import ORTModelForSeq2SeqLM

    path, golden, generations = sys.argv[1], np.load(sys.argv[2]), json.loads(sys.argv[3])
    model = ORTModelForSeq2SeqLM.from_pretrained(path, use_cache=True)
    assert model.can_use_cache and model.decoder_with_past is not None
    calls = {"decoder": 0, "decoder_with_past": 0}
    for name in calls:
        part = getattr(model, name)
        def counted(*args, _forward=part.forward, _name=name, **kwargs):
            calls[_name] += 1
            return _forward(*args, **kwargs)
        part.forward = counted
    ids = {}
    for name, options in generations.items():
        out = model.generate(input_ids=torch.from_numpy(golden["input_ids"]),
                             attention_mask=torch.from_numpy(golden["attention_mask"]), **options)
        ids[name] = out.tolist()
    print(json.dumps({"ids": ids, "calls": calls}))
""")


def _optimum_python() -> Path:
    if not (VENV_OPTIMUM / ".installed-stamp").is_file():
        subprocess.run(["bash", str(REPO / "tools" / "venv_optimum.sh")], check=True)
    return VENV_OPTIMUM / "bin" / "python"


@pytest.mark.slow
@pytest.mark.parametrize("case, dtype", [("bert2bert", "float32"), ("bert2gpt2", "float32"),
                                         ("roberta2roberta", "float32"), ("bert2bert_proj", "float32"),
                                         ("bert2bert", "float16")])
def test_optimum_loads_and_generates_like_encdec(tmp_path, case, dtype):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    from encdec.export import export
    from encdec.onnx import load

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = export(FIXTURES / case, tmp_path / case, to="onnx", dtype=dtype)
    golden_file = FIXTURES / case / "golden.npz"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([str(_optimum_python()), "-c", _OPTIMUM_SCRIPT, str(out), str(golden_file),
                           json.dumps(GENERATIONS)], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # the first step through decoder_model, every later one through decoder_with_past_model
    assert result["calls"]["decoder"] == len(GENERATIONS)
    assert result["calls"]["decoder_with_past"] > 0

    runner = load(out)
    with np.load(golden_file) as data:
        golden = {k: data[k] for k in data.files}
    for name, options in GENERATIONS.items():
        ours = runner.generate(golden["input_ids"], golden["attention_mask"], **options)
        np.testing.assert_array_equal(np.array(result["ids"][name]), ours, err_msg=name)
        if name in golden:
            np.testing.assert_array_equal(ours, golden[name], err_msg=name)
