"""Tokenizers read from a checkpoint folder, as transformers' `AutoTokenizer` reads them; no framework.

    from encdec.tokenization import AutoTokenizer
    tok = AutoTokenizer.from_pretrained("path/to/model")
    batch = tok(["a text", "another"], padding=True, truncation=True, return_tensors="np")
    texts = tok.batch_decode(ids, skip_special_tokens=True)

What is read, in this order (the first that is present wins):

- `tokenizer.json`: the `tokenizers` library's own file, as it is;
- `vocab.txt`: BERT WordPiece, with `do_lower_case`, `strip_accents` and
  `tokenize_chinese_chars` from `tokenizer_config.json`;
- `vocab.json` + `merges.txt`: byte-level BPE (GPT-2 adds no special tokens;
  RoBERTa and BART add `<s> ... </s>`);
- `spiece.model` / `sentencepiece.bpe.model`: a SentencePiece model, through the
  `sentencepiece` library (BertGeneration: no special tokens added).

Special tokens come from the family's defaults, then `special_tokens_map.json`,
then `tokenizer_config.json`, then the keyword arguments of `from_pretrained`
(`pad_token="<pad>"`, ...); a token the vocabulary lacks is added after it.

A model whose encoder and decoder use different tokenizers (bert2gpt2) keeps the
encoder's tokenizer in the model folder itself (what `AutoTokenizer` loads there)
and the decoder's in its `decoder_tokenizer/` subfolder; `load_tokenizers` returns
both, the folder's own twice when there is no subfolder.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from .errors import ConfigError, InputError, MissingFrameworkError

logger = logging.getLogger("encdec")

DECODER_TOKENIZER_DIR = "decoder_tokenizer"
TOKENIZER_CONFIG = "tokenizer_config.json"
SPECIAL_TOKENS_MAP = "special_tokens_map.json"
TOKENIZER_JSON = "tokenizer.json"
SENTENCEPIECE_FILES = ("spiece.model", "sentencepiece.bpe.model")
# Every file a tokenizer may be made of; what save_pretrained copies and a model folder carries.
TOKENIZER_FILES = (TOKENIZER_JSON, TOKENIZER_CONFIG, SPECIAL_TOKENS_MAP, "added_tokens.json", "vocab.txt",
                   "vocab.json", "merges.txt") + SENTENCEPIECE_FILES
SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
# transformers' stand-in for "no limit" in model_max_length.
VERY_LARGE_INTEGER = int(1e30)
RETURN_TENSORS = ("np", "pt", "tf", "jax")

# tokenizer class (without "Fast") -> its special tokens when the files name none
FAMILY_DEFAULTS: dict[str, dict[str, Optional[str]]] = {
    "BertTokenizer": dict(unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]",
                          mask_token="[MASK]"),
    "RobertaTokenizer": dict(bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>",
                             unk_token="<unk>", pad_token="<pad>", mask_token="<mask>"),
    "GPT2Tokenizer": dict(unk_token="<|endoftext|>", bos_token="<|endoftext|>", eos_token="<|endoftext|>"),
    "BertGenerationTokenizer": dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                                    sep_token="<::::>"),
}
FAMILY_DEFAULTS["BartTokenizer"] = FAMILY_DEFAULTS["RobertaTokenizer"]
# ELECTRA's tokenizer is BERT's WordPiece under its own class name.
FAMILY_DEFAULTS["ElectraTokenizer"] = FAMILY_DEFAULTS["BertTokenizer"]
# RemBERT's SentencePiece tokenizer keeps BERT's bracketed special tokens.
FAMILY_DEFAULTS["RemBertTokenizer"] = dict(FAMILY_DEFAULTS["BertTokenizer"], bos_token="[CLS]", eos_token="[SEP]")
# config.json model_type -> tokenizer class, when tokenizer_config.json names none
MODEL_TYPE_TOKENIZERS = {"bert": "BertTokenizer", "roberta": "RobertaTokenizer", "gpt2": "GPT2Tokenizer",
                         "bart": "BartTokenizer", "bert-generation": "BertGenerationTokenizer",
                         "xlm-roberta": "XLMRobertaTokenizer", "camembert": "CamembertTokenizer",
                         "electra": "ElectraTokenizer",
                         "rembert": "RemBertTokenizer"}
SPIECE_UNDERLINE = "\u2581"


def _read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot be read as JSON ({e}); expected a tokenizer file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: holds {type(data).__name__}; expected a JSON object")
    return data


def _token_text(value: Any) -> Optional[str]:
    """A special token as the files write it: a string, or an AddedToken's dict with "content"."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) or value is None else str(value)


