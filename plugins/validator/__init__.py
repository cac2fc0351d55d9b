"""tnode plugin: the validator role, `tnode status` and `tnode devnet`."""

import tnode

from .config import ValidatorConfig


@tnode.hookimpl
def tnode_register_components(register):  # type: ignore[no-untyped-def]
    from .validator import Validator

    register(kind="validator", type="default", factory=Validator, schema=ValidatorConfig,
             description="Queries miners with checkable tasks, scores answers and sets weights on the chain.")


@tnode.hookimpl
def tnode_add_cli_commands(app):  # type: ignore[no-untyped-def]
    from .cli import register_commands

    register_commands(app)
