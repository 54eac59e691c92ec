"""Shared fixtures for the bpe tests."""
from pathlib import Path

import pytest

from .corpora import SHAKESPEARE, multilingual_text


@pytest.fixture(scope="session")
def shakespeare() -> Path:
    if not SHAKESPEARE.exists():
        pytest.skip(f"{SHAKESPEARE} not present")
    return SHAKESPEARE


@pytest.fixture(scope="session")
def multilingual_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "multilingual.txt"
    path.write_bytes(multilingual_text().encode("utf-8"))
    return path