def tokenizer_files(directory: str | os.PathLike) -> list[str]:
    """The tokenizer files present in `directory` (names, in TOKENIZER_FILES order)."""
    return [name for name in TOKENIZER_FILES if os.path.isfile(os.path.join(directory, name))]


def has_tokenizer(directory: str | os.PathLike) -> bool:
    """Whether `directory` holds a tokenizer that `AutoTokenizer.from_pretrained` can read."""
    present = set(tokenizer_files(directory))
    return bool(present & ({TOKENIZER_JSON, "vocab.txt", *SENTENCEPIECE_FILES})) or {"vocab.json", "merges.txt"} <= present


def _missing_message(directory: str) -> str:
    return (
        f"{directory}: no tokenizer; expected tokenizer.json, vocab.txt (BERT), vocab.json + merges.txt "
        f"(GPT-2, RoBERTa, BART) or spiece.model / sentencepiece.bpe.model (SentencePiece). Save one there with "
        f"`tokenizer.save_pretrained(folder)` (transformers' or encdec's), or copy the tokenizer files of the "
        f"encoder's checkpoint into the folder"
    )


def _tokenizer_class(directory: str, settings: Mapping[str, Any], present: set[str]) -> str:
    name = settings.get("tokenizer_class")
    if isinstance(name, str) and name:
        return name[:-4] if name.endswith("Fast") else name
    config_path = os.path.join(directory, "config.json")
    if os.path.isfile(config_path):
        config = _read_json(config_path)
        # An encoder-decoder folder: its input side is the encoder's.
        model_type = (config.get("encoder") or {}).get("model_type") or config.get("model_type")
        if model_type in MODEL_TYPE_TOKENIZERS:
            return MODEL_TYPE_TOKENIZERS[model_type]
    if "vocab.txt" in present:
        return "BertTokenizer"
    if "vocab.json" in present:
        return "GPT2Tokenizer"
    if present & set(SENTENCEPIECE_FILES):
        return "BertGenerationTokenizer"
    return "PreTrainedTokenizer"


class BatchEncoding(dict):
    """What a tokenizer call returns: a dict (`input_ids`, `attention_mask`) also read as attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def to(self, device: Any) -> "BatchEncoding":
        """The tensors moved to `device` (PyTorch's `tokenizer(...).to(model.device)`)."""
        return BatchEncoding({k: v.to(device) if hasattr(v, "to") else v for k, v in self.items()})


def as_tensors(arrays: Mapping[str, np.ndarray], return_tensors: Optional[str]) -> dict:
    """Turn int64 numpy arrays into `return_tensors`' type, importing that framework only then."""
    if return_tensors in (None, "np"):
        return dict(arrays)
    if return_tensors not in RETURN_TENSORS:
        raise ConfigError(f"return_tensors={return_tensors!r}; expected one of {RETURN_TENSORS} or None")
    module = {"pt": "torch", "tf": "tensorflow", "jax": "jax"}[return_tensors]
    try:
        framework = __import__(module)
    except ImportError:
        raise MissingFrameworkError(
            f"return_tensors={return_tensors!r} needs {module!r}, which is not installed; "
            f"expected return_tensors='np' or that framework installed"
        ) from None
    if return_tensors == "pt":
        return {k: framework.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
    if return_tensors == "tf":
        return {k: framework.constant(v) for k, v in arrays.items()}
    import jax.numpy as jnp

    return {k: jnp.asarray(v) for k, v in arrays.items()}


def clean_up_tokenization(text: str) -> str:
    """transformers' clean-up of the spaces WordPiece decoding leaves before punctuation."""
    for old, new in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                     (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(old, new)
    return text


class _TokenizersBackend:
    """A `tokenizers.Tokenizer`: its own normalizer, pre-tokenizer, model, post-processor and decoder."""

    kind = "tokenizers"

    def __init__(self, tokenizer: Any) -> None:
        # A tokenizer.json may carry its own padding and truncation; the call decides them here.
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self.tokenizer = tokenizer

    def encode(self, texts: Sequence[str], add_special_tokens: bool, max_length: Optional[int]) -> list[list[int]]:
        """Ids of each text, special tokens added, truncated on the right to at most `max_length` in all."""
        encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        extra = self.tokenizer.num_special_tokens_to_add(False) if add_special_tokens else 0
        out = []
        for encoding in encodings:
            if max_length is not None and len(encoding.ids) + extra > max_length:
                encoding.truncate(max(max_length - extra, 0))
            if add_special_tokens:
                encoding = self.tokenizer.post_process(encoding, None, True)
            out.append(list(encoding.ids))
        return out

    def decode(self, ids: Sequence[int], skip_special_tokens: bool) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> Optional[int]:
        return self.tokenizer.token_to_id(token)

    def id_to_token(self, index: int) -> Optional[str]:
        return self.tokenizer.id_to_token(index)

    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def add_special_token(self, token: str) -> int:
        from tokenizers import AddedToken

        self.tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False)])
        return self.tokenizer.token_to_id(token)

    def is_bpe(self) -> bool:
        return type(self.tokenizer.model).__name__ == "BPE"


