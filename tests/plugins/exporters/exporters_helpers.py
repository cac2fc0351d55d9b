"""Helpers for exporter tests: HTTP GETs off the event loop and Prometheus text parsing."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import anyio
import orjson
from prometheus_client.parser import text_string_to_metric_families


async def http_get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    """(status, body) of a GET, run in a worker thread so the node's loop keeps serving."""

    def get() -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as res:
                return res.status, res.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    return await anyio.to_thread.run_sync(get)


async def get_json(url: str) -> tuple[int, Any]:
    status, body = await http_get(url)
    return status, orjson.loads(body)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics page, parsed by prometheus-client's own parser."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out
