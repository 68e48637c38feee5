"""BERT as an encoder (`BertModel`) and as a cross-attending decoder (`BertLMHeadModel`).

Module attribute names follow transformers', so `state_dict()` keys are the
canonical names of `encdec.weights.names` (`encoder.layer.0.attention.self.query.weight`, ...).
RoBERTa and BertGeneration reuse these layers with their own embeddings and heads.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..errors import ConfigError
from ..weights.names import embedding_width
from .common import (
    ACT2FN,
    _attend_heads,
    _attends_encoder,
    _CausalLM,
    _checkpointing,
    _close_cache,
    _cross_keys_values,
    _decoder_self_bias,
    _encoder_bias,
    _GradientCheckpointing,
    _open_stack,
    _padding_bias,
    _run_layers,
    _stack_output,
    _write_self_cache,
)
from .fast_linear import Linear
from .pretrained import PreTrainedModel


def _padding_idx(config) -> Optional[int]:
    pad = config.pad_token_id
    if pad is None:
        return None
    if not 0 <= pad < config.vocab_size:
        raise ConfigError(
            f"{config.model_type}: pad_token_id {pad} is outside the vocabulary; expected 0 <= pad_token_id < "
            f"{config.vocab_size}"
        )
    return pad


class BertEmbeddings(nn.Module):
    """Word + token type + absolute position embeddings, then LayerNorm and dropout."""

    has_token_types = True

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config
        h = embedding_width(config)
        self.word_embeddings = nn.Embedding(config.vocab_size, h, padding_idx=_padding_idx(config))
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, h)
        if self.has_token_types:
            self.token_type_embeddings = nn.Embedding(config.type_vocab_size, h)
        self.LayerNorm = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def _position_limit(self) -> int:
        """How many tokens (cache included) the position table covers."""
        return self.config.max_position_embeddings

    def _position_embeddings(self, input_ids, position_ids, past_length):
        if position_ids is None:
            # Positions past_length .. past_length + T - 1, the same for every row: [T, H].
            length = input_ids.shape[1]
            return self.position_embeddings.weight[past_length : past_length + length]
        return self.position_embeddings(position_ids)

    def forward(self, input_ids, token_type_ids=None, position_ids=None, past_length: int = 0):
        embeddings = self.word_embeddings(input_ids)
        if token_type_ids is None:
            # All-zero token types: row 0 of the table, broadcast over [B, T].
            embeddings = embeddings + self.token_type_embeddings.weight[0]
        else:
            embeddings = embeddings + self.token_type_embeddings(token_type_ids)
        embeddings = embeddings + self._position_embeddings(input_ids, position_ids, past_length)
        return self.dropout(self.LayerNorm(embeddings))


class BertSelfAttention(nn.Module):
    """Multi-head attention; self-attention, or cross-attention over the encoder's states."""

    # The attribute names of the query, key and value projections, in the order they are made (their
    # order in `named_parameters()` and `state_dict()`); BART's attention names and orders them its own way.
    projection_names = {"query": "query", "key": "key", "value": "value"}
    dropout_field = "attention_probs_dropout_prob"  # the config field of the attention dropout

    def __init__(self, config, is_cross_attention: bool = False, layer_idx: int = 0) -> None:
        super().__init__()
        self.config = config  # shared with the joined model's: attn_implementation is read at call time
        h = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = h // self.num_heads
        self.scale = self.head_dim**-0.5
        for name in self.projection_names.values():
            setattr(self, name, Linear(h, h))
        self.dropout_prob = getattr(config, self.dropout_field)
        self.is_cross_attention = is_cross_attention
        self.layer_idx = layer_idx

    def _heads(self, x):
        # [B, T, H*D] -> [B, H, T, D]
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)

    def _project(self, role: str, x):
        """`x` `[B, T, H*D]` through the "query", "key" or "value" projection, split: `[B, H, T, D]`."""
        return self._heads(getattr(self, self.projection_names[role])(x))

    def _cross_key_value(self, encoder_hidden_states):
        """Cross-attention keys/values of the encoder's states: `[B, S, H*D]` -> two `[B, H, S, D]`."""
        return self._project("key", encoder_hidden_states), self._project("value", encoder_hidden_states)

    def _output(self, context):
        """The attended values `[B, T, H*D]` as this module returns them: BERT's output projection is
        `BertSelfOutput`'s."""
        return context

    def forward(
        self,
        hidden_states,
        attention_bias=None,
        is_causal: bool = False,
        key_value_states=None,
        cache: Optional[dict] = None,
        output_attentions: bool = False,
        past_length: int = 0,
    ):
        query = self._project("query", hidden_states)
        if self.is_cross_attention:
            key, value = _cross_keys_values(cache, self._cross_key_value, key_value_states)
        else:
            key, value = self._project("key", hidden_states), self._project("value", hidden_states)
            if cache is not None:
                key, value = _write_self_cache(cache, past_length, key, value)
        out, probs = _attend_heads(self, query, key, value, attention_bias, is_causal, output_attentions,
                                   self.dropout_prob)
        return self._output(out), probs


