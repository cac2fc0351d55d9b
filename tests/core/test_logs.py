"""Logging: JSON lines with the peer id, library loggers routed through, node.log follows the configuration."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from core_probes import probe_manager
from tnode.logs import configure_logging
from tnode.node import Node

PEER = "12D3KooWAbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefgh"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def records(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_the_short_peer_id() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", peer_id=PEER, stream=stream)
    structlog.get_logger("tnode.test").info("block seen", number=7)
    (rec,) = records(stream)
    assert rec["event"] == "block seen" and rec["number"] == 7
    assert rec["peer"] == PEER[-8:] and rec["level"] == "info" and rec["logger"] == "tnode.test"


def test_level_filters_lower_levels() -> None:
    stream = io.StringIO()
    configure_logging("warning", "json", stream=stream)
    log = structlog.get_logger("tnode.test")
    log.info("quiet")
    log.warning("loud")
    assert [r["event"] for r in records(stream)] == ["loud"]


def test_detached_library_loggers_are_routed_through_the_same_renderer() -> None:
    # py-libp2p sets propagate=False on its logger when imported.
    logging.getLogger("libp2p").propagate = False
    stream = io.StringIO()
    configure_logging("info", "json", peer_id=PEER, stream=stream)
    logging.getLogger("libp2p.network.swarm").warning("dial failed: %s", "refused")
    (rec,) = records(stream)
    assert rec["event"] == "dial failed: refused" and rec["logger"] == "libp2p.network.swarm"
    assert rec["peer"] == PEER[-8:]


def test_node_log_follows_logging_configured_after_the_node_was_built(tmp_path: Path) -> None:
    # `tnode run` builds the node first and configures logging from its [log] section afterwards.
    manager, _ = probe_manager()
    node = Node.from_dict({"exporters": {"e": {"type": "probe"}}, "node": {"name": "n7"}}, data_dir=tmp_path,
                          plugins=manager)
    stream = io.StringIO()
    configure_logging("info", "json", peer_id=node.peer_id, stream=stream)
    node.log.info("node running")
    (rec,) = records(stream)
    assert rec["event"] == "node running" and rec["node"] == "n7" and rec["peer"] == node.peer_id[-8:]


def test_library_child_loggers_below_warning_are_dropped() -> None:
    """A library that sets its own child logger to INFO (py-libp2p does) still stays quiet at info."""
    import io
    import logging

    from tnode.logs import configure_logging

    out = io.StringIO()
    configure_logging(level="info", fmt="json", stream=out)
    child = logging.getLogger("libp2p.network.some_child")
    child.setLevel(logging.INFO)
    child.info("chatty library line")
    child.warning("library warning")
    text = out.getvalue()
    assert "chatty library line" not in text
    assert "library warning" in text


def test_json_lines_accept_integer_keys() -> None:
    import io

    import orjson
    import structlog
    from tnode.logs import configure_logging

    out = io.StringIO()
    configure_logging(level="info", fmt="json", stream=out)
    structlog.get_logger("tnode").info("scores", by_uid={0: 0.5, 3: 1.0})
    line = orjson.loads(out.getvalue().strip().splitlines()[-1])
    assert line["by_uid"] == {"0": 0.5, "3": 1.0}
