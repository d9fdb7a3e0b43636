"""``messa verify`` between real ``messa`` processes on a real Synapse.

Each side of a verification is its own ``messa verify --json`` process; the
test plays the two people: it reads both sides' JSON lines, compares the
emoji they show (or passes the QR payload from one to the other), and
answers on their stdin, as a script driving both sides would.
"""

from __future__ import annotations

import base64
import json
import queue
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cli_support import (
    OK,
    PASSPHRASE,
    TIMEOUT,
    UNKNOWN_ROOM,
    USAGE,
    Messa,
    Result,
    assert_schema,
)

from messa.homeserver import EmbeddedHomeserver, RegisteredUser
from support.homeserver import make_user_factory

pytestmark = pytest.mark.integration

VERIFICATION_FAILED = 14
STEP_S = 90.0


@dataclass
class Profile:
    """One device: a CLI profile logged in as a user."""

    user: RegisteredUser
    path: Path
    device_id: str

    @property
    def user_id(self) -> str:
        return self.user.user_id


def login(runner: Messa, server: EmbeddedHomeserver, user: RegisteredUser, path: Path) -> Profile:
    result = runner(
        "login", "--homeserver", server.base_url, "--user", user.user_id,
        "--password-stdin", "--json", profile=path, stdin=user.password + "\n",
    )  # fmt: skip
    assert result.code == OK, result
    return Profile(user, path, result.json()["device_id"])


@dataclass
class Live:
    """A running ``messa --json`` process whose JSON lines are read as they come."""

    proc: subprocess.Popen[str]
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)
    events: list[dict[str, Any]] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        def read_out() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.put(line)
            self.lines.put(None)

        def read_err() -> None:
            assert self.proc.stderr is not None
            self.stderr.extend(self.proc.stderr)

        threading.Thread(target=read_out, daemon=True).start()
        threading.Thread(target=read_err, daemon=True).start()

    def until(self, name: str, timeout: float = STEP_S) -> dict[str, Any]:
        """Read events up to the first one called ``name``."""
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no {name!r} event in {timeout} s; {self.events}") from None
            if line is None:
                self.proc.wait(timeout=30)
                raise AssertionError(
                    f"exited ({self.proc.returncode}) before {name!r}: "
                    f"{self.events} {''.join(self.stderr)}"
                )
            event = json.loads(line)
            self.events.append(event)
            if event["event"] == name:
                return event

    def say(self, text: str) -> None:
        """Write one line on the process's stdin."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float = STEP_S) -> Result:
        """Wait for the end; every remaining stdout line must be a JSON event."""
        code = self.proc.wait(timeout=timeout)
        while (line := self.lines.get(timeout=10)) is not None:
            self.events.append(json.loads(line))
        err = "".join(self.stderr)
        return Result([str(a) for a in self.proc.args], code, "", err)  # type: ignore[union-attr]

    def names(self) -> list[str]:
        return [e["event"] for e in self.events]


def start(runner: Messa, profile: Profile, *args: str) -> Live:
    """``messa --profile P verify ARGS --json`` in the background, stdin a pipe."""
    proc = subprocess.Popen(
        runner.argv(("verify", *args, "--json"), profile.path),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**runner.env, "MESSA_PASSPHRASE": PASSPHRASE},
    )
    return Live(proc)


def stop(*lives: Live) -> None:
    for live in lives:
        if live.proc.poll() is None:
            live.proc.kill()
            live.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Messa:
    return Messa(tmp_path_factory.mktemp("cli-verify"))


@pytest.fixture(scope="module")
def people(
    homeserver: EmbeddedHomeserver, runner: Messa, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Profile]:
    new_user = make_user_factory(homeserver)
    base = tmp_path_factory.mktemp("verify-profiles")
    alice, bob = new_user("alice"), new_user("bob")
    found = {
        "alice": login(runner, homeserver, alice, base / "alice"),
        "bob": login(runner, homeserver, bob, base / "bob"),
    }
    for profile in found.values():  # both accounts have cross-signing keys from here on
        assert runner("keys", "bootstrap", profile=profile.path).code == OK
    # A second device of alice's: it does not hold (or trust) her keys yet.
    found["alice2"] = login(runner, homeserver, alice, base / "alice2")
    return found


def devices(runner: Messa, profile: Profile, user: str) -> dict[str, Any]:
    result = runner("devices", "list", user, "--json", profile=profile.path)
    assert result.code == OK, result
    return result.json()


def trust_of(runner: Messa, profile: Profile, user: str, device: str) -> str:
    doc = devices(runner, profile, user)
    (found,) = [d["trust"] for d in doc["devices"] if d["device_id"] == device]
    return str(found)


def sas_pair(left: Live, right: Live) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both sides' SAS events, checked for shape and equality."""
    shown = left.until("sas"), right.until("sas")
    for sas in shown:
        assert_schema(sas, {"event": str, "emoji": list, "decimals": list})
        assert len(sas["emoji"]) == 7 and len(sas["decimals"]) == 3
        for emoji in sas["emoji"]:
            assert_schema(emoji, {"symbol": str, "description": str})
        assert all(1000 <= n <= 9191 for n in sas["decimals"])
    assert shown[0]["emoji"] == shown[1]["emoji"]
    assert shown[0]["decimals"] == shown[1]["decimals"]
    return shown


