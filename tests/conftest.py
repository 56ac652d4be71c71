import pathlib

import pytest

DATA = pathlib.Path(__file__).parent / "data"


@pytest.fixture
def data_dir() -> pathlib.Path:
    """tests/data: golden outputs of the reference implementations (copied from shared/golden)."""
    return DATA
