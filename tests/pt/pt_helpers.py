"""Shared helpers of the PyTorch tests: tiny random configs, and transformers' model holding the same weights."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import tiny_models
from encdec.config import EncoderDecoderConfig, GenerationConfig
from tiny_models import EOS, PAD, PAIRS, START, hf_model, random_state  # noqa: F401  (re-exported)

# The PyTorch tests draw their tiny models' weights wider than the shared default.
INIT_RANGE = 0.4


def arch_config(model_type: str, rng: np.random.Generator, hidden: int | None = None, vocab: int = 61, **overrides):
    return tiny_models.arch_config(model_type, rng, hidden, vocab, init_range=INIT_RANGE, **overrides)


def joined_config(pair: str, seed: int, proj: bool = False, tie: bool = False, **kwargs) -> EncoderDecoderConfig:
    variant = "proj" if proj else "tie" if tie else "plain"
    return tiny_models.joined_config(pair, seed, variant, init_range=INIT_RANGE, **kwargs)


def our_model(config: EncoderDecoderConfig, state: dict):
    from encdec.pt import EncoderDecoderModel

    model = EncoderDecoderModel(config=config)
    model.load_canonical_state(state)
    model.generation_config = GenerationConfig.from_model_config(config)
    return model.eval()


def random_batch(config, rng: np.random.Generator, batch: int, src_len: int, tgt_len: int, padding: str):
    """tiny_models.random_batch as torch int64 tensors."""
    arrays = tiny_models.random_batch(config, rng, batch, src_len, tgt_len, padding)
    return {k: torch.from_numpy(np.ascontiguousarray(v)).long() for k, v in arrays.items()}


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models run fastest on one thread, and the 2-core machine is shared."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def quiet_transformers():
    """transformers' warnings and progress bars off (they are about transformers, not what is tested)."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