def test_emoji_verification_of_another_user_to_device(
    people: dict[str, Profile], runner: Messa
) -> None:
    alice, bob = people["alice"], people["bob"]
    before = devices(runner, alice, bob.user_id)
    assert before["identity"]["verified"] is False  # bob's identity is known, not verified
    assert trust_of(runner, alice, bob.user_id, bob.device_id) == "cross_signed"

    requester = start(runner, alice, bob.user_id, bob.device_id)
    acceptor = start(runner, bob, "--accept", alice.user_id)
    try:
        requested = requester.until("requested")
        assert_schema(
            requested,
            {"event": str, "user_id": str, "device_id": str, "flow_id": str, "room_id": type(None)},
        )
        assert (requested["user_id"], requested["device_id"]) == (bob.user_id, bob.device_id)
        incoming = acceptor.until("request")
        assert incoming["user_id"] == alice.user_id and incoming["device_id"] == alice.device_id
        assert incoming["flow_id"] == requested["flow_id"]
        sas_pair(requester, acceptor)
        requester.say("yes")
        acceptor.say("yes")
        ends = requester.finish(), acceptor.finish()
    finally:
        stop(requester, acceptor)
    for live, end in zip((requester, acceptor), ends, strict=True):
        assert end.code == OK, (end, live.events)
        done = live.events[-1]
        assert done["event"] == "done" and done["verified"] is True, live.events
        assert "Traceback" not in end.err
    assert requester.names() == ["requested", "ready", "sas", "confirmed", "done"]
    assert acceptor.names() == ["request", "ready", "sas", "confirmed", "done"]
    assert requester.events[-1]["master_key"] is True

    after = devices(runner, alice, bob.user_id)
    assert after["identity"]["verified"] is True and after["identity"]["changed"] is False
    assert trust_of(runner, alice, bob.user_id, bob.device_id) == "verified"
    assert trust_of(runner, bob, alice.user_id, alice.device_id) == "verified"
    # alice's second device is not cross-signed by alice yet: bob does not trust it.
    assert trust_of(runner, bob, alice.user_id, people["alice2"].device_id) == "unverified"
    human = runner("devices", "list", bob.user_id, profile=alice.path)
    assert human.code == OK and "identity: verified" in human.out and "verified" in human.out


@pytest.fixture(scope="module")
def room(people: dict[str, Profile], runner: Messa) -> str:
    """An encrypted room alice and bob are in."""
    alice, bob = people["alice"], people["bob"]
    created = runner(
        "rooms", "create", "--name", "verify", "--invite", bob.user_id, "--json",
        profile=alice.path,
    )  # fmt: skip
    assert created.code == OK, created
    room_id: str = created.json()["room_id"]
    assert runner("rooms", "join", room_id, profile=bob.path).code == OK
    return room_id


