"""Fixtures of the conformance-suite tests."""

from __future__ import annotations

import importlib.util

import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """The tiny models here run several times faster on one PyTorch thread than on
    two that spin-wait for each other on a busy machine; restored afterwards."""
    if importlib.util.find_spec("torch") is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("conformance")
