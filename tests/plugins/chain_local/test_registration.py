"""Registration: seal checks, difficulty adjustment, rate limits, pruning and immunity, burn."""

from __future__ import annotations

import pytest
from chain_helpers import find_nonce, key
from tnode.errors import ChainError
from tnode.plugins.chain_local import pow as pow_
from tnode.plugins.chain_local.codec import TOKEN

COLD = key("owner")


def test_pow_registration_gives_next_uid_and_event_data(make_chain) -> None:
    c = make_chain()
    assert c.register(key("h0"), COLD) == 0
    assert c.register(key("h1"), COLD) == 1
    out = c.ledger.produce_block()
    assert [(r.uid, r.hotkey) for r in out.registered] == [(0, key("h0").public_hex), (1, key("h1").public_hex)]
    mg = c.ledger.metagraph()
    assert mg.neurons[1].coldkey == COLD.public_hex and mg.neurons[1].registered_at == 1
    with pytest.raises(ChainError) as err:
        c.register(key("h1"), COLD)
    assert err.value.code == "already_registered"


def test_seal_for_another_hotkey_is_refused(make_chain) -> None:
    c = make_chain(difficulty=1 << 12)
    c.blocks(1)
    block, nonce = c.seal(key("mine"))
    with pytest.raises(ChainError) as err:  # the seal binds the hotkey that solved it
        c.submit(key("thief"), "register", coldkey=COLD.public_hex, block=block, nonce=nonce)
    assert err.value.code == "invalid_seal"
    c.submit(key("mine"), "register", coldkey=COLD.public_hex, block=block, nonce=nonce)


def test_seal_under_difficulty_is_refused(make_chain) -> None:
    c = make_chain(difficulty=1 << 12)
    head = c.ledger.head()
    hot = key("weak")
    # A nonce meeting a 16× easier target but not the chain's difficulty.
    nonce = find_nonce(head.hash, hot.public_bytes, 1 << 8)
    while pow_.verify(head.hash, hot.public_bytes, nonce, 1 << 12):
        nonce = find_nonce(head.hash, hot.public_bytes, 1 << 8, nonce + 1)
    with pytest.raises(ChainError) as err:
        c.submit(hot, "register", coldkey=COLD.public_hex, block=head.number, nonce=nonce)
    assert err.value.code == "invalid_seal"


def test_stale_and_future_blocks_are_refused(make_chain) -> None:
    c = make_chain(pow_block_window=3)
    hot = key("late")
    old_block, old_nonce = c.seal(hot)  # over block 0
    c.blocks(2)  # head 2: blocks 0..2 are the last three
    c.ledger.submit(c.tx(hot, "register", coldkey=COLD.public_hex, block=old_block, nonce=old_nonce))
    hot2 = key("later")
    block, nonce = c.seal(hot2, block=0)
    c.blocks(1)  # head 3: block 0 fell out of the window
    with pytest.raises(ChainError) as err:
        c.submit(hot2, "register", coldkey=COLD.public_hex, block=block, nonce=nonce)
    assert err.value.code == "stale_block"
    with pytest.raises(ChainError) as err:
        c.submit(hot2, "register", coldkey=COLD.public_hex, block=4, nonce=0)
    assert err.value.code == "unknown_block"


def test_registrations_per_block_and_interval_are_limited(make_chain) -> None:
    c = make_chain(max_registrations_per_block=1, max_registrations_per_interval=2, adjustment_interval=100)
    c.register(key("a"), COLD)
    with pytest.raises(ChainError) as err:
        c.register(key("b"), COLD)
    assert err.value.code == "too_many_registrations"
    c.blocks(1)
    c.register(key("b"), COLD)
    c.blocks(1)
    with pytest.raises(ChainError) as err:
        c.register(key("c"), COLD)
    assert "interval" in err.value.message


def test_difficulty_rises_under_a_flood_and_falls_when_idle(make_chain) -> None:
    c = make_chain(difficulty=64, adjustment_interval=4, target_registrations_per_interval=1,
                   max_registrations_per_block=4, max_registrations_per_interval=64, max_difficulty=1 << 30)
    start = c.ledger.difficulty()
    seen = [start]
    for i in range(8):  # two intervals, 2 registrations per block = 8 per interval, target 1
        for j in range(2):
            c.register(key(f"flood-{i}-{j}"), COLD)
        c.blocks(1)
        seen.append(c.ledger.difficulty())
    peak = c.ledger.difficulty()
    assert peak > start * 4  # rose by (8 + 1) / 2 per interval
    assert seen == sorted(seen)  # never fell during the flood
    c.blocks(12)  # three idle intervals: each halves it
    assert c.ledger.difficulty() < peak / 4
    assert c.ledger.difficulty() >= 1