class _SentencePieceBackend:
    """A SentencePiece model through the `sentencepiece` library, as transformers' SentencePieceBackend uses it."""

    kind = "sentencepiece"

    def __init__(self, path: str) -> None:
        try:
            import sentencepiece
        except ImportError:
            raise MissingFrameworkError(
                f"{path}: a SentencePiece model needs the 'sentencepiece' package, which is not installed; "
                "install it with: pip install sentencepiece (or save the tokenizer as tokenizer.json)"
            ) from None
        self.path = path
        self.model = sentencepiece.SentencePieceProcessor()
        self.model.Load(path)
        self.added: dict[str, int] = {}  # tokens beyond the model's pieces
        self.special: set[str] = set()

    def _pieces(self, text: str) -> list[int]:
        # Special tokens written in the text are matched first, longest first; the rest goes to the model.
        ids: list[int] = []
        tokens = sorted(self.special | set(self.added), key=len, reverse=True)
        start = 0
        while start <= len(text):
            hit = min(((text.find(t, start), -len(t), t) for t in tokens if text.find(t, start) >= 0), default=None)
            end = hit[0] if hit else len(text)
            if end > start:
                ids.extend(self.model.encode(text[start:end], out_type=int))
            if hit is None:
                break
            ids.append(self.token_to_id(hit[2]))
            start = end + len(hit[2])
        return ids

    def encode(self, texts: Sequence[str], add_special_tokens: bool, max_length: Optional[int]) -> list[list[int]]:
        # BertGeneration adds no special tokens, so truncation is of the pieces alone.
        out = [self._pieces(t) for t in texts]
        return [ids[:max_length] if max_length is not None else ids for ids in out]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool) -> str:
        special_ids = {self.token_to_id(t) for t in self.special}
        pieces = [self.id_to_token(i) for i in ids if not (skip_special_tokens and i in special_ids)]
        return "".join(p for p in pieces if p is not None).replace(SPIECE_UNDERLINE, " ").strip()

    def token_to_id(self, token: str) -> Optional[int]:
        if token in self.added:
            return self.added[token]
        index = self.model.piece_to_id(token)
        return index if self.model.id_to_piece(index) == token else None

    def id_to_token(self, index: int) -> Optional[str]:
        if 0 <= index < self.model.get_piece_size():
            return self.model.id_to_piece(index)
        return next((t for t, i in self.added.items() if i == index), None)

    def vocab_size(self) -> int:
        return self.model.get_piece_size() + len(self.added)

    def add_special_token(self, token: str) -> int:
        self.special.add(token)
        index = self.token_to_id(token)
        if index is None:
            index = self.added[token] = self.vocab_size()
        return index

    def is_bpe(self) -> bool:
        return False


def _bert_backend(directory: str, settings: Mapping[str, Any]) -> _TokenizersBackend:
    from tokenizers import Tokenizer as RustTokenizer
    from tokenizers import decoders, normalizers, pre_tokenizers
    from tokenizers.models import WordPiece

    vocab: dict[str, int] = {}
    with open(os.path.join(directory, "vocab.txt"), encoding="utf-8") as f:
        for index, line in enumerate(f):
            vocab.setdefault(line.rstrip("\n"), index)
    unk = _token_text(settings.get("unk_token")) or "[UNK]"
    tokenizer = RustTokenizer(WordPiece(vocab, unk_token=unk))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=bool(settings.get("tokenize_chinese_chars", True)),
        strip_accents=settings.get("strip_accents"),
        lowercase=bool(settings.get("do_lower_case", True)),
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    return _TokenizersBackend(tokenizer)


