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


