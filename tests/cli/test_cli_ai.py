"""``messa ai suggest|translate|summary|doctor`` through the real executable and Synapse.

Translation uses Debian's Apertium: without it those tests are skipped with
a reason naming the package, and fail under CI (which installs it).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from cli_support import OK, UNKNOWN_ROOM, USAGE, Messa, Result, assert_schema

from messa.ai.engines.apertium import find_modes_dir
from messa.homeserver import EmbeddedHomeserver, RegisteredUser
from support.homeserver import make_user_factory

AI_UNAVAILABLE = 15
SUGGESTIONS = {
    "room_id": str,
    "event_id": (str, type(None)),
    "replies": list,
    "language": (str, type(None)),
    "engine": str,
    "intent": (str, type(None)),
    "score": (float, type(None)),
    "reason": str,
}
TRANSLATION = {
    "room_id": str,
    "event_id": str,
    "sender": str,
    "label": str,
    "text": str,
    "source": str,
    "target": str,
    "engine": str,
    "original": str,
    "machine_translated": bool,
    "via": list,
}
SUMMARY = {
    "room_id": str,
    "text": str,
    "bullets": list,
    "message_count": int,
    "engine": str,
    "extractive": bool,
    "marked_read": bool,
}
FEATURE = {"feature": str, "setting": str, "chosen": (str, type(None)), "engines": list}
ENGINE = {"name": str, "ok": bool, "reason": str, "how_to_enable": str}


def require_apertium() -> None:
    """Skip unless Apertium and its en-es and es-fr pairs are installed; fail under CI."""
    absent = []
    if shutil.which("apertium") is None or shutil.which("lt-proc") is None:
        absent.append("apertium")
    modes = find_modes_dir()
    for package, mode in (("apertium-eng-spa", "eng-spa"), ("apertium-fr-es", "es-fr")):
        if modes is None or not (modes / f"{mode}.mode").is_file():
            absent.append(package)
    if absent:
        reason = f"Debian package {', '.join(absent)} not installed"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI must install it)")
        pytest.skip(reason)


def login(runner: Messa, server: EmbeddedHomeserver, user: RegisteredUser, path: Path) -> None:
    result = runner(
        "login", "--homeserver", server.base_url, "--user", user.user_id,
        "--password-stdin", profile=path, stdin=user.password + "\n",
    )  # fmt: skip
    assert result.code == OK, result


class Chat:
    """Two profiles in one encrypted room; ``frank`` reads what ``erin`` writes."""

    def __init__(self, runner: Messa, erin: Path, frank: Path, room: str) -> None:
        self.runner, self.erin, self.frank, self.room = runner, erin, frank, room

    def send(self, text: str) -> str:
        result = self.runner("send", self.room, text, "--json", profile=self.erin)
        assert result.code == OK, result
        event_id: str = result.json()["event_id"]
        return event_id

    def ai(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return self.runner("ai", *args, profile=self.frank, env=env)


@pytest.fixture(scope="module")
def chat(homeserver: EmbeddedHomeserver, tmp_path_factory: pytest.TempPathFactory) -> Chat:
    runner = Messa(tmp_path_factory.mktemp("cli-ai"))
    new_user = make_user_factory(homeserver)
    base = tmp_path_factory.mktemp("ai-profiles")
    erin, frank = new_user("erin"), new_user("frank")
    for user, name in ((erin, "erin"), (frank, "frank")):
        login(runner, homeserver, user, base / name)
        # Cross-signed devices: room keys go only to those by default.
        assert runner("keys", "bootstrap", profile=base / name).code == OK
    created = runner("rooms", "create", "--invite", frank.user_id, "--json", profile=base / "erin")
    assert created.code == OK, created
    room = created.json()["room_id"]
    assert runner("rooms", "join", room, profile=base / "frank").code == OK
    return Chat(runner, base / "erin", base / "frank", room)


@pytest.mark.integration
def test_suggest(chat: Chat) -> None:
    asked = chat.send("Thank you so much for your help!")
    result = chat.ai("suggest", chat.room, "--json")
    assert result.code == OK, result
    doc = result.json()
    assert_schema(doc, SUGGESTIONS)
    assert doc["room_id"] == chat.room and doc["event_id"] == asked
    assert 1 <= len(doc["replies"]) <= 3 and all(isinstance(r, str) for r in doc["replies"])
    assert doc["language"] == "en"

    two = chat.ai("suggest", chat.room, "--n", "2", "--json").json()
    assert 1 <= len(two["replies"]) <= 2
    human = chat.ai("suggest", chat.room)
    assert human.code == OK and "nothing is sent" in human.out
    assert doc["replies"][0] in human.out
    assert chat.ai("suggest", chat.room, "--n", "0").code == USAGE


@pytest.mark.integration
def test_summary_of_unread_messages_then_mark_read(chat: Chat) -> None:
    chat.ai("summary", chat.room, "--mark-read", "--json")  # start from a clean marker
    texts = [
        "The deploy is scheduled for Friday at noon.",
        "Please review the release notes before Thursday.",
        "I will bring the slides to the meeting.",
    ]
    for text in texts:
        chat.send(text)
    result = chat.ai("summary", chat.room, "--json")
    assert result.code == OK, result
    doc = result.json()
    assert_schema(doc, SUMMARY)
    assert doc["message_count"] == len(texts) and doc["marked_read"] is False
    assert doc["extractive"] is True and doc["bullets"]
    # Extractive: every point quotes one of the messages, with its sender.
    assert all(any(b.endswith(": " + t) for t in texts) for b in doc["bullets"]), doc

    human = chat.ai("summary", chat.room, "--mark-read")
    assert human.code == OK and "3 unread messages" in human.out
    after = chat.ai("summary", chat.room, "--json").json()
    assert after["message_count"] == 0 and after["bullets"] == []
    assert "no unread messages" in chat.ai("summary", chat.room).err


@pytest.mark.integration
def test_translate_latest_and_given_message(chat: Chat) -> None:
    require_apertium()
    first = chat.send("Good morning, where is the train station?")
    chat.send("I have a dog and a cat.")
    latest = chat.ai("translate", chat.room, "--to", "es", "--json")
    assert latest.code == OK, latest
    doc = latest.json()
    assert_schema(doc, TRANSLATION)
    assert doc["label"] == "machine translation" and doc["machine_translated"] is True
    assert (doc["source"], doc["target"], doc["engine"]) == ("en", "es", "apertium")
    assert doc["original"] == "I have a dog and a cat."
    assert "perro" in doc["text"].lower()

    given = chat.ai("translate", chat.room, first, "--to", "fr", "--json")
    assert given.code == OK, given
    doc = given.json()
    assert doc["event_id"] == first and doc["via"] == ["es"]  # en→fr goes through Spanish
    assert doc["original"] == "Good morning, where is the train station?"
    human = chat.ai("translate", chat.room, first, "--to", "es")
    assert human.code == OK
    assert "Machine translation (en → es, apertium)" in human.out
    assert "Good morning, where is the train station?" in human.out  # the original, too


@pytest.mark.integration
def test_translation_not_available_is_a_clean_error(chat: Chat) -> None:
    chat.send("See you tomorrow at the office.")
    # No engine here translates into German (Apertium has no such pair; none is configured).
    result = chat.ai("translate", chat.room, "--to", "de", "--json")
    assert result.code == AI_UNAVAILABLE, result
    assert result.out == ""
    error = result.json_error()
    assert error["name"] == "ai_unavailable" and "to enable:" in error["message"]
    human = chat.ai("translate", chat.room, "--to", "de")
    assert human.code == AI_UNAVAILABLE
    assert human.error_line().startswith("messa: error: AI engine unavailable")

    # Apertium out of reach (as on a machine without it): the same clean error, naming it.
    no_apertium = {"PATH": str(Path(chat.runner.exe).parent)}
    result = chat.ai("translate", chat.room, "--to", "es", "--json", env=no_apertium)
    assert result.code == AI_UNAVAILABLE, result
    message = result.json_error()["message"]
    assert "apertium" in message.lower() and "to enable:" in message
    doctor = chat.ai("doctor", "--json", env=no_apertium).json()
    translation = next(f for f in doctor["features"] if f["feature"] == "translation")
    assert translation["chosen"] is None
    (apertium,) = [e for e in translation["engines"] if e["name"] == "apertium"]
    assert apertium["ok"] is False and "apt" in apertium["how_to_enable"]


@pytest.mark.integration
def test_translate_mistakes(chat: Chat) -> None:
    missing = chat.ai("translate", chat.room, "$nosuchevent", "--to", "es")
    assert missing.code == UNKNOWN_ROOM, missing
    assert "$nosuchevent" in missing.error_line()
    assert chat.ai("translate", chat.room, "--to", "Spanish!").code == USAGE
    assert chat.ai("translate", chat.room, "nosigil", "--to", "es").code == USAGE
    assert chat.ai("translate", chat.room).code == USAGE  # --to is required
    assert chat.ai("suggest", "!unknown:localhost").code == UNKNOWN_ROOM


def test_doctor(messa: Messa, tmp_path: Path) -> None:
    profile = tmp_path / "doc"  # the doctor needs no login: it reads the profile's AI settings
    result = messa("ai", "doctor", "--json", profile=profile)
    assert result.code == OK, result
    doc = result.json()
    assert_schema(doc, {"features": list, "network": str})
    assert [f["feature"] for f in doc["features"]] == [
        "replies",
        "translation",
        "summary",
        "detection",
    ]
    for feature in doc["features"]:
        assert_schema(feature, FEATURE)
        assert feature["engines"]
        for engine in feature["engines"]:
            assert_schema(engine, ENGINE)
            if not engine["ok"]:
                assert engine["how_to_enable"], engine  # every missing engine says how
        chosen = [e["name"] for e in feature["engines"] if e["ok"]]
        assert feature["setting"] == "auto"  # a new profile's defaults
        assert feature["chosen"] == (chosen[0] if chosen else None)  # the first that works
    summary = next(f for f in doc["features"] if f["feature"] == "summary")
    assert summary["chosen"] == "extractive"  # always there, needs nothing
    assert "loopback" in doc["network"]

    human = messa("ai", "doctor", profile=profile)
    assert human.code == OK, human
    for word in ("replies", "translation", "summary", "detection", "extractive", "in use"):
        assert word in human.out
