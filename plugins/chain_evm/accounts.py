"""Identity: the EVM account of a tnode key, and the signature that binds them.

tnode keys are Ed25519; EVM accounts are secp256k1. Each tnode key acts on the contract through
one account whose private key is derived from the Ed25519 seed::

    account_key = keccak256(b"tnode-evm-account-v1\\n" ‖ ed25519 seed)   (mod the curve order)

so whoever holds the tnode key holds the account and no second secret is kept. The key binds the
account with an Ed25519 signature over::

    b"tnode-evm-bind-v1\\n" ‖ chain id (32 bytes, big-endian) ‖ contract address (20) ‖ account (20)

The contract stores the binding (first come) and every node verifies the signature off-chain:
a neuron whose binding does not verify is ignored (see :func:`binding_valid`).
"""

from __future__ import annotations

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from tnode.keys import Keypair, verify

ACCOUNT_DOMAIN = b"tnode-evm-account-v1\n"
BIND_DOMAIN = b"tnode-evm-bind-v1\n"
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def account_of(key: Keypair) -> LocalAccount:
    """The EVM account derived from a tnode key."""
    secret = int.from_bytes(keccak(ACCOUNT_DOMAIN + key.seed), "big") % _SECP256K1_N
    account: LocalAccount = Account.from_key(secret.to_bytes(32, "big"))
    return account


def binding_message(chain_id: int, contract: str, account: str) -> bytes:
    return BIND_DOMAIN + chain_id.to_bytes(32, "big") + bytes.fromhex(contract[2:]) + bytes.fromhex(account[2:])


def bind_signature(key: Keypair, chain_id: int, contract: str) -> bytes:
    """The Ed25519 signature binding ``key``'s derived account on ``contract``."""
    return key.sign(binding_message(chain_id, contract, account_of(key).address))


def binding_valid(public_key: bytes, signature: bytes, chain_id: int, contract: str, account: str) -> bool:
    """Whether ``signature`` is ``public_key``'s binding of ``account``."""
    if len(signature) != 64:
        return False
    return verify(public_key, binding_message(chain_id, contract, account), signature)