def test_mismatch_in_room_cancels_both_sides(
    people: dict[str, Profile], runner: Messa, room: str
) -> None:
    alice, bob = people["alice"], people["bob"]
    requester = start(runner, alice, bob.user_id, "--room", room)
    acceptor = start(runner, bob, "--accept", alice.user_id)
    try:
        assert requester.until("requested")["room_id"] == room
        assert acceptor.until("request")["room_id"] == room
        sas_pair(requester, acceptor)
        requester.say("no")  # alice sees different emoji: someone may be in the middle
        acceptor.say("yes")
        ends = requester.finish(), acceptor.finish()
    finally:
        stop(requester, acceptor)
    for live, end in zip((requester, acceptor), ends, strict=True):
        assert end.code == VERIFICATION_FAILED, (end, live.events)
        cancelled = live.events[-1]
        assert_schema(
            cancelled,
            {
                "event": str, "verified": bool, "code": str, "reason": str, "by_us": bool,
                "user_id": str, "device_id": (str, type(None)), "flow_id": str, "room_id": str,
            },
        )  # fmt: skip
        assert cancelled["event"] == "cancelled" and cancelled["verified"] is False
        assert cancelled["code"] == "m.mismatched_sas"
        error = end.json_error()
        assert error["name"] == "verification_failed" and "m.mismatched_sas" in error["message"]
    assert requester.events[-1]["by_us"] is True and acceptor.events[-1]["by_us"] is False
    assert "done" not in requester.names() + acceptor.names()


def test_qr_self_verification_new_device_becomes_trusted(
    people: dict[str, Profile], runner: Messa, tmp_path: Path
) -> None:
    alice, alice2, bob = people["alice"], people["alice2"], people["bob"]
    # alice backs up her room keys: the new device will get the backup key too.
    enabled = runner("backup", "enable", "--json", profile=alice.path)
    assert enabled.code == OK, enabled
    before = runner("keys", "status", "--json", profile=alice2.path)
    assert before.code == OK, before
    assert not any(before.json()["cross_signing"][k] for k in ("master", "trusted"))
    assert before.json()["backup"]["has_key"] is False
    png = tmp_path / "code.png"
    shower = start(runner, alice, alice.user_id, alice2.device_id, "--qr", "--png", str(png))
    scanner = start(runner, alice2, "--accept", "--scan", "-")
    try:
        scanner.until("request")
        shown = shower.until("qr")
        assert_schema(shown, {"event": str, "payload": str, "png": str})
        assert png.read_bytes().startswith(b"\x89PNG")
        scanner.until("ready")
        scanner.say(shown["payload"])
        scanner.until("scanned")
        shower.until("qr_scanned")
        shower.say("yes")
        ends = shower.finish(), scanner.finish()
    finally:
        stop(shower, scanner)
    for live, end in zip((shower, scanner), ends, strict=True):
        assert end.code == OK, (end, live.events)
        done = next(e for e in live.events if e["event"] == "done")
        assert done["verified"] is True
    assert shower.events[-1]["event"] == "done"
    # The new device asked for the account's keys by itself and got them.
    keys = scanner.events[-1]
    assert keys["event"] == "keys" and scanner.names()[-2] == "done"
    assert_schema(keys, {"event": str, "cross_signing": bool, "backup_key": bool})
    assert keys["cross_signing"] is True and keys["backup_key"] is True
    status = runner("backup", "status", "--json", profile=alice2.path)
    assert status.code == OK, status
    assert status.json()["has_key"] is True and status.json()["enabled"] is True
    assert status.json()["version"] == enabled.json()["version"]
    held = runner("keys", "status", "--json", profile=alice2.path)
    assert held.code == OK, held
    assert_schema(held.json(), {"user_id": str, "cross_signing": dict, "backup": dict})
    cs = held.json()["cross_signing"]
    assert all(cs[k] is True for k in ("master", "self_signing", "user_signing", "keys_match"))
    assert cs["trusted"] is True
    assert held.json()["backup"] == {"version": enabled.json()["version"], "has_key": True}
    human = runner("keys", "status", profile=alice2.path)
    assert human.code == OK and "master, self-signing, user-signing" in human.out, human
    # alice's first device cross-signed the new one: bob, who verified alice, now trusts it.
    assert trust_of(runner, bob, alice.user_id, alice2.device_id) == "verified"
    own = devices(runner, alice2, alice.user_id)
    assert own["identity"]["verified"] is True