def _bpe_backend(directory: str, settings: Mapping[str, Any]) -> _TokenizersBackend:
    from tokenizers import Tokenizer as RustTokenizer
    from tokenizers import decoders, pre_tokenizers
    from tokenizers.models import BPE

    vocab, merges = BPE.read_file(os.path.join(directory, "vocab.json"), os.path.join(directory, "merges.txt"))
    tokenizer = RustTokenizer(BPE(vocab, merges, dropout=None, continuing_subword_prefix="", end_of_word_suffix="",
                                  fuse_unk=False))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=bool(settings.get("add_prefix_space", False)))
    tokenizer.decoder = decoders.ByteLevel()
    return _TokenizersBackend(tokenizer)


def _post_processor(cls_name: str, backend: _TokenizersBackend, special: Mapping[str, Optional[str]],
                    settings: Mapping[str, Any]) -> None:
    """The special tokens a family adds around a text, as transformers' tokenizer classes set them."""
    from tokenizers import processors

    def entry(name: str) -> tuple[str, int]:
        token = special.get(name)
        if token is None or backend.token_to_id(token) is None:
            raise ConfigError(f"{cls_name} adds {name} around each text, but it is not set; expected {name}=...")
        return token, backend.token_to_id(token)

    if cls_name in ("BertTokenizer", "ElectraTokenizer"):
        (cls, cls_id), (sep, sep_id) = entry("cls_token"), entry("sep_token")
        backend.tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{cls}:0 $A:0 {sep}:0", pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
            special_tokens=[(cls, cls_id), (sep, sep_id)])
    elif cls_name in ("RobertaTokenizer", "BartTokenizer"):
        backend.tokenizer.post_processor = processors.RobertaProcessing(
            entry("sep_token"), entry("cls_token"), trim_offsets=bool(settings.get("trim_offsets", True)),
            add_prefix_space=bool(settings.get("add_prefix_space", False)))


MODEL_INPUT_NAMES = {"BertTokenizer": ("input_ids", "token_type_ids", "attention_mask"),
                     "ElectraTokenizer": ("input_ids", "token_type_ids", "attention_mask")}


def _as_id_list(ids: Any) -> list[int]:
    array = np.asarray(ids)
    if array.ndim != 1 or not (array.dtype.kind in "iu" or array.size == 0):
        raise InputError(f"ids have shape {array.shape} and dtype {array.dtype}; expected one sequence of integer ids")
    return [int(i) for i in array]


