"""Property tests: every parser of backup input the server controls fails only with typed errors."""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from messa.crypto.backup import (
    BackupDecryptionKey,
    BackupEncryptor,
    BackupVersion,
    check_auth_data,
    parse_version_info,
)
from messa.crypto.backup.session_data import (
    encode_session_data,
    key_backup_data,
    parse_key_backup_data,
    parse_session_data,
)
from messa.errors import RemoteInputError
from messa.types.ids import RoomId

from .megolm_fakes import ALICE, BOB, ROOM, World
from .test_backup_helpers import BackupDevice, receive_group_session

KEY = BackupDecryptionKey.generate()

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=50),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=20), inner, max_size=4)
    ),
    max_leaves=12,
)
b64ish = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef0123456789+/=-_!", max_size=120)
envelopes = st.fixed_dictionaries(
    {}, optional={"ciphertext": b64ish | json_values, "mac": b64ish, "ephemeral": b64ish}
)


@settings(max_examples=300, deadline=None)
@given(room=json_values | st.text(max_size=300), session=json_values, data=json_values)
def test_key_backup_data_parser(room: Any, session: Any, data: Any) -> None:
    try:
        entry = parse_key_backup_data(room, session, data)
    except RemoteInputError:
        return
    assert entry.first_message_index >= 0 and isinstance(entry.session_data, dict)


@settings(max_examples=300, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=200),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.dictionaries(
            st.sampled_from(
                [
                    "algorithm",
                    "sender_key",
                    "session_key",
                    "sender_claimed_keys",
                    "forwarding_curve25519_key_chain",
                ]
            ),
            json_values | b64ish,
        ).map(lambda d: json.dumps({"algorithm": "m.megolm.v1.aes-sha2", **d}).encode()),
    )
)
def test_session_data_parser(data: bytes) -> None:
    try:
        session = parse_session_data(data)
    except RemoteInputError:
        return
    assert len(session.sender_key) == 43 and session.session_key


@settings(max_examples=300, deadline=None)
@given(envelope=envelopes | json_values)
def test_envelope_decryption(envelope: Any) -> None:
    # Malformed, or a MAC / padding failure (BackupDecryptionError): both remote errors.
    with contextlib.suppress(RemoteInputError):
        KEY.decrypt(envelope)


@settings(max_examples=200, deadline=None)
@given(
    info=st.fixed_dictionaries(
        {},
        optional={
            "algorithm": st.just("m.megolm_backup.v1.curve25519-aes-sha2") | json_values,
            "version": st.text(max_size=10) | json_values,
            "auth_data": st.fixed_dictionaries(
                {}, optional={"public_key": b64ish | json_values, "signatures": json_values}
            )
            | json_values,
            "count": json_values,
            "etag": json_values,
        },
    )
)
def test_version_info_parser_and_trust_check(info: dict[str, Any]) -> None:
    try:
        version = parse_version_info(info)
    except RemoteInputError:
        return
    trust = check_auth_data(version, ALICE, {"ed25519:DEV": "A" * 43}, KEY)
    assert not trust.trusted  # nothing in there is signed by a key we trust


def _entries() -> tuple[BackupVersion, list[tuple[object, object, object]]]:
    """A few valid entries, encrypted for ``KEY``."""
    encryptor = BackupEncryptor(KEY.public_key)
    world = World()
    sender = world.party(BOB, "BOB1")
    holder = world.party(ALICE, "A1")
    out = []
    for _ in range(3):
        receive_group_session(holder, sender)
    for record in holder.store.iter_inbound_group_sessions():
        key = holder.inbound.export_session(record.room_id, record.session_id)
        assert key is not None
        envelope = encryptor.encrypt(encode_session_data(record, key))
        out.append(
            (
                record.room_id,
                record.session_id,
                key_backup_data(record, envelope, is_verified=False),
            )
        )
    return BackupVersion("1", KEY.public_key, {}), out


VERSION, VALID = _entries()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    garbage=st.lists(
        st.tuples(
            json_values | st.just(ROOM),
            json_values | st.text(max_size=50),
            json_values | envelopes.map(lambda e: {"first_message_index": 0, "session_data": e}),
        ),
        max_size=8,
    ),
    order=st.randoms(use_true_random=False),
)
def test_restore_never_aborts(garbage: list[tuple[Any, Any, Any]], order: Any) -> None:
    entries = [*copy.deepcopy(VALID), *garbage]
    order.shuffle(entries)
    device = BackupDevice(World(), ALICE, "NEW")
    result = device.backup.restore(VERSION, entries, key=KEY)
    assert result.processed == len(entries)
    assert result.imported == len(VALID)
    for room, session, _ in VALID:
        record = device.inbound.get_record(RoomId(str(room)), str(session))
        assert record is not None and not record.authenticated
