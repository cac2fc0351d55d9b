import os

import pytest

# Tests see only built-in plugins unless a test installs one on purpose.
os.environ.setdefault("TNODE_DISABLE_PLUGIN_AUTOLOAD", "1")


@pytest.fixture
def anyio_backend() -> str:
    # py-libp2p runs only on trio, and so does the node.
    return "trio"
