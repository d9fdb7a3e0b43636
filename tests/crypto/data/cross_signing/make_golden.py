"""Write ``golden_v1.json``: stored cross-signing records made by this version.

Run once (``python tests/crypto/data/cross_signing/make_golden.py``) when a
stored format changes on purpose, and say so in the commit. The test
``tests/crypto/test_cross_signing_golden.py`` checks that these records keep
loading and that the writers still produce them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from messa.crypto._vodozemac import b64encode
from messa.crypto.canonical import sign_json
from messa.crypto.cross_signing.keys import KeySet, SigningKey, seal
from messa.crypto.identities.user import _State, parse_cross_signing_key
from messa.types.ids import Ed25519Key, UserId
from messa.types.keys import CrossSigningUsage

PICKLE_KEY = bytes(range(32))
ME = UserId("@golden:example.org")
BOB = UserId("@bob:example.org")


def key(n: int) -> SigningKey:
    return SigningKey(bytes([n]) * 32)


def key_object(user: UserId, usage: CrossSigningUsage, k: SigningKey) -> dict[str, Any]:
    return {"user_id": user, "usage": [usage.value], "keys": {k.key_id: k.public_key}}


def identity(user: UserId, keys: KeySet) -> dict[str, dict[str, Any]]:
    assert keys.master and keys.self_signing
    master = key_object(user, CrossSigningUsage.MASTER, keys.master)
    parts = {
        "master_key": master,
        "self_signing_key": sign_json(
            key_object(user, CrossSigningUsage.SELF_SIGNING, keys.self_signing),
            user,
            keys.master.key_id,
            keys.master.sign,
        ),
    }
    if keys.user_signing is not None:
        parts["user_signing_key"] = sign_json(
            key_object(user, CrossSigningUsage.USER_SIGNING, keys.user_signing),
            user,
            keys.master.key_id,
            keys.master.sign,
        )
    return parts


def state(user: UserId, parts: dict[str, dict[str, Any]], **extra: Any) -> _State:
    master = parse_cross_signing_key(user, CrossSigningUsage.MASTER, parts["master_key"])
    ssk = parse_cross_signing_key(
        user, CrossSigningUsage.SELF_SIGNING, parts["self_signing_key"], signed_by=master
    )
    usk = None
    if "user_signing_key" in parts:
        usk = parse_cross_signing_key(
            user, CrossSigningUsage.USER_SIGNING, parts["user_signing_key"], signed_by=master
        )
    return _State(master, ssk, usk, **extra)


def main() -> None:
    mine = KeySet(key(1), key(2), key(3))
    own = identity(ME, mine)
    bob = identity(BOB, KeySet(key(4), key(5)))
    old_bob_master = key(6).public_key
    own_state = state(
        ME,
        own,
        pinned=mine.master.public_key if mine.master else Ed25519Key(""),
        verified_master=mine.master.public_key if mine.master else None,
        was_verified=True,
    )
    # Bob: an identity that replaced the one we had pinned and verified.
    bob_state = state(
        BOB,
        bob,
        pinned=old_bob_master,
        verified_master=old_bob_master,
        was_verified=True,
    )
    seeds = mine.seeds()
    golden = {
        "pickle_key": b64encode(PICKLE_KEY),
        "user_id": ME,
        "seeds": {
            "master": seeds.master,
            "self_signing": seeds.self_signing,
            "user_signing": seeds.user_signing,
        },
        "identity_keys": own,
        "private_record": seal(mine, PICKLE_KEY, ME).decode(),
        "own_identity_record": own_state.to_bytes().decode(),
        "bob_identity_record": bob_state.to_bytes().decode(),
        "bob_old_master": old_bob_master,
    }
    path = Path(__file__).with_name("golden_v1.json")
    path.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