def test_difficulty_is_clamped(make_chain) -> None:
    c = make_chain(difficulty=8, min_difficulty=4, max_difficulty=20, adjustment_interval=2,
                   target_registrations_per_interval=1)
    c.blocks(10)
    assert c.ledger.difficulty() == 4
    for i in range(6):
        for j in range(3):
            c.register(key(f"x{i}-{j}"), COLD)
        c.blocks(1)
    assert c.ledger.difficulty() == 20


def test_full_subnet_prunes_lowest_emission_then_earliest_then_lowest_uid(make_chain) -> None:
    c = make_chain(max_allowed_uids=4, immunity_period=0)
    hot = [key(f"n{i}") for i in range(4)]
    for i, h in enumerate(hot):
        c.register(h, COLD)
        if i in (1, 2):
            c.blocks(1)  # uid 0 and 1 registered in block 1, uid 2 in 2, uid 3 in 3
    conn = c.ledger._conn
    conn.execute("UPDATE neurons SET emission = CASE uid WHEN 0 THEN 5 WHEN 1 THEN 3 WHEN 2 THEN 3 ELSE 3 END")
    # Lowest emission 3 is shared by uids 1, 2, 3: the earliest registration (uid 1) goes first.
    c.blocks(1)
    new = key("new-1")
    assert c.register(new, COLD) == 1
    out = c.ledger.produce_block()
    assert out.registered[0].replaced == hot[1].public_hex
    # Now uids 2 and 3 (emission 3) remain; uid 1 was reset to emission 0 → it is the lowest.
    conn.execute("UPDATE neurons SET emission = 7 WHERE uid = 1")
    conn.execute("UPDATE neurons SET registered_at = 2 WHERE uid IN (2, 3)")
    assert c.register(key("new-2"), COLD) == 2  # tie on emission and block: lowest uid
    assert c.ledger.metagraph().by_hotkey(hot[2].public_hex) is None


def test_pruned_uid_loses_its_weights_and_bonds_rows_and_columns(make_chain) -> None:
    v = key("validator")
    c = make_chain([{"coldkey": COLD.public_hex, "hotkey": v.public_hex, "stake": 10}], max_allowed_uids=3)
    c.register(key("m1"), COLD)
    c.register(key("m2"), COLD)
    c.submit(v, "set_weights", uids=[1, 2], weights=[65535, 30000], version_key=0)
    c.submit(key("m1"), "set_weights", uids=[0, 2], weights=[1, 1], version_key=0)
    c.ledger._conn.execute("UPDATE neurons SET emission = 100 WHERE uid != 2")
    c.blocks(1)
    assert c.register(key("m3"), COLD) == 2
    w = c.ledger.metagraph(matrices=True).weights
    assert w[0, 2] == 0 and w[0, 1] == 1.0 and w[1, 2] == 0 and w[1, 0] == 1.0
    assert not w[2].any()


def test_immunity_is_respected(make_chain) -> None:
    c = make_chain(max_allowed_uids=2, immunity_period=5)
    c.register(key("old"), COLD)
    c.blocks(3)
    c.register(key("young"), COLD)  # registered in block 4
    c.ledger._conn.execute("UPDATE neurons SET emission = CASE uid WHEN 0 THEN 10 ELSE 0 END")
    c.blocks(1)  # pending block 5: uid 0 (block 1) is immune until block 6
    with pytest.raises(ChainError) as err:
        c.register(key("newcomer"), COLD)
    assert err.value.code == "subnet_full"
    c.blocks(1)  # pending block 6: uid 0 is no longer immune; uid 1 (block 4) still is
    assert c.register(key("newcomer"), COLD) == 0  # the lower-emission uid 1 is immune


def test_burned_registration_costs_the_burn(make_chain) -> None:
    payer = key("payer")
    c = make_chain([{"coldkey": payer.public_hex, "balance": 3}], burn=2.0, min_burn=1.0, max_burn=10.0)
    uid = int(c.submit(payer, "burned_register", hotkey=key("burnt").public_hex)["uid"])
    assert uid == 0 and c.ledger.balance(payer.public_hex) == 1 * TOKEN
    assert c.ledger.totals()["issuance"] == 1 * TOKEN
    with pytest.raises(ChainError) as err:
        c.submit(payer, "burned_register", hotkey=key("burnt-2").public_hex)
    assert err.value.code == "insufficient_balance"


def test_hotkey_of_another_coldkey_cannot_be_taken(make_chain) -> None:
    other = key("other-cold")
    c = make_chain([{"coldkey": other.public_hex, "balance": 5}], max_allowed_uids=1)
    hot = key("shared-hot")
    c.register(hot, COLD)
    with pytest.raises(ChainError) as err:
        c.submit(other, "burned_register", hotkey=hot.public_hex)
    assert err.value.code == "already_registered"
