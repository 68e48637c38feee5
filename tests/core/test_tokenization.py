"""encdec.tokenization without transformers: tokenizers built here with the `tokenizers` and
`sentencepiece` libraries, read back from their files, checked against those libraries' own
encodings (the comparison with transformers' AutoTokenizer is in tests/interop/test_text.py)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

tokenizers = pytest.importorskip("tokenizers")

from encdec.errors import ConfigError, InputError  # noqa: E402
from encdec.tokenization import (  # noqa: E402
    DECODER_TOKENIZER_DIR,
    AutoTokenizer,
    copy_tokenizer_files,
    describe_tokenizer,
    has_tokenizer,
    load_tokenizers,
    same_tokenizer,
)

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Héllo wörld, café crème brûlée!",
    "北京欢迎你, 東京タワー",
    "emoji 😀🎉 here and 👍🏽",
    "antidisestablishmentarianism" * 6,
    "",
    "   leading and trailing spaces   ",
    "Don't stop believing; it's 3.14 o'clock.",
]
WORDS = ("the of and to in is was for on that with as by at from it his an were are which this be has "
         "quick brown fox jumps lazy dog hello world cafe don't stop believing clock").split()


def training_lines():
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(WORDS, size=8)) for _ in range(400)]
    return lines + CORPUS * 3


def write_bert(folder, lower=True):
    os.makedirs(folder, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = sorted({c for line in training_lines() for c in line.lower() if not c.isspace()})
    vocab = specials + WORDS + chars + ["##" + c for c in chars]
    with open(os.path.join(folder, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(dict.fromkeys(vocab)) + "\n")
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "BertTokenizer", "do_lower_case": lower, "model_max_length": 24}, f)
    return folder


def write_bpe(folder, tokenizer_class="RobertaTokenizer"):
    from tokenizers import ByteLevelBPETokenizer

    os.makedirs(folder, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(training_lines(), vocab_size=400, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>", "<|endoftext|>"])
    bpe.save_model(str(folder))
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": tokenizer_class}, f)
    return folder, bpe


def write_spm(folder):
    spm = pytest.importorskip("sentencepiece")
    os.makedirs(folder, exist_ok=True)
    text = os.path.join(folder, "train.txt")
    with open(text, "w", encoding="utf-8") as f:
        f.write("\n".join(line for line in training_lines() if line) + "\n")
    spm.SentencePieceTrainer.train(input=text, model_prefix=os.path.join(folder, "spiece"), vocab_size=80,
                                   pad_id=0, unk_id=3, bos_id=1, eos_id=2, character_coverage=0.98,
                                   minloglevel=2)
    os.remove(text)
    os.remove(os.path.join(folder, "spiece.vocab"))
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "BertGenerationTokenizer"}, f)
    return folder, spm.SentencePieceProcessor(model_file=os.path.join(folder, "spiece.model"))


def wordpiece_reference(folder, lower=True):
    """What the tokenizers library's BertWordPieceTokenizer makes of the same vocab.txt."""
    from tokenizers import BertWordPieceTokenizer

    return BertWordPieceTokenizer(os.path.join(folder, "vocab.txt"), lowercase=lower, strip_accents=None)


@pytest.mark.parametrize("lower", [True, False])
def test_bert_vocab_matches_the_wordpiece_reference(tmp_path, lower):
    folder = write_bert(tmp_path / "bert", lower)
    tok = AutoTokenizer.from_pretrained(folder)
    ref = wordpiece_reference(folder, lower)
    assert tok(CORPUS)["input_ids"] == [e.ids for e in ref.encode_batch(CORPUS)]
    assert tok.cls_token_id == ref.token_to_id("[CLS]") and tok.pad_token_id == 0
    # A word longer than 100 characters is one [UNK], as in BERT.
    assert tok("x" * 101, add_special_tokens=False)["input_ids"] == [tok.unk_token_id]
    for ids in (e.ids for e in ref.encode_batch(CORPUS)):
        assert tok.decode(ids, skip_special_tokens=True) == ref.decode(ids, skip_special_tokens=True)
        assert tok.decode(ids).startswith("[CLS]")


