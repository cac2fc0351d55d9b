import pytest


@pytest.fixture
def anyio_backend() -> str:
    # tnode nodes run on trio.
    return "trio"
