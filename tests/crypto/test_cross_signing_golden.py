"""Golden data: stored cross-signing records written by this version keep loading,
and the writers still produce the same formats (see data/cross_signing/make_golden.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from messa._clock import FakeClock
from messa.crypto._vodozemac import b64decode, b64encode
from messa.crypto.account import AccountMachine
from messa.crypto.context import CryptoContext
from messa.crypto.cross_signing import PRIVATE_KEYS, CrossSigningMachine
from messa.crypto.cross_signing.keys import seal, unseal
from messa.crypto.identities import DeviceTracker
from messa.crypto.identities.user import IDENTITY_PREFIX, _State
from messa.errors import StoreCorruptError
from messa.store.base import Changes
from messa.store.memory import MemoryStore
from messa.types.ids import DeviceId, UserId

GOLDEN: dict[str, Any] = json.loads(
    (Path(__file__).parent / "data" / "cross_signing" / "golden_v1.json").read_text()
)
PICKLE_KEY = b64decode(GOLDEN["pickle_key"])
ME = UserId(GOLDEN["user_id"])
BOB = UserId("@bob:example.org")


def open_golden_store() -> tuple[DeviceTracker, CrossSigningMachine]:
    store = MemoryStore(pickle_key=PICKLE_KEY)
    store.save_changes(
        Changes(
            values={
                PRIVATE_KEYS: GOLDEN["private_record"].encode(),
                IDENTITY_PREFIX + ME: GOLDEN["own_identity_record"].encode(),
                IDENTITY_PREFIX + BOB: GOLDEN["bob_identity_record"].encode(),
            }
        )
    )
    ctx = CryptoContext(ME, DeviceId("GOLDEN"), store, FakeClock())
    account = AccountMachine(ctx)
    tracker = DeviceTracker(ctx, account)
    return tracker, CrossSigningMachine(ctx, account, tracker)


def test_stored_private_keys_and_identities_load() -> None:
    tracker, cs = open_golden_store()
    seeds = cs.export_seeds()
    assert seeds is not None
    assert (seeds.master, seeds.self_signing, seeds.user_signing) == (
        GOLDEN["seeds"]["master"],
        GOLDEN["seeds"]["self_signing"],
        GOLDEN["seeds"]["user_signing"],
    )
    status = cs.status()
    assert status.keys_match and status.has_master and status.has_user_signing
    own = tracker.get_identity(ME)
    assert own is not None and own.verified and not own.identity_changed
    for name, key in (
        ("master_key", own.master_key),
        ("self_signing_key", own.self_signing_key),
        ("user_signing_key", own.user_signing_key),
    ):
        assert key is not None and key.raw == GOLDEN["identity_keys"][name]
    bob = tracker.get_identity(BOB)
    assert bob is not None and bob.user_signing_key is None
    assert bob.pinned_master == GOLDEN["bob_old_master"]
    assert bob.identity_changed and bob.verification_violation and not bob.verified


@pytest.mark.parametrize("name", ["own_identity_record", "bob_identity_record"])
def test_identity_writer_is_stable(name: str) -> None:
    record = GOLDEN[name].encode()
    user = ME if name.startswith("own") else BOB
    assert _State.from_bytes(user, record).to_bytes() == record


def test_private_record_format_is_stable() -> None:
    golden = json.loads(GOLDEN["private_record"])
    keys, _ = unseal(GOLDEN["private_record"].encode(), PICKLE_KEY, ME)
    fresh = json.loads(seal(keys, PICKLE_KEY, ME))
    assert set(fresh) == set(golden) == {"format", "nonce", "ciphertext"}
    assert fresh["format"] == golden["format"] == 1
    assert len(fresh["ciphertext"]) == len(golden["ciphertext"])
    assert unseal(json.dumps(fresh).encode(), PICKLE_KEY, ME)[0].seeds() == keys.seeds()


@pytest.mark.parametrize(
    "case",
    ["other pickle key", "other user", "flipped ciphertext", "not json", "unknown format"],
)
def test_damaged_private_record_is_refused(case: str) -> None:
    record = json.loads(GOLDEN["private_record"])
    key, user = PICKLE_KEY, ME
    if case == "other pickle key":
        key = bytes(32)
    elif case == "other user":
        user = BOB
    elif case == "flipped ciphertext":
        ct = bytearray(b64decode(record["ciphertext"]))
        ct[0] ^= 1
        record["ciphertext"] = b64encode(bytes(ct))
    elif case == "unknown format":
        record["format"] = 2
    data = b"{" if case == "not json" else json.dumps(record).encode()
    with pytest.raises(StoreCorruptError):
        unseal(data, key, user)
