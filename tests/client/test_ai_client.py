"""AI features through the client, on real decrypted messages from a real Synapse.

Outputs are cached only in the encrypted store: the raw store files never
contain them in clear.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from messa.client import MessaClient
from messa.errors import EngineUnavailableError

pytestmark = pytest.mark.integration


async def _sync_until(client: MessaClient, predicate, rounds: int = 30) -> None:
    for _ in range(rounds):
        await client.sync_once(timeout_ms=300)
        if predicate():
            return
    raise AssertionError("condition not reached after syncing")


def _require_apertium() -> None:
    if shutil.which("apertium") is None:
        reason = "Debian package apertium (and apertium-eng-spa) not installed"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI must install it)")
        pytest.skip(reason)


async def test_suggest_translate_summarize_and_cache_encrypted(
    new_user, make_client, tmp_path: Path
) -> None:
    alice_u, bob_u = new_user("alice"), new_user("bob")
    alice = await make_client(alice_u, "alice")
    bob = await make_client(bob_u, "bob")
    room = await alice.create_room("ai", invite=[bob_u.user_id])
    await _sync_until(bob, lambda: any(r.room_id == room for r in bob.rooms()))
    await bob.join(room)
    await alice.sync_once(timeout_ms=100)

    lines = [
        "The release is planned for Friday after the security review.",
        "Marta found two bugs in the login screen yesterday.",
        "Thank you so much for your help!",
    ]
    for line in lines:
        await alice.send_text(room, line)
    await _sync_until(bob, lambda: lines[-1] in [e.body for e in bob.timeline(room)])

    suggestions = await bob.suggest_replies(room)
    assert suggestions.replies, suggestions
    assert suggestions.language == "en"
    again = await bob.suggest_replies(room)
    assert again == suggestions  # served from the encrypted cache

    summary = await bob.summarize(room, mark_read=True)
    assert summary.message_count >= len(lines)
    assert bob.unread(room) == []

    # Nothing to answer when the last message is our own.
    await bob.send_text(room, "ok")
    assert (await bob.suggest_replies(room)).replies == ()

    outputs = [*suggestions.replies, summary.text]
    event = next(e for e in bob.timeline(room) if e.body == lines[0])
    translation = None
    try:
        translation = await bob.translate(event, to="es")
    except EngineUnavailableError:
        _require_apertium()
        raise
    assert translation.machine_translated and translation.original == lines[0]
    assert translation.text and translation.text != lines[0]
    outputs.append(translation.text)
    with pytest.raises(EngineUnavailableError) as info:
        await bob.translate(event, to="de")
    assert info.value.how_to_enable

    store_dir = tmp_path / "bob"
    raw = b"".join(p.read_bytes() for p in store_dir.iterdir() if p.is_file())
    for text in outputs:
        for chunk in {text[:24], text[-24:]}:
            if len(chunk.strip()) >= 8:
                assert chunk.encode() not in raw, chunk
