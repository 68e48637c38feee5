"""The `encdec` command, and conversion with no framework importable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from core_refs import FILES, FIXTURES, REPO, assert_same_tensors, copy_case, read_native, weight_files
from encdec import cli

FRAMEWORKS = ("torch", "tensorflow", "jax", "jaxlib", "flax", "keras", "tf_keras")

BLOCKER = textwrap.dedent(
    f"""
    # Makes every deep-learning framework unimportable in this interpreter.
    import sys

    class _Blocker:
        blocked = {FRAMEWORKS!r}

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.blocked:
                raise ImportError(f"{{name}} is blocked in this test")
            return None

    sys.meta_path.insert(0, _Blocker())
    """
)


def _run_blocked(tmp_path, *args, check=True):
    blocker = tmp_path / "blocker"
    blocker.mkdir(exist_ok=True)
    (blocker / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(blocker), str(REPO)]))
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=REPO)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_convert_runs_with_every_framework_unimportable(tmp_path):
    # the blocker really blocks
    probe = _run_blocked(tmp_path, "-c", "import torch", check=False)
    assert probe.returncode != 0 and "blocked in this test" in probe.stderr
    case = "bert2bert"
    src = copy_case(case, tmp_path / "src", ["tf"])
    for target in ("safetensors", "pt", "flax", "tf"):
        out = tmp_path / target
        _run_blocked(tmp_path, "-m", "encdec", "convert", str(src), str(out), "--to", target, "--shard-size", "80KB")
        assert_same_tensors(read_native(out, target), read_native(FIXTURES / case, target), target)
        src = out  # chain: tf -> safetensors -> pt -> flax -> tf
    result = _run_blocked(tmp_path, "-m", "encdec", "inspect", str(src))
    assert "ok" in result.stdout
    modules = _run_blocked(
        tmp_path,
        "-c",
        "import sys, json; from encdec.cli import main; main(['inspect', sys.argv[1]]); "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{FRAMEWORKS!r})))",
        str(src),
    )
    assert json.loads(modules.stdout.strip().splitlines()[-1]) == []


def test_cli_convert_with_options(tmp_path, capsys):
    src = copy_case("bert2gpt2", tmp_path / "src", ["pt"])
    (src / "tokenizer.json").write_text("{}")
    (src / "decoder_tokenizer").mkdir()
    (src / "decoder_tokenizer" / "vocab.json").write_text('{"a": 0}')
    (src / "decoder_tokenizer" / "merges.txt").write_text("#version: 0.2\n")
    code = cli.main(["convert", str(src), str(tmp_path / "out"), "--to", "flax", "--dtype", "float16", "--shard-size", "50KB"])
    assert code == 0
    out = capsys.readouterr().out
    assert "pytorch_model.bin (pt)" in out and "flax_model.msgpack.index.json" in out
    assert "ignored decoder.lm_head.weight" in out
    tensors = read_native(tmp_path / "out", "flax")
    assert {str(v.dtype) for v in tensors.values()} == {"float16"}
    # The tokenizers travel with the model: the encoder's in the folder, the decoder's in decoder_tokenizer/.
    assert (tmp_path / "out" / "tokenizer.json").read_text() == "{}"
    assert sorted(os.listdir(tmp_path / "out" / "decoder_tokenizer")) == ["merges.txt", "vocab.json"]
    assert (tmp_path / "out" / "decoder_tokenizer" / "vocab.json").read_text() == '{"a": 0}'


def test_cli_inspect_reports_formats_and_problems(tmp_path, capsys):
    assert cli.main(["inspect", str(FIXTURES / "roberta2roberta")]) == 0
    out = capsys.readouterr().out
    for fmt in ("safetensors", "pt", "tf", "flax"):
        assert fmt in out
    assert "roberta" in out and "parameters:" in out

    # a checkpoint with an extra and a missing tensor: exit code 1, both named
    from safetensors.numpy import save_file

    folder = copy_case("bert2bert", tmp_path / "bad", [])
    tensors = read_native(FIXTURES / "bert2bert", "safetensors")
    tensors.pop("encoder.pooler.dense.bias")
    tensors["encoder.extra.weight"] = tensors["encoder.pooler.dense.weight"]
    save_file({k: v.copy() for k, v in tensors.items()}, str(folder / FILES["safetensors"]))
    assert cli.main(["inspect", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "1 missing" in out and "1 unexpected" in out
    assert "encoder.pooler.dense.bias" in out and "encoder.extra.weight" in out


def test_cli_errors_exit_3_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "encdec", "convert", str(tmp_path / "nothing"), str(tmp_path / "out"), "--to", "pt"],
        capture_output=True, text=True, cwd=REPO,
    )
    assert result.returncode == cli.EXIT_BAD_INPUT
    assert "Traceback" not in result.stderr and "config.json" in result.stderr
    folder = copy_case("bert2bert", tmp_path / "truncated", ["safetensors"])
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    result = subprocess.run(
        [sys.executable, "-m", "encdec", "convert", str(folder), str(tmp_path / "out"), "--to", "pt"],
        capture_output=True, text=True, cwd=REPO,
    )
    assert result.returncode == cli.EXIT_BAD_INPUT and "Traceback" not in result.stderr
    assert result.stderr.startswith("encdec: error: ") and "model.safetensors: truncated" in result.stderr
    assert not (tmp_path / "out").exists()


def test_cli_can_be_extended():
    added = []

    def add_hello(sub):
        p = sub.add_parser("hello")
        p.set_defaults(func=lambda args: added.append("ran") or 0)
        return p

    cli.SUBCOMMANDS["hello"] = add_hello
    try:
        assert cli.main(["hello"]) == 0 and added == ["ran"]
    finally:
        del cli.SUBCOMMANDS["hello"]
    with pytest.raises(SystemExit):
        cli.main(["hello"])


def test_parse_size_and_atomic_directory(tmp_path):
    from encdec.errors import ConfigError
    from encdec.weights.io import atomic_directory, parse_size

    assert parse_size("5GB") == 5 * 10**9 and parse_size("500MB") == 500 * 10**6
    assert parse_size("2GiB") == 2 * 2**30 and parse_size(1234) == 1234 and parse_size("10kb") == 10_000
    for bad in ("lots", "5XB", "-1GB", 0):
        with pytest.raises(ConfigError):
            parse_size(bad)

    target = tmp_path / "ckpt"
    target.mkdir()
    (target / "old.txt").write_text("old")
    (target / "keep.txt").write_text("keep")
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            with open(os.path.join(tmp, "old.txt"), "w") as f:
                f.write("half")
            raise RuntimeError("crash mid-save")
    assert (target / "old.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temporary left
    with atomic_directory(target, keep=lambda name: name != "drop.txt") as tmp:
        with open(os.path.join(tmp, "old.txt"), "w") as f:
            f.write("new")
        (target / "drop.txt").write_text("stale")
    assert (target / "old.txt").read_text() == "new" and (target / "keep.txt").read_text() == "keep"
    assert not (target / "drop.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    assert weight_files(target) == []