class Tokenizer:
    """A tokenizer read from a folder; the call, `decode`, `batch_decode` and `save_pretrained` of transformers'.

    Build it with `Tokenizer.from_pretrained(folder, **special_token_overrides)`
    (also `AutoTokenizer.from_pretrained`).
    """

    def __init__(self, backend: Any, special_tokens: Mapping[str, Optional[str]], *, tokenizer_class: str,
                 settings: Mapping[str, Any], source: Optional[str] = None) -> None:
        self.backend = backend
        self.tokenizer_class = tokenizer_class
        self.settings = dict(settings)
        self.source = source
        self.special_tokens = {name: special_tokens.get(name) for name in SPECIAL_TOKEN_NAMES}
        self.model_max_length = int(settings.get("model_max_length") or VERY_LARGE_INTEGER)
        self.clean_up_tokenization_spaces = bool(settings.get("clean_up_tokenization_spaces", False))
        self.model_input_names = MODEL_INPUT_NAMES.get(tokenizer_class, ("input_ids", "attention_mask"))
        self.added_tokens: list[str] = []
        for token in [t for t in self.special_tokens.values() if t is not None] + list(settings.get("_added", ())):
            if backend.token_to_id(token) is None:
                self.added_tokens.append(token)
                logger.warning("special token %r is not in the vocabulary; added as id %d", token,
                               backend.add_special_token(token))
            else:
                backend.add_special_token(token)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **overrides: Any) -> "Tokenizer":
        """Read the tokenizer in `directory`; keyword arguments set special tokens (`pad_token="<pad>"`)
        and tokenizer_config.json options (`do_lower_case=False`, `model_max_length=128`).

        Raises ConfigError naming the files expected when the folder holds no tokenizer.
        """
        directory = os.fspath(directory)
        if not os.path.isdir(directory):
            raise ConfigError(f"{directory}: not a folder; expected a folder holding a tokenizer")
        present = set(tokenizer_files(directory))
        if not has_tokenizer(directory):
            raise ConfigError(_missing_message(directory))
        settings: dict[str, Any] = {}
        for name in (SPECIAL_TOKENS_MAP, TOKENIZER_CONFIG):
            if name in present:
                settings.update(_read_json(os.path.join(directory, name)))
        settings.update(overrides)
        cls_name = _tokenizer_class(directory, settings, present)
        special = dict(FAMILY_DEFAULTS.get(cls_name, {}))
        for name in SPECIAL_TOKEN_NAMES:
            if name in settings:
                special[name] = _token_text(settings[name])
        added = [_token_text(t) for _, t in sorted((settings.get("added_tokens_decoder") or {}).items(),
                                                    key=lambda kv: int(kv[0]))]
        settings["_added"] = [t for t in added if t]
        if TOKENIZER_JSON in present:
            from tokenizers import Tokenizer as RustTokenizer

            try:
                backend: Any = _TokenizersBackend(RustTokenizer.from_file(os.path.join(directory, TOKENIZER_JSON)))
            except Exception as e:  # the library raises its own Exception type for a bad file
                raise ConfigError(f"{os.path.join(directory, TOKENIZER_JSON)}: cannot be read ({e}); "
                                  "expected a tokenizers file") from None
        elif "vocab.txt" in present:
            backend = _bert_backend(directory, dict(settings, unk_token=special.get("unk_token")))
        elif {"vocab.json", "merges.txt"} <= present:
            backend = _bpe_backend(directory, settings)
        else:
            spm = next(n for n in SENTENCEPIECE_FILES if n in present)
            if cls_name not in ("BertGenerationTokenizer", "PreTrainedTokenizer"):
                raise ConfigError(
                    f"{directory}: a {cls_name} from {spm} alone is not supported; expected tokenizer.json "
                    f"(transformers' AutoTokenizer.from_pretrained(folder).save_pretrained(folder) writes it) "
                    f"or a BertGenerationTokenizer"
                )
            backend = _SentencePieceBackend(os.path.join(directory, spm))
        tokenizer = cls(backend, special, tokenizer_class=cls_name, settings=settings, source=directory)
        if TOKENIZER_JSON not in present and isinstance(backend, _TokenizersBackend):
            _post_processor(cls_name, backend, tokenizer.special_tokens, settings)
        return tokenizer

    # ------------------------------------------------------------------ special tokens
    def __getattr__(self, name: str) -> Any:
        # bos_token, pad_token_id, ... as transformers names them.
        if name in SPECIAL_TOKEN_NAMES:
            return self.__dict__["special_tokens"][name]
        if name.endswith("_id") and name[:-3] in SPECIAL_TOKEN_NAMES:
            token = self.__dict__["special_tokens"][name[:-3]]
            return None if token is None else self.backend.token_to_id(token)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    @property
    def all_special_ids(self) -> list[int]:
        ids = {self.backend.token_to_id(t) for t in self.special_tokens.values() if t is not None}
        return sorted(i for i in ids if i is not None)

    @property
    def vocab_size(self) -> int:
        return self.backend.vocab_size() - len(self.added_tokens)

    def __len__(self) -> int:
        return self.backend.vocab_size()

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> Any:
        if isinstance(tokens, str):
            return self.backend.token_to_id(tokens)
        return [self.backend.token_to_id(t) for t in tokens]

    def convert_ids_to_tokens(self, ids: Any) -> Any:
        if isinstance(ids, (int, np.integer)):
            return self.backend.id_to_token(int(ids))
        return [self.backend.id_to_token(i) for i in _as_id_list(ids)]

    # ------------------------------------------------------------------ encoding
    def encode(self, text: str, add_special_tokens: bool = True, truncation: Optional[bool] = None,
               max_length: Optional[int] = None, return_tensors: Optional[str] = None) -> Any:
        """The ids of one text: a list, or with `return_tensors` a `[1, L]` tensor (transformers' encode)."""
        return self(text, add_special_tokens=add_special_tokens, truncation=truncation,
                    max_length=max_length, return_tensors=return_tensors)["input_ids"]

    def __call__(self, text: str | Sequence[str], padding: bool | str = False, truncation: Optional[bool | str] = None,
                 max_length: Optional[int] = None, return_tensors: Optional[str] = None,
                 add_special_tokens: bool = True, pad_to_multiple_of: Optional[int] = None,
                 return_attention_mask: bool = True, return_token_type_ids: Optional[bool] = None) -> BatchEncoding:
        """Encode a text or a batch of texts as transformers' tokenizers do.

        padding: False / "do_not_pad", True / "longest" (to the longest in the batch),
        "max_length" (to `max_length`, else model_max_length). truncation: True /
        "longest_first" / "only_first" cuts on the right to `max_length` (else
        model_max_length) counting the special tokens; None truncates only when
        `max_length` is given. return_tensors: None (lists), "np", "pt", "tf", "jax".
        """
        single = isinstance(text, str)
        texts = [text] if single else text
        if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
            raise InputError(f"text is {type(text).__name__}; expected a string or a list of strings")
        if not texts:
            raise InputError("text is an empty list; expected at least one string")
        if padding not in (True, False, "longest", "max_length", "do_not_pad"):
            raise ConfigError(f"padding={padding!r}; expected True, False, 'longest', 'max_length' or 'do_not_pad'")
        if truncation not in (None, True, False, "longest_first", "only_first", "do_not_truncate"):
            raise ConfigError(f"truncation={truncation!r}; expected True, False, 'longest_first' or 'only_first'")
        limit = max_length if max_length is not None else (
            self.model_max_length if self.model_max_length < VERY_LARGE_INTEGER else None)
        cut = truncation in (True, "longest_first", "only_first") or (truncation is None and max_length is not None)
        ids = self.backend.encode(texts, add_special_tokens, limit if cut else None)
        if padding in (True, "longest"):
            width = max(len(row) for row in ids)
        elif padding == "max_length":
            if limit is None:
                raise ConfigError("padding='max_length' without max_length and no model_max_length; "
                                  "expected max_length=N")
            width = limit
        else:
            width = None
        if width is not None and pad_to_multiple_of:
            width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
        masks = [[1] * len(row) for row in ids]
        if width is not None:
            pad_id = self.pad_token_id
            if pad_id is None:
                raise ConfigError(f"padding needs a pad token and the {self.tokenizer_class} has none; expected "
                                  "pad_token=... in from_pretrained (e.g. the eos token)")
            ids = [row + [pad_id] * (width - len(row)) for row in ids]
            masks = [row + [0] * (width - len(row)) for row in masks]
        out: dict[str, Any] = {"input_ids": ids}
        with_types = return_token_type_ids if return_token_type_ids is not None else (
            "token_type_ids" in self.model_input_names)
        if with_types:
            out["token_type_ids"] = [[0] * len(row) for row in ids]
        if return_attention_mask:
            out["attention_mask"] = masks
        if return_tensors is None:
            return BatchEncoding({k: v[0] for k, v in out.items()} if single else out)
        if len({len(row) for row in ids}) > 1:
            raise InputError(f"the texts have {sorted({len(r) for r in ids})} tokens; expected padding=True to "
                             f"return them as one {return_tensors!r} tensor")
        arrays = {k: np.asarray(v, dtype=np.int64).reshape(len(v), -1) for k, v in out.items()}
        return BatchEncoding(as_tensors(arrays, return_tensors))

    # ------------------------------------------------------------------ decoding
    def decode(self, token_ids: Any, skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: Optional[bool] = None) -> str:
        ids = [int(token_ids)] if isinstance(token_ids, (int, np.integer)) else _as_id_list(token_ids)
        text = self.backend.decode(ids, skip_special_tokens)
        clean = self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None else clean_up_tokenization_spaces
        # transformers skips the clean-up for BPE, where it would remove real spaces before punctuation.
        if clean and not self.backend.is_bpe():
            text = clean_up_tokenization(text)
        return text

    def batch_decode(self, sequences: Any, skip_special_tokens: bool = False,
                     clean_up_tokenization_spaces: Optional[bool] = None) -> list[str]:
        if not isinstance(sequences, (list, tuple)):
            sequences = np.asarray(sequences)
            if sequences.ndim != 2:
                raise InputError(f"sequences have shape {sequences.shape}; expected [batch, length] ids")
        return [self.decode(row, skip_special_tokens, clean_up_tokenization_spaces) for row in sequences]

    # ------------------------------------------------------------------ saving
    def save_pretrained(self, directory: str | os.PathLike) -> tuple[str, ...]:
        """Write the tokenizer into `directory` (created if needed); returns the file names written.

        The vocabulary files it was read from are copied; tokenizer_config.json and
        special_tokens_map.json are written with the special tokens in force, and the
        tokens that were added to the vocabulary.
        """
        directory = os.fspath(directory)
        os.makedirs(directory, exist_ok=True)
        written = []
        if self.source is not None:
            for name in tokenizer_files(self.source):
                if name in (TOKENIZER_CONFIG, SPECIAL_TOKENS_MAP):
                    continue
                src, dst = os.path.join(self.source, name), os.path.join(directory, name)
                if not (os.path.exists(dst) and os.path.samefile(src, dst)):
                    shutil.copyfile(src, dst)
                written.append(name)
        if isinstance(self.backend, _TokenizersBackend) and (self.added_tokens or TOKENIZER_JSON not in written):
            self.backend.tokenizer.save(os.path.join(directory, TOKENIZER_JSON))
            written.append(TOKENIZER_JSON) if TOKENIZER_JSON not in written else None
        special = {k: v for k, v in self.special_tokens.items() if v is not None}
        config = {k: v for k, v in self.settings.items() if not k.startswith("_") and k != "added_tokens_decoder"}
        config.update(special, tokenizer_class=self.tokenizer_class)
        if self.added_tokens:
            config["added_tokens_decoder"] = {
                str(self.backend.token_to_id(t)): {"content": t, "special": True} for t in self.added_tokens}
        for name, data in ((TOKENIZER_CONFIG, config), (SPECIAL_TOKENS_MAP, special)):
            with open(os.path.join(directory, name), "w", encoding="utf-8") as f:
                json.dump(data, f, indent=2, ensure_ascii=False, sort_keys=True)
            written.append(name)
        return tuple(written)

    def __repr__(self) -> str:
        return (f"{self.tokenizer_class}({self.source!r}, vocab {len(self)}, "
                f"{self.backend.kind}, special {self.special_tokens})")


