"""Configuration of the anti-spam components.

Inbound filters are ``[spam.NAME]`` tables (kind ``spam_filter``), run in the order they appear in
node.toml on every request whose signature, freshness and nonce were verified. The validator-side
garbage detector is a scorer wrapper, ``[scorers.NAME] type = "garbage_guard"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from tnode.config import option


@dataclass(frozen=True)
class RegisteredOnlyConfig:
    """Admit only senders whose hotkey holds a uid on the subnet (optionally with stake or a permit).

    The metagraph is cached and refreshed at most once per block (on BlockProduced).
    """

    min_stake: float = option(0.0, "Least stake (tokens) the sender's hotkey must hold besides a uid.", ge=0)
    validator_permit_only: bool = option(False, "Admit only hotkeys that hold a validator permit.")
    allow: list[str] = option([], "Hotkeys (hex) admitted even without a uid, e.g. your own client nodes.")
    exempt_modalities: list[str] = option(
        [], "Modalities (wire names) open to everyone. Services (svc:chain, svc:announce) never reach this "
            "filter: unregistered nodes can always call the chain to register."
    )


@dataclass(frozen=True)
class BucketRate:
    """One token-bucket shape."""

    rate: float = option(doc="Requests per second refilled into a sender's bucket.", ge=0)
    burst: float = option(doc="Bucket size: requests a sender may make at once after being idle.", ge=1)


@dataclass(frozen=True)
class TokenBucketConfig:
    """Per-sender (hotkey) token-bucket rate limit; refuses with ``rate_limited``."""

    rate: float = option(20.0, "Requests per second refilled into each sender's bucket.", ge=0)
    burst: float = option(40.0, "Bucket size: requests a sender may make at once after being idle.", ge=1)
    modalities: dict[str, Any] = option(
        {}, "Per-modality overrides, e.g. {text = {rate = 5, burst = 10}}; such a modality gets its own bucket."
    )
    max_peers: int = option(
        10_000, "Buckets kept (least recently used are forgotten; a forgotten sender starts with a full bucket).",
        ge=1,
    )
    allow: list[str] = option([], "Hotkeys (hex) never rate limited.")
    exempt_modalities: list[str] = option([], "Routes not rate limited: modality wire names, or services as "
                                              "svc:<name> (e.g. svc:chain).")


@dataclass(frozen=True)
class StakePriorityConfig:
    """Stake-weighted admission: at most ``max_concurrent`` tasks run; the rest wait by stake.

    Waiting requests are served highest stake first (FIFO among equal stakes). When the queue is
    full, the lowest-priority request (possibly the newcomer) is refused with ``overloaded``.
    """

    max_concurrent: int = option(8, "Tasks that may execute at once.", ge=1)
    max_queue: int = option(256, "Requests that may wait for a slot; beyond it the lowest priority is shed.",
                            ge=0)
    max_wait: float = option(
        10.0, "Seconds a request may wait for a slot (less when its own deadline is sooner).", ge=0
    )
    exempt_modalities: list[str] = option([], "Modalities admitted without taking a slot.")


@dataclass(frozen=True)
class LimitsConfig:
    """Size and complexity limits on inbound requests; refuses with ``too_large`` or ``invalid_request``.

    Sequence length is read from the payload's shape (its last axis) when the transport reports it,
    and from the body: the length of a list (or string) under one of ``sequence_keys``.
    """

    max_frame_bytes: int = option(4 * 1024 * 1024, "Largest whole frame (header, body and payload).", ge=1)
    max_payload_bytes: int = option(4 * 1024 * 1024, "Largest binary payload.", ge=0)
    max_sequence_length: int = option(2048, "Longest input sequence (tokens or characters per row).", ge=1)
    max_batch: int = option(64, "Most rows in a batched input (a list of sequences).", ge=1)
    max_k: int = option(256, "Largest top-k a request may ask for.", ge=1)
    max_tokens: int = option(1024, "Largest number of tokens a request may ask to generate.", ge=1)
    max_response_items: int = option(
        1_048_576, "Largest answer a request may ask for: rows × positions × k for top-k, rows × max_tokens.", ge=1
    )
    sequence_keys: list[str] = option(["tokens", "input_ids", "prompt", "context", "text"],
                                      "Body keys that hold the input sequence.")
    k_keys: list[str] = option(["k", "top_k"], "Body keys that hold a top-k.")
    max_tokens_keys: list[str] = option(["max_tokens", "max_new_tokens"],
                                        "Body keys that hold a number of tokens to generate.")
    exempt_modalities: list[str] = option([], "Modalities only the frame and payload limits apply to.")


@dataclass(frozen=True)
class GarbageGuardConfig:
    """Wraps a scorer: garbage answers score 0 and are reported (SpamDetected); the rest keep their scores.

    Garbage: non-finite or empty distributions, uniform top-k at every position, the same answer at
    every position or to different tasks, and answers (near-)identical to another miner's on the
    same task. Two honest miners running the same model may agree exactly, so ``duplicates`` says
    which member of a group of identical answers is zeroed.
    """

    inner: str = option(doc="Name of the [scorers.NAME] that scores the answers that are not garbage.",
                        ref="scorers")
    duplicate_threshold: float = option(
        0.01, "Mean L1 distance per position (0..2) between two miners' distributions at or below which "
              "they count as copies; 0 flags byte-identical answers only.", ge=0, le=2,
    )
    duplicates: Literal["later", "lower_stake", "both", "off"] = option(
        "later", "Who is zeroed in a group of copies: all but the fastest answer ('later'), all but the "
                 "highest stake ('lower_stake'), everyone ('both'), or nobody ('off')."
    )
    min_positions: int = option(4, "Fewest positions before 'same answer at every position' counts as garbage.",
                                ge=2)
    uniform_tolerance: float = option(
        1e-4, "A top-k row whose log-probs differ by at most this is uniform (garbage when every row is).", ge=0
    )
    check_constant: bool = option(True, "Flag answers that repeat across positions or across tasks.")
    check_uniform: bool = option(True, "Flag answers uniform over their top-k at every position.")
    history: int = option(4096, "Miners whose previous answer is remembered (to catch repeats across tasks).",
                          ge=1)
    report_interval: float = option(
        60.0, "Seconds between two SpamDetected events for the same miner and rule (0 reports every time).", ge=0
    )