def test_padding_and_truncation(tmp_path):
    tok = AutoTokenizer.from_pretrained(write_bert(tmp_path / "bert"))
    ref = wordpiece_reference(tmp_path / "bert")
    full = [e.ids for e in ref.encode_batch(CORPUS)]
    longest = max(len(r) for r in full)

    out = tok(CORPUS, padding=True, return_tensors="np")
    assert out["input_ids"].shape == (len(CORPUS), longest) and out["input_ids"].dtype == np.int64
    for row, mask, ids in zip(out["input_ids"], out["attention_mask"], full):
        assert row[: len(ids)].tolist() == ids and (row[len(ids):] == tok.pad_token_id).all()
        assert mask.tolist() == [1] * len(ids) + [0] * (longest - len(ids))
    assert out.input_ids is out["input_ids"] and (out["token_type_ids"] == 0).all()

    # truncation=True without max_length: model_max_length (24 here), [SEP] kept last.
    cut = tok(CORPUS, truncation=True)["input_ids"]
    for row, ids in zip(cut, full):
        assert row == (ids if len(ids) <= 24 else ids[:23] + [tok.sep_token_id])
    # max_length alone truncates too; padding="max_length" pads every row to it, pad_to_multiple_of rounds up.
    fixed = tok(CORPUS, padding="max_length", max_length=10, return_tensors="np")["input_ids"]
    assert fixed.shape == (len(CORPUS), 10) and (fixed[:, 0] == tok.cls_token_id).all()
    assert tok(CORPUS[:2], padding=True, pad_to_multiple_of=8, return_tensors="np")["input_ids"].shape[1] % 8 == 0
    assert tok(CORPUS, truncation=False)["input_ids"] == full
    # One string gives one row, unbatched, as in transformers.
    assert tok(CORPUS[0])["input_ids"] == full[0]
    assert tok.encode(CORPUS[0], add_special_tokens=False) == full[0][1:-1]


def test_bad_calls(tmp_path):
    tok = AutoTokenizer.from_pretrained(write_bert(tmp_path / "bert"))
    with pytest.raises(InputError, match="expected padding=True"):
        tok(CORPUS[:2], return_tensors="np")
    with pytest.raises(InputError, match="expected a string or a list of strings"):
        tok([1, 2])
    with pytest.raises(InputError, match="at least one string"):
        tok([])
    with pytest.raises(ConfigError, match="return_tensors='xyz'"):
        tok(CORPUS[:1], return_tensors="xyz")
    with pytest.raises(InputError, match="expected one sequence of integer ids"):
        tok.decode(np.zeros((2, 2), dtype=np.int64))


def test_byte_level_bpe_matches_the_library(tmp_path):
    folder, bpe = write_bpe(tmp_path / "roberta")
    tok = AutoTokenizer.from_pretrained(folder)
    bos, eos = bpe.token_to_id("<s>"), bpe.token_to_id("</s>")
    plain = [e.ids for e in bpe.encode_batch(CORPUS)]
    assert tok(CORPUS)["input_ids"] == [[bos] + ids + [eos] for ids in plain]
    assert tok.pad_token_id == bpe.token_to_id("<pad>")
    for text, ids in zip(CORPUS, plain):
        # Byte-level BPE gives the text back exactly, spaces and emoji included.
        assert tok.decode([bos] + ids + [eos], skip_special_tokens=True) == text
        assert tok.decode([bos] + ids + [eos]) == f"<s>{text}</s>"
    # GPT-2 adds nothing around the text.
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "GPT2Tokenizer"}, f)
    gpt2 = AutoTokenizer.from_pretrained(folder)
    assert gpt2(CORPUS)["input_ids"] == plain and gpt2.eos_token == "<|endoftext|>" and gpt2.pad_token is None
    with pytest.raises(ConfigError, match="pad_token="):
        gpt2(CORPUS, padding=True)
    padded = AutoTokenizer.from_pretrained(folder, pad_token="<|endoftext|>")(CORPUS, padding=True)
    assert padded["input_ids"][5] == [bpe.token_to_id("<|endoftext|>")] * max(map(len, plain))


def test_sentencepiece_matches_the_library(tmp_path):
    folder, sp = write_spm(tmp_path / "bertgen")
    tok = AutoTokenizer.from_pretrained(folder)
    assert tok(CORPUS)["input_ids"] == [sp.encode(t) for t in CORPUS]
    assert tok.pad_token_id == 0 and tok.eos_token_id == 2
    known = [ids for ids in (sp.encode(t) for t in CORPUS) if sp.unk_id() not in ids]
    assert len(known) >= 3
    for ids in known:
        assert tok.decode(ids, skip_special_tokens=True) == sp.decode(ids).strip()
    # An unknown piece is the unk token, which skip_special_tokens leaves out.
    pieces = "".join(sp.id_to_piece(i) for i in known[0]).replace("\u2581", " ")
    assert tok.decode([sp.unk_id()] + known[0]) == ("<unk>" + pieces).strip()
    assert tok(CORPUS[:1], truncation=True, max_length=3)["input_ids"] == [sp.encode(CORPUS[0])[:3]]


def test_overrides_and_save_pretrained_round_trip(tmp_path, caplog):
    folder = write_bert(tmp_path / "bert")
    tok = AutoTokenizer.from_pretrained(folder, eos_token="[SEP]", bos_token="[CLS]", pad_token="<pad>")
    assert "'<pad>' is not in the vocabulary" in caplog.text
    assert tok.pad_token_id == tok.vocab_size == len(tok) - 1
    assert tok.eos_token_id == tok.sep_token_id
    saved = tok.save_pretrained(tmp_path / "saved")
    assert "vocab.txt" in saved and "tokenizer.json" in saved
    back = AutoTokenizer.from_pretrained(tmp_path / "saved")
    assert back.special_tokens == tok.special_tokens and back.pad_token_id == tok.pad_token_id
    assert back(CORPUS, padding=True)["input_ids"] == tok(CORPUS, padding=True)["input_ids"]
    assert back.batch_decode(tok(CORPUS, padding=True, return_tensors="np")["input_ids"], skip_special_tokens=True) \
        == tok.batch_decode(tok(CORPUS, padding=True)["input_ids"], skip_special_tokens=True)