def test_qr_between_users_in_room(people: dict[str, Profile], runner: Messa, room: str) -> None:
    alice, bob = people["alice"], people["bob"]
    # bob shows his code; alice (the requester) scans it from the pasted payload.
    requester = start(runner, alice, bob.user_id, "--room", room, "--scan", "-")
    shower = start(runner, bob, "--accept", alice.user_id, "--qr")
    try:
        requester.until("ready")
        shown = shower.until("qr")
        requester.say(shown["payload"])
        requester.until("scanned")
        shower.until("qr_scanned")
        shower.say("yes")
        ends = requester.finish(), shower.finish()
    finally:
        stop(requester, shower)
    for live, end in zip((requester, shower), ends, strict=True):
        assert end.code == OK, (end, live.events)
        assert live.events[-1]["event"] == "done"


def test_a_wrong_qr_code_cancels(people: dict[str, Profile], runner: Messa) -> None:
    alice, bob = people["alice"], people["bob"]
    shower = start(runner, alice, bob.user_id, bob.device_id, "--qr")
    scanner = start(runner, bob, "--accept", alice.user_id, "--scan", "-")
    try:
        payload = shower.until("qr")["payload"]
        scanner.until("ready")
        raw = bytearray(base64.b64decode(payload))
        raw[-1] ^= 0xFF  # the shared secret no longer matches
        scanner.say(base64.b64encode(bytes(raw)).decode())
        ends = shower.finish(), scanner.finish()
    finally:
        stop(shower, scanner)
    for live, end in zip((shower, scanner), ends, strict=True):
        assert end.code == VERIFICATION_FAILED, (end, live.events)
        assert live.events[-1]["event"] == "cancelled"
        assert live.events[-1]["code"] == "m.key_mismatch"


def test_timeouts_and_usage(people: dict[str, Profile], runner: Messa) -> None:
    alice, bob = people["alice"], people["bob"]
    waited = runner("verify", "--accept", "--timeout", "2", "--json", profile=alice.path)
    assert waited.code == TIMEOUT, waited
    assert "no verification request" in waited.json_error()["message"]

    unanswered = runner("verify", bob.user_id, bob.device_id, "--timeout", "2", profile=alice.path)
    assert unanswered.code == TIMEOUT, unanswered
    assert "cancelled" in unanswered.error_line()

    unknown = runner("verify", bob.user_id, "NOSUCHDEVICE", "--json", profile=alice.path)
    assert unknown.code == UNKNOWN_ROOM, unknown
    assert "NOSUCHDEVICE" in unknown.json_error()["message"]

    for args, words in (
        ((bob.user_id,), "--room"),
        (("--qr", "--scan", "-", bob.user_id, bob.device_id), "choose one"),
        (("--scan", "bm90IGEgY29kZQ", bob.user_id, bob.device_id), "--scan"),
        (("--png", "x.png", bob.user_id, bob.device_id), "--qr"),
        ((), "USER"),
        ((alice.user_id, alice.device_id), "this device"),
        (("not-a-user",), "not a user id"),
    ):
        result = runner("verify", *args, profile=alice.path)
        assert result.code == USAGE, result
        assert words in result.error_line(), result


def test_verify_first_makes_sure_the_account_has_cross_signing_keys(
    homeserver: EmbeddedHomeserver, runner: Messa, tmp_path: Path
) -> None:
    dan = login(runner, homeserver, make_user_factory(homeserver)("dan"), tmp_path / "dan")
    waited = runner("verify", "--accept", "--timeout", "2", "--json", profile=dan.path)
    assert waited.code == TIMEOUT, waited
    events = waited.json_lines()
    after = runner("keys", "bootstrap", "--json", profile=dan.path).json()
    assert after["published"] is False and after["trusted"] is True
    # The keys were created by `verify`, unless `messa login` already did it.
    assert len(events) <= 1, events
    if events:
        cross_signing = {"event": "cross_signing", "published": True}
        assert events[0] == {**cross_signing, "master_key": after["master_key"]}


