"""SAS cryptography against the spec: independent recomputation, a golden file, vodozemac.

Expected values are computed here from fixed keys with raw ``cryptography``
(X25519, HKDF, HMAC) and string-level bit slicing, separately from the code
under test, and pinned in ``data/verification/sas_vectors.json`` so a change
on either side fails.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given
from hypothesis import strategies as st

from messa.crypto import _vodozemac as vz
from messa.crypto.verification.emoji import EMOJI_TABLE, emoji_for
from messa.crypto.verification.flow import FlowCancelled, FlowContext
from messa.crypto.verification.identity import FixedKeys
from messa.crypto.verification.sas import SasFlow, SasState
from messa.crypto.verification.sas_crypto import (
    EphemeralKey,
    commitment,
    decimals,
    emoji_indices,
    mac_info,
    sas_info,
)
from messa.crypto.verification.transport import ToDeviceTransport, envelope
from messa.types.ids import DeviceId, Ed25519Key, UserId

DATA = Path(__file__).parent / "data" / "verification"
VECTORS = json.loads((DATA / "sas_vectors.json").read_text())

ALICE, ALICE_DEVICE = "@alice:example.org", "ALICEDEVICE"
BOB, BOB_DEVICE = "@bob:example.org", "BOBDEVICE"
FLOW = "txn-0123456789"


# --- an independent reading of the spec ------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _private(hex_key: str) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(bytes.fromhex(hex_key))


def _public(hex_key: str) -> str:
    return _b64(_private(hex_key).public_key().public_bytes_raw())


def _hkdf(secret: bytes, info: bytes, length: int) -> bytes:
    return HKDF(hashes.SHA256(), length, None, info).derive(secret)


def _spec_emoji(sas: bytes) -> list[int]:
    bits = "".join(f"{b:08b}" for b in sas[:6])[:42]
    return [int(bits[i : i + 6], 2) for i in range(0, 42, 6)]


def _spec_decimals(sas: bytes) -> list[int]:
    bits = "".join(f"{b:08b}" for b in sas[:5])[:39]
    return [int(bits[i : i + 13], 2) + 1000 for i in range(0, 39, 13)]


def _spec_mac(secret: bytes, info: str, message: str) -> str:
    key = _hkdf(secret, info.encode(), 32)
    return _b64(hmac.new(key, message.encode(), hashlib.sha256).digest())


def _spec_canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _independent_vectors() -> dict[str, Any]:
    v = VECTORS["inputs"]
    a_pub, b_pub = _public(v["alice_private"]), _public(v["bob_private"])
    shared = _private(v["alice_private"]).exchange(_private(v["bob_private"]).public_key())
    info = (
        f"MATRIX_KEY_VERIFICATION_SAS|{ALICE}|{ALICE_DEVICE}|{a_pub}|"
        f"{BOB}|{BOB_DEVICE}|{b_pub}|{FLOW}"
    )
    sas = _hkdf(shared, info.encode(), 6)
    mac_info_device = f"MATRIX_KEY_VERIFICATION_MAC{ALICE}{ALICE_DEVICE}{BOB}{BOB_DEVICE}{FLOW}"
    key_id = f"ed25519:{ALICE_DEVICE}"
    key_ids = ",".join(sorted([key_id, f"ed25519:{v['alice_master']}"]))
    return {
        "alice_public": a_pub,
        "bob_public": b_pub,
        "sas_info": info,
        "sas_bytes": sas.hex(),
        "emoji": _spec_emoji(sas),
        "decimals": _spec_decimals(sas),
        "mac_device": _spec_mac(shared, mac_info_device + key_id, v["alice_ed25519"]),
        "mac_key_ids": _spec_mac(shared, mac_info_device + "KEY_IDS", key_ids),
        "commitment": _b64(
            hashlib.sha256(b_pub.encode() + _spec_canonical(v["start_content"])).digest()
        ),
    }


def test_independent_computation_matches_the_golden_vectors() -> None:
    assert _independent_vectors() == VECTORS["expected"]


def test_library_matches_the_golden_vectors() -> None:
    v, expected = VECTORS["inputs"], VECTORS["expected"]
    alice = EphemeralKey(_private(v["alice_private"]))
    bob = EphemeralKey(_private(v["bob_private"]))
    assert alice.public_key == expected["alice_public"]
    assert bob.public_key == expected["bob_public"]
    info = sas_info(ALICE, ALICE_DEVICE, alice.public_key, BOB, BOB_DEVICE, bob.public_key, FLOW)
    assert info == expected["sas_info"]
    shared = alice.agree(bob.public_key)
    assert bob.agree(alice.public_key).sas_bytes(info) == shared.sas_bytes(info)
    sas = shared.sas_bytes(info)
    assert sas.hex() == expected["sas_bytes"]
    assert list(emoji_indices(sas)) == expected["emoji"]
    assert list(decimals(sas)) == expected["decimals"]
    key_id = f"ed25519:{ALICE_DEVICE}"
    device_info = mac_info(ALICE, ALICE_DEVICE, BOB, BOB_DEVICE, FLOW, key_id)
    assert shared.mac(v["alice_ed25519"], device_info) == expected["mac_device"]
    ids = ",".join(sorted([key_id, f"ed25519:{v['alice_master']}"]))
    ids_info = mac_info(ALICE, ALICE_DEVICE, BOB, BOB_DEVICE, FLOW, "KEY_IDS")
    assert shared.mac(ids, ids_info) == expected["mac_key_ids"]
    assert commitment(bob.public_key, v["start_content"]) == expected["commitment"]


def _ctx(we_are_alice: bool) -> FlowContext:
    v = VECTORS["inputs"]
    keys = FixedKeys(
        their_device_key=Ed25519Key(v["bob_ed25519"] if we_are_alice else v["alice_ed25519"]),
        their_master_key=Ed25519Key(v["bob_master"] if we_are_alice else v["alice_master"]),
        own_master_key=Ed25519Key(v["alice_master"] if we_are_alice else v["bob_master"]),
        own_master_trusted=True,
    )
    me, them = ((ALICE, ALICE_DEVICE), (BOB, BOB_DEVICE))[:: 1 if we_are_alice else -1]
    return FlowContext(
        our_user=UserId(me[0]),
        our_device=DeviceId(me[1]),
        our_ed25519=Ed25519Key(v["alice_ed25519"] if we_are_alice else v["bob_ed25519"]),
        their_user=UserId(them[0]),
        their_device=DeviceId(them[1]),
        flow_id=FLOW,
        keys=keys,
        envelope=lambda content: envelope(ToDeviceTransport(), FLOW, content),
    )


def test_flows_with_fixed_keys_reproduce_the_vectors() -> None:
    """The whole SAS exchange with fixed ephemeral keys: info order, MAC ids, commitment."""
    v, expected = VECTORS["inputs"], VECTORS["expected"]
    alice, start = SasFlow.start(_ctx(True), key=EphemeralKey(_private(v["alice_private"])))
    bob = SasFlow.from_start(
        _ctx(False), start.content, key=EphemeralKey(_private(v["bob_private"]))
    )
    accept = bob.accept()
    assert accept.content["commitment"] == _b64(
        hashlib.sha256(expected["bob_public"].encode() + _spec_canonical(start.content)).digest()
    )
    (alice_key,) = alice.receive(accept.event_type, accept.content)
    (bob_key,) = bob.receive(alice_key.event_type, alice_key.content)
    assert alice.receive(bob_key.event_type, bob_key.content) == []
    # Alice sent the start, so the info string is the golden one for both sides.
    for flow in (alice, bob):
        assert flow.state is SasState.KEYS_EXCHANGED
        assert [EMOJI_TABLE.index(e) for e in flow.emoji() or []] == expected["emoji"]
        assert list(flow.decimals() or ()) == expected["decimals"]
    (alice_mac,) = alice.confirm()
    assert alice_mac.content["mac"] == {
        f"ed25519:{ALICE_DEVICE}": expected["mac_device"],
        f"ed25519:{v['alice_master']}": alice_mac.content["mac"][f"ed25519:{v['alice_master']}"],
    }
    assert alice_mac.content["keys"] == expected["mac_key_ids"]
    assert bob.receive(alice_mac.event_type, alice_mac.content) == []
    (bob_mac,) = bob.confirm()
    assert bob.state is SasState.VERIFIED
    assert bob.verified is not None
    assert bob.verified.device == (ALICE_DEVICE, v["alice_ed25519"])
    assert bob.verified.master_key == v["alice_master"]
    alice.receive(bob_mac.event_type, bob_mac.content)
    assert alice.state is SasState.VERIFIED


def _exchanged() -> tuple[SasFlow, SasFlow, EphemeralKey, str]:
    v = VECTORS["inputs"]
    alice_key = EphemeralKey(_private(v["alice_private"]))
    alice, start = SasFlow.start(_ctx(True), key=alice_key)
    bob = SasFlow.from_start(
        _ctx(False), start.content, key=EphemeralKey(_private(v["bob_private"]))
    )
    accept = bob.accept()
    (alice_msg,) = alice.receive(accept.event_type, accept.content)
    (bob_msg,) = bob.receive(alice_msg.event_type, alice_msg.content)
    alice.receive(bob_msg.event_type, bob_msg.content)
    return alice, bob, alice_key, bob_msg.content["key"]


def test_valid_macs_over_keys_we_do_not_know_prove_nothing() -> None:
    """Correct MACs, but only for key ids Bob holds no copy of: not a verification."""
    _, bob, alice_key, bob_public = _exchanged()
    shared = alice_key.agree(bob_public)
    unknown = "ed25519:SOMEOTHERKEY"

    def info(key_id: str) -> str:
        return mac_info(ALICE, ALICE_DEVICE, BOB, BOB_DEVICE, FLOW, key_id)

    content = {
        "mac": {unknown: shared.mac(VECTORS["inputs"]["alice_ed25519"], info(unknown))},
        "keys": shared.mac(unknown, info("KEY_IDS")),
    }
    assert bob.receive("m.key.verification.mac", content) == []
    with pytest.raises(FlowCancelled) as caught:
        bob.confirm()
    assert caught.value.code == "m.key_mismatch"
    assert bob.verified is None


def test_master_key_alone_is_enough_and_device_alone_is_enough() -> None:
    """Either key we know may carry the verification; the result says which."""
    v = VECTORS["inputs"]
    for only in ("device", "master"):
        _, bob, alice_key, bob_public = _exchanged()
        shared = alice_key.agree(bob_public)
        key_id = f"ed25519:{ALICE_DEVICE}" if only == "device" else f"ed25519:{v['alice_master']}"
        key = v["alice_ed25519"] if only == "device" else v["alice_master"]

        def info(kid: str) -> str:
            return mac_info(ALICE, ALICE_DEVICE, BOB, BOB_DEVICE, FLOW, kid)

        content = {
            "mac": {key_id: shared.mac(key, info(key_id))},
            "keys": shared.mac(key_id, info("KEY_IDS")),
        }
        bob.receive("m.key.verification.mac", content)
        bob.confirm()
        assert bob.verified is not None
        assert (bob.verified.device is not None) == (only == "device")
        assert (bob.verified.master_key is not None) == (only == "master")


def test_vodozemac_agrees_on_sas_bytes_and_macs() -> None:
    """vodozemac (used by Element's SDK) is an independent implementation of the same maths."""
    for _ in range(20):
        theirs = vz.Sas()
        ours = EphemeralKey()
        established = theirs.diffie_hellman(vz.Curve25519PublicKey.from_base64(ours.public_key))
        shared = ours.agree(theirs.public_key.to_base64())
        info = sas_info(ALICE, "A", ours.public_key, BOB, "B", theirs.public_key.to_base64(), FLOW)
        sas = shared.sas_bytes(info)
        theirs_bytes = established.bytes(info)
        assert list(theirs_bytes.emoji_indices) == list(emoji_indices(sas))
        assert tuple(theirs_bytes.decimals) == decimals(sas)
        m_info = mac_info(ALICE, "A", BOB, "B", FLOW, "ed25519:A")
        assert established.calculate_mac("some key", m_info) == shared.mac("some key", m_info)
        assert shared.verify_mac("some key", m_info, established.calculate_mac("some key", m_info))
        # The deprecated MAC's broken base64 is not what we produce or accept.
        legacy = established.calculate_mac_invalid_base64("some key", m_info)
        assert legacy != shared.mac("some key", m_info)


def test_emoji_table_is_the_spec_table() -> None:
    spec = json.loads((DATA / "sas-emoji.json").read_text())
    assert len(EMOJI_TABLE) == 64 == len(spec)
    for row in spec:
        emoji = emoji_for(row["number"])
        assert (emoji.symbol, emoji.description) == (row["emoji"], row["description"])
        codepoints = "".join(f"U+{ord(c):X}" for c in emoji.symbol)
        assert codepoints == row["unicode"]
    with pytest.raises(ValueError):
        emoji_for(64)


def test_bit_extraction_edges() -> None:
    assert decimals(b"\x00" * 5) == (1000, 1000, 1000)
    assert decimals(b"\xff" * 5) == (9191, 9191, 9191)
    assert emoji_indices(b"\xff" * 6) == (63,) * 7
    # 0b000001 000010 000011 000100 000101 000110 000111 + 6 spare bits
    packed = int("000001000010000011000100000101000110000111" + "101010", 2).to_bytes(6, "big")
    assert emoji_indices(packed) == (1, 2, 3, 4, 5, 6, 7)


@given(st.binary(min_size=6, max_size=6))
def test_bit_extraction_matches_string_slicing(sas: bytes) -> None:
    assert list(emoji_indices(sas)) == _spec_emoji(sas)
    assert list(decimals(sas)) == _spec_decimals(sas)


def test_small_order_keys_are_refused() -> None:
    ours = EphemeralKey()
    with pytest.raises(ValueError):
        ours.agree(_b64(bytes(32)))  # the identity point: the shared secret would be zero
    with pytest.raises(ValueError):
        ours.agree(_b64(bytes(31)))
    with pytest.raises(ValueError):
        ours.agree("not base64!")


def test_secrets_stay_out_of_reprs() -> None:
    key = EphemeralKey(_private(VECTORS["inputs"]["alice_private"]))
    shared = key.agree(VECTORS["expected"]["bob_public"])
    assert VECTORS["inputs"]["alice_private"] not in repr(key)
    assert "hidden" in repr(shared)
