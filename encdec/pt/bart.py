"""BART's decoder as a cross-attending decoder (`BartForCausalLM`): post-LayerNorm layers, learned positions.

The position table has `max_position_embeddings + 2` rows: position p reads row
p + 2 (`BartConfig.position_offset`, transformers' `BartLearnedPositionalEmbedding`).
Token embeddings are multiplied by `embed_scale` (sqrt(d_model) with
`scale_embedding`), summed with the positions and normalised by
`layernorm_embedding` before the first layer. Each layer is
x = LN(x + self_attn(x)), x = LN(x + encoder_attn(x)), x = LN(x + fc2(act(fc1(x)))).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .bert import BertSelfAttention, _padding_idx
from .common import (
    ACT2FN,
    _attends_encoder,
    _causal_lm_output,
    _CausalLM,
    _checkpointing,
    _close_cache,
    _decoder_self_bias,
    _encoder_bias,
    _GradientCheckpointing,
    _open_stack,
    _run_layers,
    _stack_output,
)
from .fast_linear import Linear


class BartLearnedPositionalEmbedding(nn.Embedding):
    """The learned position table, `max_position_embeddings + 2` rows: position p reads row p + 2."""

    def __init__(self, config) -> None:
        self.offset = config.position_offset
        super().__init__(config.position_table_size, config.d_model)

    def forward(self, input_ids, past_length: int = 0, position_ids=None):
        """The rows of `input_ids`' `[B, T]` positions after `past_length` cached tokens: `[T, H]` (the same
        for every row), or `[B, T, H]` for given `position_ids` (counted from 0)."""
        if position_ids is None:
            start = self.offset + past_length
            return self.weight[start : start + input_ids.shape[1]]
        return super().forward(position_ids + self.offset)


class BartAttention(BertSelfAttention):
    """BERT's self-attention with BART's projections: `k_proj`, `v_proj`, `q_proj` (made in that order, as
    transformers makes them) and its own output projection `out_proj` (all with bias)."""

    projection_names = {"key": "k_proj", "value": "v_proj", "query": "q_proj"}
    dropout_field = "attention_dropout"

    def __init__(self, config, is_cross_attention: bool = False, layer_idx: int = 0) -> None:
        super().__init__(config, is_cross_attention, layer_idx)
        self.out_proj = Linear(config.d_model, config.d_model)

    def _output(self, context):
        return self.out_proj(context)


class BartDecoderLayer(nn.Module):
    """Post-LayerNorm: each block's output is added to its input, then normalised."""

    def __init__(self, config, layer_idx: int = 0) -> None:
        super().__init__()
        h, eps = config.d_model, config.layer_norm_eps
        self.self_attn = BartAttention(config, layer_idx=layer_idx)
        self.self_attn_layer_norm = nn.LayerNorm(h, eps=eps)
        # Always there, as in transformers (add_cross_attention or not); it runs when encoder states are given.
        self.encoder_attn = BartAttention(config, is_cross_attention=True, layer_idx=layer_idx)
        self.encoder_attn_layer_norm = nn.LayerNorm(h, eps=eps)
        self.fc1 = Linear(h, config.decoder_ffn_dim)
        self.fc2 = Linear(config.decoder_ffn_dim, h)
        self.final_layer_norm = nn.LayerNorm(h, eps=eps)
        self.activation_fn = ACT2FN[config.activation_function]
        self.dropout = nn.Dropout(config.dropout)
        self.activation_dropout = nn.Dropout(config.activation_dropout)

    def forward(
        self,
        hidden_states,
        attention_bias=None,
        is_causal: bool = False,
        encoder_hidden_states=None,
        encoder_bias=None,
        cache=None,
        output_attentions: bool = False,
        past_length: int = 0,
    ):
        attn, self_probs = self.self_attn(hidden_states, attention_bias, is_causal, None, cache, output_attentions,
                                          past_length)
        hidden_states = self.self_attn_layer_norm(hidden_states + self.dropout(attn))
        cross_probs = None
        if _attends_encoder(encoder_hidden_states, cache):
            cross, cross_probs = self.encoder_attn(hidden_states, encoder_bias, False, encoder_hidden_states, cache,
                                                   output_attentions)
            hidden_states = self.encoder_attn_layer_norm(hidden_states + self.dropout(cross))
        inner = self.activation_dropout(self.activation_fn(self.fc1(hidden_states)))
        hidden_states = self.final_layer_norm(hidden_states + self.dropout(self.fc2(inner)))
        return hidden_states, self_probs, cross_probs