def test_keys_bootstrap(homeserver: EmbeddedHomeserver, runner: Messa, tmp_path: Path) -> None:
    user = make_user_factory(homeserver)("carol")
    carol = login(runner, homeserver, user, tmp_path / "carol")
    first = runner("keys", "bootstrap", "--json", profile=carol.path)
    assert first.code == OK, first
    doc = first.json()
    assert_schema(doc, {"published": bool, "user_id": str, "master_key": str, "trusted": bool})
    assert doc["user_id"] == user.user_id and doc["trusted"] is True  # published now or at login
    alone = runner("verify", user.user_id, profile=carol.path)  # no other device to ask
    assert alone.code == USAGE and "no device" in alone.error_line(), alone
    again = runner("keys", "bootstrap", "--json", profile=carol.path)
    assert again.code == OK, again
    assert again.json() == {**doc, "published": False}
    # A new device of the account does not replace the keys, and does not trust them yet.
    other = login(runner, homeserver, user, tmp_path / "carol2")
    result = runner("keys", "bootstrap", profile=other.path)
    assert result.code == OK, result
    assert "already has cross-signing keys" in result.out and "messa verify" in result.out
    doc2 = runner("keys", "bootstrap", "--json", profile=other.path).json()
    assert doc2["master_key"] == doc["master_key"] and doc2["trusted"] is False


def test_people_at_two_terminals(people: dict[str, Profile], runner: Messa) -> None:
    """Without --json: emoji with their names, the question on stderr, the answer from stdin."""
    alice, alice2 = people["alice"], people["alice2"]
    env = {**runner.env, "MESSA_PASSPHRASE": PASSPHRASE}
    procs = [
        subprocess.Popen(
            runner.argv(args, profile.path),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for args, profile in (
            (("verify", "--accept"), alice2),
            (("verify", alice.user_id, alice2.device_id), alice),
        )
    ]
    try:
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("y\n")  # read only when the question comes
            proc.stdin.flush()
        outputs = [proc.communicate(timeout=STEP_S) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == OK, (out, err)
        assert "Do the emoji match? [y/N]" in err and "Traceback" not in err
        assert "numbers: " in out and "Verified" in out
        assert not out.lstrip().startswith("{")
    (emoji_line,) = [line for line in outputs[0][0].splitlines() if line.count("   ") >= 6]
    assert emoji_line in outputs[1][0]  # the same seven emoji and names on both terminals


def test_qr_code_on_a_terminal(people: dict[str, Profile], runner: Messa) -> None:
    """Without --json the code is drawn in the terminal, with its text for `--scan`."""
    alice, alice2 = people["alice"], people["alice2"]
    shower = subprocess.Popen(
        runner.argv(("verify", alice2.user_id, alice2.device_id, "--qr"), alice.path),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**runner.env, "MESSA_PASSPHRASE": PASSPHRASE},
    )
    scanner = start(runner, alice2, "--accept", "--scan", "-")
    lines: queue.Queue[str] = queue.Queue()
    drawn: list[str] = []

    def read() -> None:
        assert shower.stdout is not None
        for line in shower.stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        assert shower.stdin is not None
        shower.stdin.write("y\n")  # the answer to "Did the other device scan it?"
        shower.stdin.flush()
        scanner.until("ready")
        while "--scan " not in (line := lines.get(timeout=STEP_S)):
            drawn.append(line)
        scanner.say(line.split("--scan ", 1)[1].split()[0])
        scanner.until("scanned")
        code = shower.wait(timeout=STEP_S)
        end = scanner.finish()
        err = shower.stderr.read() if shower.stderr else ""
    finally:
        stop(scanner)
        if shower.poll() is None:
            shower.kill()
            shower.wait(timeout=30)
    assert code == OK, err
    assert end.code == OK and scanner.events[-1]["event"] == "done", scanner.events
    # Half-block characters, a square of them: a QR code, not a blank.
    art = [line for line in drawn if any(c in line for c in "█▀▄")]
    assert len(art) >= 10 and len({len(line.rstrip("\n")) for line in art}) == 1
    assert "Did the other device scan it, and show success? [y/N]" in err
