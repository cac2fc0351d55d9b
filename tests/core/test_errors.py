"""Finding the meaningful cause inside the exception groups task groups raise."""

from __future__ import annotations

from tnode.errors import ChainError, ComponentStartError, TnodeError, find_error


def test_find_error_looks_through_nested_groups_in_order() -> None:
    start = ComponentStartError("chain", OSError("port in use"))
    chain = ChainError("refused", "no")
    group = BaseExceptionGroup("outer", [ValueError("x"), ExceptionGroup("inner", [chain, start])])
    assert find_error(group, ComponentStartError) is start
    assert find_error(group, TnodeError) is chain  # the first one, depth first
    assert find_error(group, KeyboardInterrupt) is None
    assert find_error(chain, TnodeError) is chain
