"""Reading user-interactive-auth challenges and building password answers."""

from __future__ import annotations

import pytest

from messa.errors import AuthRequiredError, InvalidInputError
from messa.matrix import UiaChallenge, new_txn_id, password_auth


def challenge(body: dict[str, object]) -> AuthRequiredError:
    return AuthRequiredError(401, None, None, body=body)


def test_challenge_parsed() -> None:
    err = challenge(
        {
            "flows": [{"stages": ["m.login.password"]}, {"stages": ["m.login.sso", 3]}, "x"],
            "session": "S",
            "completed": ["m.login.dummy", 5],
            "params": {"m.login.terms": {}},
        }
    )
    parsed = UiaChallenge.from_error(err)
    assert parsed == UiaChallenge(
        session="S",
        flows=(("m.login.password",),),
        completed=("m.login.dummy",),
        params={"m.login.terms": {}},
    )
    assert parsed.offers("m.login.password")
    assert not parsed.offers("m.login.sso")


def test_challenge_tolerates_bad_optional_fields() -> None:
    parsed = UiaChallenge.from_error(
        challenge({"flows": [{"stages": ["a", "b"]}], "session": 5, "completed": "x", "params": []})
    )
    assert parsed == UiaChallenge(None, (("a", "b"),), (), {})


@pytest.mark.parametrize("flows", [None, [], "x", [{"stages": "a"}], [{}]])
def test_challenge_without_valid_flow(flows: object) -> None:
    with pytest.raises(InvalidInputError):
        UiaChallenge.from_error(challenge({"flows": flows}))


def test_password_auth() -> None:
    assert password_auth("@a:ex.org", "pw", "S") == {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": "@a:ex.org"},
        "password": "pw",
        "session": "S",
    }
    assert "session" not in password_auth("@a:ex.org", "pw", None)


def test_txn_ids_are_unique_and_url_safe() -> None:
    ids = {new_txn_id() for _ in range(1000)}
    assert len(ids) == 1000
    for txn in ids:
        assert len(txn) >= 16
        assert all(c.isalnum() or c in "-_" for c in txn)
