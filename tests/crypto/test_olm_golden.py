"""Golden data: stored Olm state written by an earlier version must keep loading.

The pickles below were made once with the pickle key ``bytes(range(32))``; a
binding upgrade or a change of the stored forms that breaks them fails here.
"""

from __future__ import annotations

import json

from messa._clock import FakeClock
from messa.crypto import _vodozemac as vz
from messa.crypto.account import SIGNED_CURVE25519, AccountMachine
from messa.crypto.context import CryptoContext
from messa.crypto.identities import DeviceTracker, device_from_record
from messa.crypto.olm import OlmSessions
from messa.crypto.olm.unwedge import QUEUE_KEY
from messa.store.base import AccountRecord, Changes, DeviceRecord, OlmSessionRecord
from messa.store.memory import MemoryStore
from messa.types.ids import DeviceId, UserId
from messa.types.keys import LocalTrust

PICKLE_KEY = bytes(range(32))
USER = UserId("@golden:example.org")
DEVICE = DeviceId("GOLDEN")

ACCOUNT_PICKLE = (
    "0uyYLlC/hkosfUpbCp68Am/nxWPekSY42fUc6j1p1Zidv7uuP3f9Q27mYWbqwdIN+yhpcy5XrlbSP5oy30DPZjM9"
    "ggJfbxV3S4jIBj5Per9ipLYGKwrsPJidqYoeMqtgEpsSsFcPuvLU5hDJnSVjqe19tnakPXw0FUXrYdMoVm8jluxU"
    "dpg4hd2CTRYIKn1PPHKXPflXrq+Jej06alURylZDfzCsC0WWu6fuGq5epzH48HEnDytzZMJjCuIOag8TBnOm5mQe"
    "qAwe65FjHdAzOp2qUYfrPKCA4DJhPA4UOvz0SDePukZiDofcjD4Bl8di1GU4kFBqzYAUfqmIjaQFcgYwUw5UA+yU"
    "8yDeicjbfYUeGpWJC8qy+JpVS96RG0/c604gA99r3U/VRz/mLSgMsd5Sz7fqo3nF9f+5aODQrLzNOEpGZGSvA/fI"
    "q9PTGs+Wsud2BwmWFsR7QgKiZyhJl19eIU4v9a0Xz4lJEz1lpRTWGVygHIfW1GkIsTfiy/Xtj5botUgNLJJI5cAN"
    "Ms5el71BE2RDoqVWdwRdE0yErDpxuGMIEDF+87EELexDlbIngYEdO5Wfy8X2V6APPw5J6axYLgwBLl0UB3PpYwL2"
    "jVmXrIThc6ctvt0t5bzwWhO57OEpZdp7XH/DGCDaKdXUqXVsinMxdR7/V7wUSORlWV6oOFhQv08IaaGRmCBsHzxD"
    "ymvqbLQycznIqAfW48W+T0Rme+jWeASM3falrCN8Wx9BMub6IiEK9K+o8T71yPKAvsG57/60k7KpsvbvOW3OgiH0"
    "GTxMotj1kXokNdtmTpyp2BMVwmYhAbyz8f5bPIJq6ryKsT/ZimVuzGFxodmNPVpw6f41HA170Mb3nN4JNw1aPz4l"
    "oVuSyBvEx8l9VzUMNJgGSAXtt4Rvs8fn8dctLzxWRvaZ/ZR06yuQA/La/bMGARY5JWS1exLvuEB4mQiZhuARSNJF"
    "i/dgJ7Cqquvl7E7Ior2bsqSBKyOoYmJL7sCFiCgJX1TOv3JKdoXj/GTIdRntFZHfqgWaCESoPQQYQ9S6ZO2fLbQl"
    "fV2HduzlLDG9xpi22oXOBHk+BGBYJ+YvnYQRL5M7IuM"
)
ACCOUNT_CURVE = "4WapiA1mxM245gOpraZLYBlz8TJIMyNrJV35SuijOC4"
ACCOUNT_ED = "LiwI17sN1uT5ZQl2hSgUqZ1Sd1GClEnjBJpsCElGN+M"
ACCOUNT_OTK = "EELA4MrP7Gl2mu+MoOzRlkIKfN7ke4kP2VCnJe7QTWU"
ACCOUNT_FALLBACK = "LAVvmgd+eIAsWt8tJ8LjWmF/i5zhVKaL0F6iaAE6Agg"

