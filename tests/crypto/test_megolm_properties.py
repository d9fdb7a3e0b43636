"""Property tests: untrusted Megolm input never crashes, and never forges."""

from __future__ import annotations

import base64
import contextlib
import functools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from messa.crypto.interfaces import DecryptedOlmEvent
from messa.crypto.megolm import _parse
from messa.errors import RemoteInputError
from messa.types.events import Decrypted, UnableToDecrypt

from .megolm_fakes import ALICE, BOB, MALLORY, ROOM, Party, World

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = ["type", "content", "sender", "event_id", "algorithm", "session_id", "ciphertext"]


@functools.cache
def _setup() -> tuple[Party, Party, dict[str, Any]]:
    world = World()
    alice = world.party(ALICE, "A1")
    bob = world.party(BOB, "B1")
    world.party(MALLORY, "M1")
    bob.receive(alice.share([BOB]), alice)
    event = alice.send("the genuine message", event_id="$genuine:example.org")
    assert isinstance(bob.inbound.decrypt(ROOM, event), Decrypted)
    return alice, bob, event


def _check(result: object, genuine: dict[str, Any]) -> None:
    assert isinstance(result, Decrypted | UnableToDecrypt)
    if isinstance(result, Decrypted):
        # Only the genuine message, under its own event id and sender, may decrypt.
        assert result.content == {"msgtype": "m.text", "body": "the genuine message"}
        assert result.info.sender == ALICE


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_decrypt_never_raises_on_arbitrary_input(value: object) -> None:
    _, bob, event = _setup()
    _check(bob.inbound.decrypt(ROOM, value), event)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(FIELDS), json_values)
def test_decrypt_never_raises_on_a_mutated_event(field: str, value: object) -> None:
    _, bob, event = _setup()
    mutated = {**event, "content": dict(event["content"])}
    if field in ("type", "content", "sender", "event_id"):
        mutated[field] = value
    else:
        mutated["content"][field] = value
    _check(bob.inbound.decrypt(ROOM, mutated), event)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.text(max_size=8))
def test_arbitrary_ciphertext_for_a_known_session(data: bytes, event_suffix: str) -> None:
    _, bob, event = _setup()
    content = {**event["content"], "ciphertext": base64.b64encode(data).decode().rstrip("=")}
    forged = {**event, "content": content, "event_id": f"$forged{event_suffix}:x"}
    result = bob.inbound.decrypt(ROOM, forged)
    assert isinstance(result, UnableToDecrypt)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0), st.integers(min_value=0, max_value=255))
def test_flipped_ciphertext_byte_never_decrypts(position: int, mask: int) -> None:
    _, bob, event = _setup()
    text = event["content"]["ciphertext"]
    raw = bytearray(base64.b64decode(text + "=" * (-len(text) % 4)))
    raw[position % len(raw)] ^= mask or 1
    content = {**event["content"], "ciphertext": base64.b64encode(bytes(raw)).decode()}
    result = bob.inbound.decrypt(ROOM, {**event, "content": content, "event_id": "$flip:x"})
    assert isinstance(result, UnableToDecrypt)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        json_values,
        st.fixed_dictionaries(
            {
                "algorithm": st.one_of(st.just("m.megolm.v1.aes-sha2"), json_scalars),
                "room_id": st.one_of(st.just(ROOM), json_scalars),
                "session_id": json_scalars,
                "session_key": st.one_of(
                    json_scalars, st.binary().map(lambda b: base64.b64encode(b).decode())
                ),
            }
        ),
    )
)
def test_room_key_content_raises_only_typed_errors(content: Any) -> None:
    alice, bob, _ = _setup()
    event = DecryptedOlmEvent(
        sender=alice.user,
        sender_curve25519=alice.device.curve25519,
        sender_ed25519=alice.device.ed25519,
        sender_device=alice.device,
        event_type="m.room_key",
        content=content,
    )
    with contextlib.suppress(RemoteInputError):
        bob.inbound.add_room_key(event)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        json_values,
        st.fixed_dictionaries(
            {
                "algorithm": st.one_of(st.just("m.megolm.v1.aes-sha2"), json_scalars),
                "code": json_scalars,
                "sender_key": json_scalars,
            },
            optional={
                "room_id": st.one_of(st.just(ROOM), json_scalars),
                "session_id": json_scalars,
                "reason": json_scalars,
            },
        ),
    )
)
def test_withheld_content_raises_only_typed_errors(content: Any) -> None:
    _, bob, _ = _setup()
    with contextlib.suppress(RemoteInputError):
        bob.inbound.receive_withheld(ALICE, content)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(FIELDS), json_values, st.booleans())
def test_read_ahead_never_raises_nor_changes_verdicts(
    field: str, value: object, whole: bool
) -> None:
    _, bob, event = _setup()
    mutated: object = value
    if not whole:
        mutated = {**event, "content": dict(event["content"])}
        if field in ("type", "content", "sender", "event_id"):
            mutated[field] = value
        else:
            mutated["content"][field] = value
    fields = _parse.session_and_ciphertext(mutated)
    parsed = _parse.parse_encrypted_event(mutated)
    if isinstance(parsed, _parse.EncryptedEvent):
        assert fields == (parsed.session_id, parsed.ciphertext)
    without = bob.restarted().inbound.decrypt(ROOM, mutated)
    reader = bob.restarted()
    with reader.ctx.batch():
        reader.inbound.prefetch_replay_records([mutated, event])
        with_read_ahead = reader.inbound.decrypt(ROOM, mutated)
    assert type(with_read_ahead) is type(without)
    if isinstance(without, UnableToDecrypt):
        assert isinstance(with_read_ahead, UnableToDecrypt)
        assert with_read_ahead.reason is without.reason
