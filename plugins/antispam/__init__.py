"""tnode plugin ``antispam``: admission filters for inbound requests and a garbage-answer guard.

Inbound (``[spam.NAME]``, run in configured order after signature and replay checks):
``registered_only``, ``token_bucket``, ``stake_priority``, ``limits``. Validator side:
``[scorers.NAME] type = "garbage_guard"`` wraps another scorer. See docs/antispam.md.
"""

import tnode

from .config import (
    GarbageGuardConfig,
    LimitsConfig,
    RegisteredOnlyConfig,
    StakePriorityConfig,
    TokenBucketConfig,
)


@tnode.hookimpl
def tnode_register_components(register):  # type: ignore[no-untyped-def]
    from .bucket import TokenBucket
    from .guard import GarbageGuard
    from .limits import Limits
    from .priority import StakePriority
    from .registered import RegisteredOnly

    register(kind="spam_filter", type="registered_only", factory=RegisteredOnly, schema=RegisteredOnlyConfig,
             description="Serves only hotkeys that hold a uid (and optional stake) on the subnet.")
    register(kind="spam_filter", type="token_bucket", factory=TokenBucket, schema=TokenBucketConfig,
             description="Per-sender token-bucket rate limit with per-modality overrides.")
    register(kind="spam_filter", type="stake_priority", factory=StakePriority, schema=StakePriorityConfig,
             description="Bounded concurrency; waiting requests are served by stake, the lowest shed.")
    register(kind="spam_filter", type="limits", factory=Limits, schema=LimitsConfig,
             description="Frame, payload, sequence, top-k and generation size limits.")
    register(kind="scorer", type="garbage_guard", factory=GarbageGuard, schema=GarbageGuardConfig,
             description="Zeroes and reports degenerate, constant and copied answers; wraps another scorer.")
