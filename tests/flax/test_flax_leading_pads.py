"""A decoder query with no key to attend (a leading pad of a left-padded decoder row) gets a zero
attention output, as in transformers and encdec's PyTorch port: what such a position gives
does not depend on the tokens after it, and the logits are the PyTorch port's."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import FIXTURES, golden
from flax_testlib import FAST_COMPILE, assert_close, torch_on_one_thread  # noqa: F401  (autouse)

jax = pytest.importorskip("jax")
torch = pytest.importorskip("torch")
from encdec.flax import FlaxEncoderDecoderModel  # noqa: E402
from encdec.pt import EncoderDecoderModel  # noqa: E402

PAIRS = ("bert2bert", "bert2gpt2", "roberta2roberta")


def _left_padded(case: str, pad: int):
    """The fixture's inputs with decoder rows 1 and 2 left-padded by 2 and 1 positions."""
    g = golden(case)
    decoder_ids = g["decoder_input_ids"].copy()
    mask = np.ones_like(decoder_ids)
    mask[1, :2] = 0
    mask[2, :1] = 0
    decoder_ids[mask == 0] = pad
    return g["input_ids"], g["attention_mask"], decoder_ids, mask


@pytest.mark.parametrize("case", PAIRS)
def test_leading_pads_attend_nothing(case):
    flax = FlaxEncoderDecoderModel.from_pretrained(FIXTURES / case, fmt="safetensors", compiler_options=FAST_COMPILE)
    pt = EncoderDecoderModel.from_pretrained(FIXTURES / case, fmt="safetensors")
    ids, mask, decoder_ids, decoder_mask = _left_padded(case, flax.config.pad_token_id)
    got = np.asarray(flax(ids, mask, decoder_input_ids=decoder_ids, decoder_attention_mask=decoder_mask).logits)

    # Only the last token changes: the padded positions (which attend no key) must not see it.
    changed = decoder_ids.copy()
    changed[:, -1] = (changed[:, -1] + 1) % flax.config.decoder.vocab_size
    again = np.asarray(flax(ids, mask, decoder_input_ids=changed, decoder_attention_mask=decoder_mask).logits)
    np.testing.assert_array_equal(again[1, :2], got[1, :2])
    np.testing.assert_array_equal(again[2, :1], got[2, :1])
    assert not np.array_equal(again[:, -1], got[:, -1])  # the change itself is seen where it is attended

    with torch.no_grad():
        expected = pt(
            input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
            decoder_input_ids=torch.tensor(decoder_ids), decoder_attention_mask=torch.tensor(decoder_mask),
        ).logits.numpy()
    assert_close(f"{case} left-padded decoder logits vs encdec.pt", got, expected)

    # The same rows fed through a cache, the mask covering the whole cache, give the same logits.
    encoded = flax.encode(ids, mask)
    length = decoder_ids.shape[1]
    cache = flax.init_cache(len(ids), length + 2, encoded, encoder_attention_mask=mask)
    cache_mask = np.concatenate([decoder_mask, np.zeros((len(ids), 2), decoder_mask.dtype)], axis=1)
    cached = flax.decode(decoder_ids, encoded, mask, decoder_attention_mask=cache_mask, past_key_values=cache)
    assert_close(f"{case} left-padded decoder logits through a cache vs encdec.pt", cached.logits, expected)
