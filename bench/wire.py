"""Wire format benchmark: sign+encode and decode+verify per second for 1 KB and 1 MB frames.

Baseline (same run): the cryptographic floor of one frame — an Ed25519 signature (PyNaCl) over
the signing bytes plus a blake2b-256 hash of the same body and payload — without framing,
header parsing, replay checks or payload decoding. The ratio shows what the format costs on top.

    python bench/wire.py [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import time
from collections.abc import Callable

import nacl.signing
import numpy as np
from tnode import wire
from tnode.keys import Keypair


def per_second(fn: Callable[[], object], count: int, runs: int) -> float:
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(count):
            fn()
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def bench_size(label: str, payload: np.ndarray, count: int, runs: int) -> None:
    sender = Keypair.from_seed(b"s" * 32)
    receiver = Keypair.from_seed(b"r" * 32)
    body = {"task": "next_token", "top_k": 16}

    def encode() -> bytes:
        return wire.encode(sender, kind="req", modality="text", task="next_token", receiver=receiver.public_hex,
                           body=body, payload=payload)

    enc_rate = per_second(encode, count, runs)
    # Fresh frames (fresh nonces) for every verification: the replay guard must see each once.
    frames = [encode() for _ in range(count)]
    frame_bytes = len(frames[0])
    dec_rates = []
    for _ in range(runs):
        verifier = wire.Verifier(me=receiver.public_hex, window_ms=3_600_000)
        start = time.perf_counter()
        for frame in frames:
            verifier.verify_frame(frame, expect_kind="req")
        dec_rates.append(count / (time.perf_counter() - start))
    dec_rate = statistics.median(dec_rates)

    raw = payload.tobytes()
    message = b"x" * 200  # about the size of the signing bytes
    signature = sender.sign(message)
    verify_key = nacl.signing.VerifyKey(sender.public_bytes)

    def floor_sign() -> None:
        hashlib.blake2b(raw, digest_size=32).hexdigest()
        sender.sign(message)

    def floor_verify() -> None:
        hashlib.blake2b(raw, digest_size=32).hexdigest()
        verify_key.verify(message, signature)

    sign_floor = per_second(floor_sign, count, runs)
    verify_floor = per_second(floor_verify, count, runs)
    mb = frame_bytes / 1e6
    print(f"{label:6} frame {frame_bytes:>9,} B")
    print(f"  {'sign+encode':16} {enc_rate:11,.0f}/s {enc_rate * mb:9.1f} MB/s   floor {sign_floor:11,.0f}/s"
          f"   ratio {enc_rate / sign_floor:5.2f}x")
    print(f"  {'decode+verify':16} {dec_rate:11,.0f}/s {dec_rate * mb:9.1f} MB/s   floor {verify_floor:11,.0f}/s"
          f"   ratio {dec_rate / verify_floor:5.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer frames and runs (seconds)")
    args = parser.parse_args()
    runs = 3 if args.quick else 7
    print(f"tnode wire benchmark: medians of {runs} runs; floor = Ed25519 (PyNaCl) + blake2b of the same bytes")
    bench_size("1 KB", np.arange(1024, dtype=np.uint8), 500 if args.quick else 3000, runs)
    bench_size("1 MB", np.ones(262_144, dtype=np.float32), 10 if args.quick else 50, runs)


if __name__ == "__main__":
    main()