class BertSelfOutput(nn.Module):
    """Output projection, dropout, residual, LayerNorm (post-LN)."""

    in_features = "hidden_size"  # the config field of the projection's input width

    def __init__(self, config) -> None:
        super().__init__()
        self.dense = Linear(getattr(config, self.in_features), config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states, input_tensor):
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)


class BertAttention(nn.Module):
    def __init__(self, config, is_cross_attention: bool = False, layer_idx: int = 0) -> None:
        super().__init__()
        self.self = BertSelfAttention(config, is_cross_attention, layer_idx)
        self.output = BertSelfOutput(config)

    def forward(
        self,
        hidden_states,
        attention_bias=None,
        is_causal: bool = False,
        key_value_states=None,
        cache=None,
        output_attentions: bool = False,
        past_length: int = 0,
    ):
        context, probs = self.self(hidden_states, attention_bias, is_causal, key_value_states, cache,
                                   output_attentions, past_length)
        return self.output(context, hidden_states), probs


class BertIntermediate(nn.Module):
    def __init__(self, config) -> None:
        super().__init__()
        self.dense = Linear(config.hidden_size, config.intermediate_size)
        self.act = ACT2FN[config.hidden_act]

    def forward(self, hidden_states):
        return self.act(self.dense(hidden_states))


class BertOutput(BertSelfOutput):
    """The feed-forward's output: BertSelfOutput's computation, from the intermediate width."""

    in_features = "intermediate_size"


class BertLayer(nn.Module):
    """Self-attention, cross-attention (decoders), feed-forward."""

    def __init__(self, config, layer_idx: int = 0) -> None:
        super().__init__()
        self.attention = BertAttention(config, layer_idx=layer_idx)
        if config.add_cross_attention:
            self.crossattention = BertAttention(config, is_cross_attention=True, layer_idx=layer_idx)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

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
        hidden_states, self_probs = self.attention(
            hidden_states, attention_bias, is_causal, cache=cache, output_attentions=output_attentions,
            past_length=past_length,
        )
        cross_probs = None
        if _attends_encoder(encoder_hidden_states, cache, hasattr(self, "crossattention")):
            hidden_states, cross_probs = self.crossattention(
                hidden_states, encoder_bias, False, encoder_hidden_states, cache, output_attentions
            )
        hidden_states = self.output(self.intermediate(hidden_states), hidden_states)
        return hidden_states, self_probs, cross_probs


class BertEncoder(nn.Module):
    """The stack of layers (transformers calls it the encoder in decoders too)."""

    def __init__(self, config) -> None:
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(config, i) for i in range(config.num_hidden_layers)])
        self.gradient_checkpointing = False  # set through the model's gradient_checkpointing_enable
        self._gradient_checkpointing_func = None

    def forward(
        self,
        hidden_states,
        attention_bias=None,
        is_causal: bool = False,
        encoder_hidden_states=None,
        encoder_bias=None,
        cache=None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        past_length: int = 0,
    ):
        """`cache`: a list of per-layer cache entries (see `_open_cache`), written in place, or None."""
        return _run_layers(self, self.layer, hidden_states, attention_bias, is_causal, encoder_hidden_states,
                           encoder_bias, cache, output_attentions, output_hidden_states, past_length)


