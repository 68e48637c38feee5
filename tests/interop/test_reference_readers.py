"""tests/core's numpy-only readers (core_refs) read what the formats' own libraries read."""

from __future__ import annotations

import pathlib
import sys

# tests/core's independent readers and fixtures (core_refs), shared with the framework tests here.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "core"))

import ml_dtypes
import numpy as np
import pytest

import core_refs
import interop_refs
from core_refs import CASES, FIXTURES, assert_same_tensors, case_formats
from encdec.config import EncoderDecoderConfig
from encdec.weights import convert_checkpoint, model_spec, save_state
from encdec.weights.names import init_weights


@pytest.mark.parametrize("case", CASES)
def test_core_readers_agree_with_the_libraries_on_transformers_files(case):
    for fmt in case_formats(case):
        assert_same_tensors(core_refs.read_native(FIXTURES / case, fmt), interop_refs.read_native(FIXTURES / case, fmt), fmt)


def test_core_readers_agree_on_encdec_files_bf16_and_shards(tmp_path):
    config = EncoderDecoderConfig.from_pretrained(FIXTURES / "bert2gpt2")
    state = init_weights(config, seed=1)
    for fmt in ("safetensors", "pt", "tf", "flax"):
        for dtype in (None, "bfloat16"):
            folder = tmp_path / f"{fmt}-{dtype}"
            save_state(state, model_spec(config), folder, fmt, dtype=dtype, shard_size="40KB")
            got = core_refs.read_native(folder, fmt)
            assert_same_tensors(got, interop_refs.read_native(folder, fmt), f"{fmt} {dtype}")
            if dtype:
                assert {v.dtype for v in got.values()} == {np.dtype(ml_dtypes.bfloat16)}


def test_core_reader_reads_chunked_flax_arrays(tmp_path, monkeypatch):
    from flax import serialization

    from encdec.weights.formats import flax_msgpack

    monkeypatch.setattr(flax_msgpack, "MSGPACK_MAX_CHUNK_SIZE", 64)
    monkeypatch.setattr(serialization, "MAX_CHUNK_SIZE", 64)
    convert_checkpoint(FIXTURES / "bert2bert", tmp_path / "out", "flax", progress=False, src_fmt="safetensors")
    assert_same_tensors(core_refs.read_native(tmp_path / "out", "flax"), interop_refs.read_native(tmp_path / "out", "flax"))
