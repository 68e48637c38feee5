"""transformers' own config classes read the configs encdec writes (moved from tests/core)."""

from __future__ import annotations

import pathlib
import sys

# tests/core's independent readers and fixtures (core_refs), shared with the framework tests here.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "core"))


from core_refs import CASES, FIXTURES
from encdec.config import EncoderDecoderConfig, GenerationConfig


def test_transformers_reads_written_configs(tmp_path):
    """transformers' own config classes read our files to the same values."""
    from transformers import EncoderDecoderConfig as HFConfig
    from transformers import GenerationConfig as HFGeneration

    for case in CASES:
        config = EncoderDecoderConfig.from_pretrained(FIXTURES / case)
        out = tmp_path / case
        out.mkdir()
        config.save_pretrained(out)
        GenerationConfig.from_pretrained(FIXTURES / case).save_pretrained(out)
        ours, theirs = HFConfig.from_pretrained(out), HFConfig.from_pretrained(FIXTURES / case)
        for side in ("encoder", "decoder"):
            a, b = getattr(ours, side).to_dict(), getattr(theirs, side).to_dict()
            for key in set(a) | set(b):
                if key in ("transformers_version", "_name_or_path", "dtype", "torch_dtype"):
                    continue
                assert a.get(key) == b.get(key), (case, side, key)
        assert ours.decoder_start_token_id == theirs.decoder_start_token_id
        g1, g2 = HFGeneration.from_pretrained(out), HFGeneration.from_pretrained(FIXTURES / case)
        assert g1.to_diff_dict() == g2.to_diff_dict()