def test_folder_without_a_tokenizer_names_the_files_and_the_fix(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert not has_tokenizer(tmp_path) and describe_tokenizer(tmp_path) is None
    with pytest.raises(ConfigError) as e:
        AutoTokenizer.from_pretrained(tmp_path)
    assert "no tokenizer" in str(e.value) and "vocab.txt" in str(e.value) and "save_pretrained" in str(e.value)
    with pytest.raises(ConfigError, match="not a folder"):
        AutoTokenizer.from_pretrained(tmp_path / "absent")


def test_encoder_and_decoder_tokenizers(tmp_path):
    model = tmp_path / "bert2gpt2"
    copy_tokenizer_files(write_bert(tmp_path / "bert"), model)
    folder, _ = write_bpe(tmp_path / "gpt2", "GPT2Tokenizer")
    copy_tokenizer_files(folder, model / DECODER_TOKENIZER_DIR)
    encoder, decoder = load_tokenizers(model)
    assert encoder.tokenizer_class == "BertTokenizer" and decoder.tokenizer_class == "GPT2Tokenizer"
    assert "decoder: GPT2Tokenizer" in describe_tokenizer(model)
    assert same_tokenizer(model, tmp_path / "bert") and not same_tokenizer(model, folder)
    only = tmp_path / "one"
    copy_tokenizer_files(tmp_path / "bert", only)
    a, b = load_tokenizers(only)
    assert a is b


# ---------------------------------------------------------------------------- carried by the model folder
def _halves_with_tokenizers(tmp_path, decoder_tokenizer):
    """Two standalone BERT checkpoints (config + safetensors), each with a tokenizer folder's files."""
    from safetensors.numpy import save_file

    from encdec.config import BertConfig
    from encdec.weights.names import decoder_spec, encoder_spec

    small = dict(vocab_size=99, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=37,
                 max_position_embeddings=64)
    paths = {}
    for role, spec_of, cfg in (("enc", encoder_spec, BertConfig(**small)),
                               ("dec", decoder_spec, BertConfig(**small, is_decoder=True))):
        folder = tmp_path / role
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(cfg.to_dict()))
        rng = np.random.default_rng(0)
        save_file({p.name: rng.standard_normal(p.shape).astype(np.float32) for p in spec_of(cfg)},
                  str(folder / "model.safetensors"))
        paths[role] = folder
    write_bert(paths["enc"])
    if decoder_tokenizer == "same":
        write_bert(paths["dec"])
    elif decoder_tokenizer == "bpe":
        write_bpe(paths["dec"], "GPT2Tokenizer")
    return paths["enc"], paths["dec"]


@pytest.mark.parametrize("decoder_tokenizer", ["same", "bpe", "none"])
def test_joined_model_folder_carries_the_tokenizers(tmp_path, decoder_tokenizer):
    from encdec.weights.names import model_spec
    from encdec.weights.pretrained import join_pretrained, tokenizer_sources, write_model_folder

    enc, dec = _halves_with_tokenizers(tmp_path, decoder_tokenizer)
    config, state, _ = join_pretrained(enc, dec, {})
    assert "tokenizer" not in json.dumps(config.to_dict())  # the note stays out of config.json
    assert tokenizer_sources(config.copy())["encoder"] == str(enc)
    out = tmp_path / "model"
    out.mkdir()
    (out / "tokenizer.json").write_text("stale")  # a previous tokenizer is replaced, not mixed in
    (out / "README.md").write_text("kept")
    write_model_folder(out, state, model_spec(config), config, None)
    assert (out / "README.md").read_text() == "kept" and not (out / "tokenizer.json").exists()
    assert same_tokenizer(out, enc)
    assert (out / DECODER_TOKENIZER_DIR).is_dir() == (decoder_tokenizer == "bpe")
    encoder_tok, decoder_tok = load_tokenizers(out)
    assert encoder_tok(CORPUS)["input_ids"] == AutoTokenizer.from_pretrained(enc)(CORPUS)["input_ids"]
    if decoder_tokenizer == "bpe":
        assert decoder_tok.tokenizer_class == "GPT2Tokenizer" and same_tokenizer(out / DECODER_TOKENIZER_DIR, dec)
    else:
        assert decoder_tok is encoder_tok
    # Without a note (a config built elsewhere) a rewrite keeps the tokenizer already there.
    from encdec.config import EncoderDecoderConfig

    plain = EncoderDecoderConfig.from_dict(config.to_dict())
    write_model_folder(out, state, model_spec(plain), plain, None)
    assert same_tokenizer(out, enc)
