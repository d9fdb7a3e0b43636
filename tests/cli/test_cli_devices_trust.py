"""``messa devices trust|block|unblock`` and the trust shown by ``devices list``."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from cli_support import NOT_LOGGED_IN, OK, UNKNOWN_ROOM, USAGE, Messa, assert_schema

from messa.cli.commands.devices import _identity_notes, identity_json
from messa.cli.context import CliState
from messa.cli.output import Output
from messa.homeserver import EmbeddedHomeserver, RegisteredUser
from messa.types.ids import Ed25519Key, UserId
from messa.types.keys import CrossSigningKey, CrossSigningUsage, UserIdentity
from support.homeserver import make_user_factory

DEVICE_SCHEMA = {
    "user_id": str,
    "device_id": str,
    "display_name": (str, type(None)),
    "ed25519": str,
    "curve25519": str,
    "trust": str,
    "local_trust": str,
    "cross_signed": bool,
    "deleted": bool,
    "this_device": bool,
}
IDENTITY_SCHEMA = {
    "master_key": str,
    "verified": bool,
    "changed": bool,
    "verification_violation": bool,
    "needs_attention": bool,
}


def login(runner: Messa, server: EmbeddedHomeserver, user: RegisteredUser, path: Path) -> str:
    result = runner(
        "login", "--homeserver", server.base_url, "--user", user.user_id,
        "--password-stdin", "--json", profile=path, stdin=user.password + "\n",
    )  # fmt: skip
    assert result.code == OK, result
    device: str = result.json()["device_id"]
    return device


@pytest.mark.integration
def test_trust_block_unblock_round_trip(
    homeserver: EmbeddedHomeserver, messa: Messa, tmp_path: Path
) -> None:
    new_user = make_user_factory(homeserver)
    carol, dave = new_user("carol"), new_user("dave")
    carol_profile, dave_profile = tmp_path / "carol", tmp_path / "dave"
    carol_device = login(messa, homeserver, carol, carol_profile)
    dave_device = login(messa, homeserver, dave, dave_profile)
    published = messa("keys", "bootstrap", "--json", profile=dave_profile)
    assert published.code == OK, published
    # dave's second device: his account has keys, but they have not signed this device.
    dave2_device = login(messa, homeserver, dave, tmp_path / "dave2")

    def listed(device_id: str) -> tuple[dict[str, object] | None, dict[str, object]]:
        result = messa("devices", "list", dave.user_id, "--json", profile=carol_profile)
        assert result.code == OK, result
        doc = result.json()
        assert_schema(doc, {"user_id": str, "identity": (dict, type(None)), "devices": list})
        for device in doc["devices"]:
            assert_schema(device, DEVICE_SCHEMA)
        (found,) = [d for d in doc["devices"] if d["device_id"] == device_id]
        return doc["identity"], found

    identity, device = listed(dave2_device)
    assert device["trust"] == "unverified" and device["cross_signed"] is False
    assert identity is not None
    assert_schema(identity, IDENTITY_SCHEMA)
    assert identity["master_key"] == published.json()["master_key"]
    assert identity["verified"] is False and identity["needs_attention"] is False
    assert listed(dave_device)[1]["trust"] == "cross_signed"
    human = messa("devices", "list", dave.user_id, profile=carol_profile)
    assert "identity: not verified" in human.out
    assert "cross-signed" in human.out and "unverified" in human.out

    steps = (("trust", "verified", "verified"), ("block", "blocked", "blocked"))
    for command, trust, local in (*steps, ("unblock", "unverified", "unset")):
        result = messa(
            "devices", command, dave.user_id, dave2_device, "--json", profile=carol_profile
        )
        assert result.code == OK, result
        doc = result.json()
        assert_schema(doc, DEVICE_SCHEMA)
        assert (doc["device_id"], doc["trust"], doc["local_trust"]) == (dave2_device, trust, local)
        # Stored in the profile, seen by the next process.
        assert listed(dave2_device)[1]["trust"] == trust

    # A block wins over cross-signing; unblock returns to it.
    blocked = messa("devices", "block", dave.user_id, dave_device, "--json", profile=carol_profile)
    assert blocked.json()["trust"] == "blocked"
    back = messa("devices", "unblock", dave.user_id, dave_device, profile=carol_profile)
    assert back.code == OK and "cross-signed" in back.out

    # Mistakes: an unknown device, this device itself, a malformed user id.
    args = ("devices", "trust", dave.user_id, "NOSUCHDEV", "--json")
    unknown = messa(*args, profile=carol_profile)
    assert unknown.code == UNKNOWN_ROOM, unknown
    assert "NOSUCHDEV" in unknown.json_error()["message"]
    own = messa("devices", "block", carol.user_id, carol_device, profile=carol_profile)
    assert own.code == USAGE and "this device" in own.error_line()
    bad = messa("devices", "trust", "dave", dave_device, profile=carol_profile)
    assert bad.code == USAGE and "not a user id" in bad.error_line()


def test_trust_needs_a_logged_in_profile(messa: Messa, tmp_path: Path) -> None:
    result = messa("devices", "trust", "@x:localhost", "DEV", "--json", profile=tmp_path / "p")
    assert result.code == NOT_LOGGED_IN, result
    assert result.out == ""


def _identity(master: str, pinned: str, *, verified: bool, was_verified: bool) -> UserIdentity:
    uid = UserId("@eve:localhost")

    def key(public: str, usage: CrossSigningUsage) -> CrossSigningKey:
        return CrossSigningKey(user_id=uid, usage=usage, public_key=Ed25519Key(public), raw={})

    return UserIdentity(
        user_id=uid,
        master_key=key(master, CrossSigningUsage.MASTER),
        self_signing_key=key("S" * 43, CrossSigningUsage.SELF_SIGNING),
        user_signing_key=None,
        verified=verified,
        pinned_master=Ed25519Key(pinned),
        was_verified=was_verified,
    )


def test_a_user_without_identity() -> None:
    assert identity_json(None) is None
    out, err = io.StringIO(), io.StringIO()
    _identity_notes(CliState(Path("p"), Output(False, stdout=out, stderr=err)), "@eve:x", None)
    assert out.getvalue() == "" and "no cross-signing identity" in err.getvalue()


@pytest.mark.parametrize(
    ("identity", "warning"),
    [
        (_identity("A" * 43, "A" * 43, verified=True, was_verified=True), None),
        (_identity("B" * 43, "A" * 43, verified=False, was_verified=False), "changed"),
        (_identity("A" * 43, "A" * 43, verified=False, was_verified=True), "was verified"),
    ],
    ids=["verified", "changed", "lost-verification"],
)
def test_identity_status_and_warnings(identity: UserIdentity, warning: str | None) -> None:
    record = identity_json(identity)
    assert record is not None
    assert_schema(record, IDENTITY_SCHEMA)
    assert record["needs_attention"] is (warning is not None)
    out, err = io.StringIO(), io.StringIO()
    _identity_notes(CliState(Path("p"), Output(False, stdout=out, stderr=err)), "@eve:x", record)
    assert ("identity: verified" if warning is None else "identity: not verified") in out.getvalue()
    if warning is None:
        assert err.getvalue() == ""
    else:
        assert "warning" in err.getvalue() and warning in err.getvalue()
        assert "messa verify @eve:x" in err.getvalue()
