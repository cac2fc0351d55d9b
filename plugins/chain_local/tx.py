"""Signed transactions: every state change of the local chain is one.

Signing bytes = ``b"tnode-tx-v1\\n"`` ‖ canonical JSON of ``{"args", "call", "chain", "nonce",
"signer"}`` where ``chain`` is the genesis hash (hex) — a transaction cannot be replayed on another
chain — and ``nonce`` is the signer's next nonce — it cannot be replayed on this one. The
transaction hash is BLAKE2b-256 of the signing bytes; the signature is Ed25519 over them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tnode.errors import ChainError
from tnode.keys import Keypair, verify

from .codec import canonical_json, check_canonical, h256, is_public_key_hex

TX_DOMAIN = b"tnode-tx-v1\n"
MAX_TX_BYTES = 64 * 1024

def signing_bytes(chain: str, signer: str, nonce: int, call: str, args: dict[str, Any]) -> bytes:
    return TX_DOMAIN + canonical_json(
        {"args": args, "call": call, "chain": chain, "nonce": nonce, "signer": signer}
    )


@dataclass(frozen=True, slots=True)
class Transaction:
    """A signed call. ``signer`` is the hex public key that pays and authorises it."""

    chain: str
    signer: str
    nonce: int
    call: str
    args: dict[str, Any]
    signature: bytes

    @classmethod
    def create(cls, key: Keypair, *, chain: str, nonce: int, call: str, args: dict[str, Any]) -> Transaction:
        """Sign ``call(args)`` with ``key``."""
        msg = signing_bytes(chain, key.public_hex, nonce, call, args)
        return cls(chain, key.public_hex, nonce, call, dict(args), key.sign(msg))

    def signing_bytes(self) -> bytes:
        return signing_bytes(self.chain, self.signer, self.nonce, self.call, self.args)

    @property
    def hash(self) -> bytes:
        return h256(self.signing_bytes())

    def signature_valid(self) -> bool:
        return verify(self.signer, self.signing_bytes(), self.signature)

    def to_wire(self) -> dict[str, Any]:
        return {
            "chain": self.chain,
            "signer": self.signer,
            "nonce": self.nonce,
            "call": self.call,
            "args": self.args,
            "signature": self.signature.hex(),
        }

    @classmethod
    def from_wire(cls, doc: Any) -> Transaction:
        """Parse an untrusted transaction document; raises ``ChainError("malformed_tx")``."""
        if not isinstance(doc, dict):
            raise ChainError("malformed_tx", "a transaction is a map")
        try:
            chain, signer, nonce = doc["chain"], doc["signer"], doc["nonce"]
            call, args, sig = doc["call"], doc["args"], doc["signature"]
        except KeyError as exc:
            raise ChainError("malformed_tx", f"missing field {exc.args[0]!r}") from None
        if not isinstance(chain, str) or not isinstance(call, str) or not isinstance(sig, str):
            raise ChainError("malformed_tx", "chain, call and signature must be strings")
        if not is_public_key_hex(signer):
            raise ChainError("malformed_tx", "signer must be a 64-character lowercase hex public key")
        if not isinstance(nonce, int) or isinstance(nonce, bool) or not 0 <= nonce < 2**63:
            raise ChainError("malformed_tx", "nonce must be a non-negative integer")
        if not isinstance(args, dict):
            raise ChainError("malformed_tx", "args must be a map")
        try:
            check_canonical(args)
            signature = bytes.fromhex(sig)
        except ValueError as exc:
            raise ChainError("malformed_tx", str(exc)) from None
        if len(signature) != 64:
            raise ChainError("malformed_tx", "an Ed25519 signature has 64 bytes")
        tx = cls(chain, signer, nonce, call, args, signature)
        if len(tx.signing_bytes()) > MAX_TX_BYTES:
            raise ChainError("tx_too_large", f"transactions are limited to {MAX_TX_BYTES} bytes")
        return tx
