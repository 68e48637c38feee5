"""A save killed between its two renames: the next save or load recovers the checkpoint and cleans up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from core_refs import FILES, FIXTURES, REPO, assert_same_tensors, copy_case, read_native, weight_files
from encdec.config import EncoderDecoderConfig
from encdec.weights import convert_checkpoint, load_state, model_spec

KILLED_CONVERT = textwrap.dedent(
    """
    import os, signal, sys
    from encdec.weights import io
    from encdec.weights.convert import convert_checkpoint

    def kill(path):
        os.kill(os.getpid(), signal.SIGKILL)

    io.between_renames_hook = kill
    convert_checkpoint(sys.argv[1], sys.argv[2], sys.argv[3], progress=False)
    """
)


def _killed_convert(src, dst, to) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-c", KILLED_CONVERT, str(src), str(dst), to], env=env, capture_output=True)
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()


def _hidden(parent) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_load_after_a_kill_between_the_renames_finds_the_new_checkpoint(tmp_path):
    dst = copy_case("bert2gpt2", tmp_path / "dst", ["safetensors"])
    src = copy_case("bert2bert", tmp_path / "src", ["safetensors"])
    _killed_convert(src, dst, "flax")
    assert not dst.exists()  # killed with the old folder renamed away and the new one not yet in place
    assert len(_hidden(tmp_path)) == 2  # .dst.new-* (complete) and .dst.old-*
    state, report = load_state(dst, model_spec(EncoderDecoderConfig.from_pretrained(FIXTURES / "bert2bert")))
    assert report.format == "flax" and weight_files(dst) == [FILES["flax"]]
    assert_same_tensors(read_native(dst, "flax"), read_native(FIXTURES / "bert2bert", "flax"))
    assert _hidden(tmp_path) == []


def test_next_save_recovers_and_removes_the_leftovers_of_killed_saves(tmp_path):
    src = copy_case("bert2bert", tmp_path / "src", ["safetensors"])
    dst = tmp_path / "dst"
    convert_checkpoint(src, dst, "pt", progress=False)
    for _ in range(3):
        _killed_convert(src, dst, "tf")
        assert not dst.exists()
        convert_checkpoint(src, dst, "pt", progress=False)  # recovers the killed one's tf checkpoint, then writes
    assert _hidden(tmp_path) == []
    assert weight_files(dst) == [FILES["pt"]]
    assert_same_tensors(read_native(dst, "pt"), read_native(FIXTURES / "bert2bert", "pt"))


def test_a_symlink_destination_stays_a_symlink(tmp_path):
    src = copy_case("bert2bert", tmp_path / "src", ["safetensors"])
    real = tmp_path / "store" / "v1"
    convert_checkpoint(src, real, "pt", progress=False)
    link = tmp_path / "current"
    link.symlink_to(real, target_is_directory=True)
    convert_checkpoint(src, link, "flax", progress=False)
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert weight_files(real) == [FILES["flax"]]
    _killed_convert(src, link, "tf")
    assert link.is_symlink() and not real.exists()
    load_state(link, model_spec(EncoderDecoderConfig.from_pretrained(src)))
    assert link.is_symlink() and weight_files(real) == [FILES["tf"]]
    assert _hidden(real.parent) == []


def test_a_failure_between_the_renames_puts_the_old_checkpoint_back(tmp_path, monkeypatch):
    from encdec.weights import io

    src = copy_case("bert2bert", tmp_path / "src", ["safetensors"])
    dst = copy_case("bert2gpt2", tmp_path / "dst", ["safetensors"])
    before = (dst / FILES["safetensors"]).read_bytes()

    def fail(path):
        raise OSError("rename failed")

    monkeypatch.setattr(io, "between_renames_hook", fail)
    with pytest.raises(OSError, match="rename failed"):
        convert_checkpoint(src, dst, "pt", progress=False)
    assert (dst / FILES["safetensors"]).read_bytes() == before
    assert _hidden(tmp_path) == []


def test_leftovers_of_a_running_save_are_left_alone(tmp_path):
    from encdec.weights import io

    dst = copy_case("bert2bert", tmp_path / "dst", ["safetensors"])
    # a save in progress in another live process: this test's parent (the pytest runner's parent shell)
    live = tmp_path / f".dst.tmp-{io._host_tag()}-{os.getppid()}-abc123"
    live.mkdir()
    dead_pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f".dst.tmp-{io._host_tag()}-{int(dead_pid.stdout)}-abc123"
    dead.mkdir()
    assert io.recover_directory(dst) == [f"removed {dead.name}, left by a killed save"]
    assert live.exists() and not dead.exists()
