"""Fixtures for the local-chain tests (helpers live in chain_helpers.py)."""

from chain_helpers import make_chain  # noqa: F401  (re-exported fixture)