AutoTokenizer = Tokenizer


def load_tokenizers(directory: str | os.PathLike, **overrides: Any) -> tuple[Tokenizer, Tokenizer]:
    """(encoder tokenizer, decoder tokenizer) of a model folder: the folder's own, and
    `decoder_tokenizer/`'s when present (else the folder's own again)."""
    directory = os.fspath(directory)
    encoder = Tokenizer.from_pretrained(directory, **overrides)
    sub = os.path.join(directory, DECODER_TOKENIZER_DIR)
    decoder = Tokenizer.from_pretrained(sub, **overrides) if os.path.isdir(sub) else encoder
    return encoder, decoder


def describe_tokenizer(directory: str | os.PathLike) -> Optional[str]:
    """One line naming the tokenizer a folder holds (its class and files), or None when it has none."""
    directory = os.fspath(directory)
    if not has_tokenizer(directory):
        return None
    present = tokenizer_files(directory)
    settings = {}
    if TOKENIZER_CONFIG in present:
        settings = _read_json(os.path.join(directory, TOKENIZER_CONFIG))
    line = f"{_tokenizer_class(directory, settings, set(present))} ({', '.join(present)})"
    sub = os.path.join(directory, DECODER_TOKENIZER_DIR)
    if os.path.isdir(sub) and has_tokenizer(sub):
        line += f"; decoder: {describe_tokenizer(sub)}"
    return line


def copy_tokenizer_files(src: str | os.PathLike, dst: str | os.PathLike) -> list[str]:
    """Copy the tokenizer files of folder `src` into `dst` (created if needed); returns their names."""
    names = tokenizer_files(src)
    if names:
        os.makedirs(dst, exist_ok=True)
    for name in names:
        shutil.copyfile(os.path.join(src, name), os.path.join(dst, name))
    return names


def same_tokenizer(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two folders hold the same tokenizer files, byte for byte."""
    names = tokenizer_files(a)
    if names != tokenizer_files(b):
        return False
    for name in names:
        with open(os.path.join(a, name), "rb") as fa, open(os.path.join(b, name), "rb") as fb:
            if fa.read() != fb.read():
                return False
    return True


__all__ = ["AutoTokenizer", "BatchEncoding", "DECODER_TOKENIZER_DIR", "TOKENIZER_FILES", "Tokenizer",
           "copy_tokenizer_files", "describe_tokenizer", "has_tokenizer", "load_tokenizers", "same_tokenizer",
           "tokenizer_files"]