class BartDecoder(_GradientCheckpointing, nn.Module):
    """Token embeddings (scaled) + learned positions, `layernorm_embedding`, dropout, the layers."""

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config
        h = config.d_model
        self.embed_tokens = nn.Embedding(config.vocab_size, h, padding_idx=_padding_idx(config))
        self.embed_positions = BartLearnedPositionalEmbedding(config)
        self.layers = nn.ModuleList([BartDecoderLayer(config, i) for i in range(config.decoder_layers)])
        self.layernorm_embedding = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)
        self.gradient_checkpointing = False  # set through gradient_checkpointing_enable
        self._gradient_checkpointing_func = None

    def get_input_embeddings(self):
        return self.embed_tokens

    def _kept_layers(self, cache):
        """The layers this forward runs, with their cache entries: all of them, except that in training
        each is skipped with probability `decoder_layerdrop`, as transformers does."""
        layers, entries = list(self.layers), cache
        drop = self.config.decoder_layerdrop
        if self.training and drop > 0.0:
            keep = [i for i in range(len(layers)) if not bool(torch.rand([]) < drop)]
            layers = [layers[i] for i in keep]
            entries = [cache[i] for i in keep] if cache is not None else None
        return layers, entries

    def forward(
        self,
        input_ids,
        attention_mask=None,
        position_ids=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        past_key_values: Optional[dict] = None,
        use_cache: Optional[bool] = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        return_dict: bool = True,
    ):
        cfg = self.config
        use_cache, past_length, cache, input_ids, _, position_ids = _open_stack(
            cfg, cfg.decoder_layers, _checkpointing(self), past_key_values, use_cache, input_ids, attention_mask, None,
            position_ids,
        )
        length = input_ids.shape[1]

        hidden = self.embed_tokens(input_ids) * cfg.embed_scale + self.embed_positions(input_ids, past_length,
                                                                                       position_ids)
        hidden = self.dropout(self.layernorm_embedding(hidden))

        bias, is_causal = _decoder_self_bias(attention_mask, length, past_length, hidden.dtype, hidden.device)
        layers, entries = self._kept_layers(cache)
        hidden, all_hidden, all_self, all_cross = _run_layers(
            self, layers, hidden, bias, is_causal, encoder_hidden_states,
            _encoder_bias(encoder_attention_mask, hidden.dtype), entries, output_attentions, output_hidden_states,
            past_length,
        )
        past = _close_cache(cache, past_length, length, encoder_attention_mask) if use_cache else None
        return _stack_output(hidden, all_hidden, all_self, all_cross, past, return_dict)


class BartDecoderWrapper(nn.Module):
    """transformers' wrapper that puts the decoder under `model.decoder` (the names of a whole BART)."""

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config
        self.decoder = BartDecoder(config)

    def forward(self, *args, **kwargs):
        return self.decoder(*args, **kwargs)


class BartForCausalLM(_CausalLM):
    """BART's decoder with its LM head (no bias), tied to the token embeddings unless the config unties it."""

    base_model_prefix = "model"

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config
        self.model = BartDecoderWrapper(config)
        self.lm_head = Linear(config.d_model, config.vocab_size, bias=False)
        self._tie_output_embeddings()

    @property
    def base_model(self) -> BartDecoder:
        return self.model.decoder

    def forward(
        self,
        input_ids,
        attention_mask=None,
        position_ids=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        past_key_values=None,
        use_cache: Optional[bool] = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        labels=None,
        logits_to_keep: int = 0,
        return_dict: bool = True,
    ):
        out = self.model.decoder(
            input_ids, attention_mask=attention_mask, position_ids=position_ids,
            encoder_hidden_states=encoder_hidden_states, encoder_attention_mask=encoder_attention_mask,
            past_key_values=past_key_values, use_cache=use_cache, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        return _causal_lm_output(self, out, labels, logits_to_keep, return_dict)
