"""The models' docstring examples run and print what they say (speechbrain-style runnable examples)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "anoncli.models.unet",
    "anoncli.models.generators",
    "anoncli.models.injections",
    "anoncli.models.discriminator",
    "anoncli.models.chunking",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0, f"{name} has no runnable example"
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"