class BertPooler(nn.Module):
    def __init__(self, config) -> None:
        super().__init__()
        self.dense = Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states):
        # The first token's state: [B, T, H] -> [B, H].
        return torch.tanh(self.dense(hidden_states[:, 0]))


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, config) -> None:
        super().__init__()
        self.dense = Linear(config.hidden_size, config.hidden_size)
        self.act = ACT2FN[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states):
        return self.LayerNorm(self.act(self.dense(hidden_states)))


class BertLMPredictionHead(nn.Module):
    """Transform, then the output projection whose bias is `bias` (one tensor, two names)."""

    def __init__(self, config) -> None:
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.decoder = Linear(config.hidden_size, config.vocab_size)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.decoder.bias = self.bias

    def forward(self, hidden_states):
        return self.decoder(self.transform(hidden_states))


class BertOnlyMLMHead(nn.Module):
    def __init__(self, config) -> None:
        super().__init__()
        self.predictions = BertLMPredictionHead(config)

    def forward(self, hidden_states):
        return self.predictions(hidden_states)


class BertModel(PreTrainedModel, _GradientCheckpointing, nn.Module):
    """BERT body: embeddings, layers, and (as an encoder) the pooler.

    With `config.is_decoder` the self-attention is causal, a cache may be used,
    and with `config.add_cross_attention` each layer attends the encoder's states.
    """

    embeddings_class = BertEmbeddings
    encoder_class = BertEncoder
    has_token_types = True

    def __init__(self, config, add_pooling_layer: bool = True) -> None:
        super().__init__()
        self.config = config
        self.embeddings = self.embeddings_class(config)
        self.encoder = self.encoder_class(config)
        self.pooler = BertPooler(config) if add_pooling_layer and not config.is_decoder else None

    def get_input_embeddings(self):
        return self.embeddings.word_embeddings

    def _embed(self, input_ids, token_type_ids, position_ids, past_length: int):
        """The first layer's input `[B, T, H]` (ELECTRA projects the embeddings to it)."""
        if self.has_token_types:
            return self.embeddings(input_ids, token_type_ids, position_ids, past_length)
        return self.embeddings(input_ids, position_ids, past_length)

    def _self_attention_bias(self, attention_mask, length, past_length, dtype, device):
        """(bias, is_causal) of the self-attention."""
        if not self.config.is_decoder:
            return _padding_bias(attention_mask, dtype), False
        return _decoder_self_bias(attention_mask, length, past_length, dtype, device)

    def forward(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
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
        decoder = cfg.is_decoder  # an encoder has no cache
        use_cache, past_length, cache, input_ids, token_type_ids, position_ids = _open_stack(
            cfg, cfg.num_hidden_layers, _checkpointing(self.encoder), past_key_values if decoder else None,
            use_cache if decoder else False, input_ids, attention_mask, token_type_ids, position_ids,
        )
        length = input_ids.shape[1]

        hidden = self._embed(input_ids, token_type_ids, position_ids, past_length)
        dtype = hidden.dtype
        bias, is_causal = self._self_attention_bias(attention_mask, length, past_length, dtype, hidden.device)
        hidden, all_hidden, all_self, all_cross = self.encoder(
            hidden, bias, is_causal, encoder_hidden_states, _encoder_bias(encoder_attention_mask, dtype), cache, output_attentions, output_hidden_states,
            past_length,
        )
        pooled = self.pooler(hidden) if self.pooler is not None else None
        past = _close_cache(cache, past_length, length, encoder_attention_mask) if use_cache else None
        return _stack_output(hidden, all_hidden, all_self, all_cross, past, return_dict, pooled)


class BertLMHeadModel(_CausalLM):
    """A BERT decoder with its LM head; the head's projection is the word embeddings when tied."""

    base_model_prefix = "bert"
    output_embeddings_path = "cls.predictions.decoder"

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config
        self.bert = BertModel(config, add_pooling_layer=False)
        self.cls = BertOnlyMLMHead(config)
        self._tie_output_embeddings()

    def compute_logits(self, hidden_states):
        """The LM head: `[..., H]` -> `[..., V]`."""
        return self.cls(hidden_states)
