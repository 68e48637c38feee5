"""Fine-tuning: the loss goes down, and gradients are transformers' gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from encdec.config import BertConfig, EncoderDecoderConfig
from encdec.pt import EncoderDecoderModel
from encdec.weights.names import model_spec
from pt_helpers import hf_model, joined_config, one_torch_thread, random_batch, random_state  # noqa: F401


def test_adamw_lowers_the_loss_on_a_copy_task():
    torch.manual_seed(0)
    enc = BertConfig(vocab_size=20, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=48, max_position_embeddings=16)
    dec = BertConfig(vocab_size=20, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=48, max_position_embeddings=16)
    config = EncoderDecoderConfig.from_encoder_decoder_configs(enc, dec, pad_token_id=0, decoder_start_token_id=1)
    model = EncoderDecoderModel(config=config).train()
    g = torch.Generator().manual_seed(0)
    source = torch.randint(2, 20, (16, 6), generator=g)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(20):
        loss = model(input_ids=source, labels=source).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.75 * losses[0], losses
    # ties survive the optimizer: one tensor under both names
    params = dict(model.named_parameters(remove_duplicate=False))
    assert params["decoder.cls.predictions.decoder.weight"] is params["decoder.bert.embeddings.word_embeddings.weight"]


@pytest.mark.parametrize(
    "pair,variant",
    [("bert2bert", "plain"), ("bert2gpt2", "plain"), ("roberta2roberta", "plain"), ("bertgen2bertgen", "plain"),
     ("roberta2gpt2", "plain"), ("bert2roberta", "plain"), ("bert2bert", "proj"), ("roberta2roberta", "tie")],
)
def test_gradients_match_transformers(pair, variant):
    config = joined_config(pair, 3, proj=variant == "proj", tie=variant == "tie")
    state = random_state(config, 3)
    hf = hf_model(config, state)
    ours = EncoderDecoderModel(config=config)
    ours._load_numpy_state(state)
    ours.eval()  # no dropout: both compute the same function
    batch = random_batch(config, np.random.default_rng(3), 3, 8, 6, "ragged")
    kwargs = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    hf(**kwargs).loss.backward()
    ours(**kwargs).loss.backward()
    theirs = dict(hf.named_parameters(remove_duplicate=False))
    mine = dict(ours.named_parameters(remove_duplicate=False))
    spec = model_spec(config)
    compared = 0
    for p in spec:
        # A tied parameter's gradient is the sum over its uses. transformers 5 no longer ties
        # `tie_encoder_decoder` (its copies are separate tensors), so the sum is taken over its
        # distinct tensors; the ones it does tie (the LM head) count once.
        names = [p.name] + [t.name for t in spec.tied if t.source == p.name]
        tensors = list({id(theirs[n]): theirs[n] for n in names}.values())
        grads = [t.grad for t in tensors if t.grad is not None]
        expected = torch.stack(grads).sum(0) if grads else None
        got = mine[p.name].grad
        assert (expected is None) == (got is None), p.name
        if expected is None:
            continue
        scale = expected.norm().item()
        diff = (got - expected).norm().item()
        assert diff <= 1e-4 * max(scale, 1e-8), f"{p.name}: |diff| {diff:.3g}, |grad| {scale:.3g}"
        compared += 1
    assert compared > 0.9 * len(spec)