# An outbound session of that account, and a reply the other side sent on it.
SESSION_PICKLE = (
    "tFKi9KwPwztZfDjG7/1uB42bkG6DQjHoEefCHELncFmq4IPNBGSQMu2IthKXbqm8oh6nR4Nx/u0GnyRZvsjXZ8A8"
    "1gvrYd5DO8wgH+m1g4Kqbu4Bm2ne7QaMfLKAqDLkXdOEW0kYijlz6xMaTSoae+TWnBC5MfRc+srks7a++gdvPa5H"
    "1Q6EgxaORZ9e3AQ7wD9XpTcDa5vgEdBY/n4Re+PV2VlDJqAdjhXI8sWRVzdDCMod6hdoRnsDY3bZ5zHE//nd52tr"
    "jh1lHutR0W3nT4KTLbPHUDBLMep/C/teybsX2xBiUqglDHldv9AAbzUNag8IdKZLq6Gx7vr7GJ72ihewG7lkEMj6"
    "svPhzMizr9u7KFUS22ecEW11ESarZDwNAmfJG8QXANzgBbSkNUSjT3Qs3b2kPchEEWPUKE1QkLmKDXOGDPgP0cvl"
    "wbKFdxPQlhG3B8v+tihyZNsi45f+aAEDeQIwN4Ks4ofJcGBBeRzb3/SFR42gHIL6eeNMuhrJrT6TIv0p4V0V52iU"
    "mqFRskldPsmfuoTiTpqI/F1c5eaDsmD/gDAvWRUX75ojliZT1Q7pAjD+kmnPuX3aByi41i7jbuuYK5kv4LTEtlzJ"
    "xHAp2e+ffTlc5EXhjZhPRQK/rEIP8thNFhniTQESUtkGrj9OtG/I59hIz8HtNmI6scqa+M302oakzpDa5J9l8Tc7"
    "kds+JqWgiqQcqEWgDimtlocIR0pyU/SHygkvK7MnugMWBFrSpuJjowsdBQ5rYymue/k+hMHxebwNFiW4eycjjpTG"
    "lQ/lWPzuzwc/sc8b/tYtVROJFptqX5OvYZGE3ykfgrbF1uuhXGpvE7IWszLqBu47jfU7orlt5gfRZ8Q+QIVphgq/"
    "LdISJ+gWqFTCLsAou2FCyi2CFuhsgiTHMTUa5To74MWbR+4BTR42VJmH3PxuiqMa5ZpY3I3J6wIBC3mtk4wP64LI"
    "ji0OFGL9zQs5oD3kpNbFPU77zMmZ4LhQpDVH05+/bqwyHSnXypR+qjwmtn4leVd1UHL81cdBHCC/etri/IGEQXc3"
    "3PCA7eMDO3zn4zvxaQPNSMPGN6qLGxTgnSEMGIgJEL7H8metZYeh52U2k0stzZ67iXPs3dl/ANQq2mjPI5NsyM1g"
    "iyq8/sudH9Qmk2mfGy1zIT0zMr/ipQYQdLSVLo9ZYJe+52PgLMfAmLfveaN7xZ4VOzOR1h58puXpIByUB1hcHhI7"
    "4ZkLaIHl6mn8Ma9JkSdmk7uBJqn5wSmGAKjIdY+1BpTOUwj3D1zUSwPeomarz6zkwvMA3Dbvn83CFB+On6vhxcmo"
    "dHIXYVOrq8XYNg"
)
REPLY_BODY = "Awoge5YkIKQ21RfErkr/LM8SwDBpEtXVr7KKZ0mquzC6ZTYQACIQHQpMfCiw88x+981bSWBao1Jwnr6m6IYq"
PEER_CURVE = "peer-device-curve-key"  # only used as the storage key here


def golden_store() -> MemoryStore:
    store = MemoryStore(pickle_key=PICKLE_KEY)
    store.save_changes(Changes(account=AccountRecord(USER, DEVICE, ACCOUNT_PICKLE, shared=False)))
    return store


def test_stored_account_loads_with_its_keys() -> None:
    ctx = CryptoContext(USER, DEVICE, golden_store(), FakeClock())
    account = AccountMachine(ctx)
    assert account.identity_keys == {"curve25519": ACCOUNT_CURVE, "ed25519": ACCOUNT_ED}
    request = account.upload_request()
    assert request is not None
    # The unpublished keys stored in the pickle are the ones uploaded.
    assert [k["key"] for k in request.one_time_keys.values()] == [ACCOUNT_OTK]
    assert [k["key"] for k in request.fallback_keys.values()] == [ACCOUNT_FALLBACK]
    assert all(k.startswith(f"{SIGNED_CURVE25519}:") for k in request.one_time_keys)


def test_stored_session_decrypts_the_peer_reply() -> None:
    session = vz.Session.from_pickle(SESSION_PICKLE, PICKLE_KEY)
    message = vz.AnyOlmMessage.from_parts(1, vz.b64decode(REPLY_BODY))
    assert session.decrypt(message) == b'{"golden":2}'


def test_stored_session_record_is_used_by_the_olm_machine() -> None:
    store = golden_store()
    store.save_changes(
        Changes(
            olm_sessions=[OlmSessionRecord(PEER_CURVE, "sid", SESSION_PICKLE, 1, 2)],
        )
    )
    ctx = CryptoContext(USER, DEVICE, store, FakeClock())
    account = AccountMachine(ctx)
    olm = OlmSessions(ctx, account, DeviceTracker(ctx, account))
    assert len(olm._cache.sessions(PEER_CURVE)) == 1


def test_stored_device_record_loads() -> None:
    record = DeviceRecord(
        user_id=UserId("@bob:example.org"),
        device_id=DeviceId("BOB1"),
        keys={
            "user_id": "@bob:example.org",
            "device_id": "BOB1",
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {"curve25519:BOB1": ACCOUNT_CURVE, "ed25519:BOB1": ACCOUNT_ED},
            "signatures": {"@bob:example.org": {"ed25519:BOB1": "sig"}},
            "unsigned": {"device_display_name": "Bob's phone"},
        },
        local_trust="verified",
        deleted=False,
        first_seen_ms=5,
    )
    device = device_from_record(record)
    assert device.curve25519 == ACCOUNT_CURVE and device.ed25519 == ACCOUNT_ED
    assert device.keys.display_name == "Bob's phone"
    assert device.local_trust is LocalTrust.VERIFIED and device.first_seen_ms == 5
    assert "unsigned" not in device.keys.raw


def test_stored_unwedge_queue_loads() -> None:
    store = golden_store()
    queue = {"curvekey": {"user": "@bob:example.org", "device": "BOB1", "stage": "dummy"}}
    store.save_changes(Changes(values={QUEUE_KEY: json.dumps(queue).encode()}))
    ctx = CryptoContext(USER, DEVICE, store, FakeClock())
    account = AccountMachine(ctx)
    olm = OlmSessions(ctx, account, DeviceTracker(ctx, account))
    assert olm._unwedger.queued("dummy") == [("curvekey", "@bob:example.org", "BOB1")]
