"""Room encryption settings parsed from untrusted state."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from messa.crypto.megolm.settings import (
    DEFAULT_ROTATION_PERIOD_MS,
    DEFAULT_ROTATION_PERIOD_MSGS,
    MAX_ROTATION_PERIOD_MS,
    MAX_ROTATION_PERIOD_MSGS,
    MIN_ROTATION_PERIOD_MS,
    MIN_ROTATION_PERIOD_MSGS,
    EncryptionSettings,
    HistoryVisibility,
    room_key_recipients,
)
from messa.errors import InvalidInputError, RemoteInputError, UnknownAlgorithmError

MEGOLM = "m.megolm.v1.aes-sha2"


def test_defaults() -> None:
    s = EncryptionSettings.from_event_content({"algorithm": MEGOLM})
    assert s.rotation_period_ms == 604_800_000 == DEFAULT_ROTATION_PERIOD_MS
    assert s.rotation_period_msgs == 100 == DEFAULT_ROTATION_PERIOD_MSGS
    assert s.history_visibility is HistoryVisibility.SHARED
    assert s.shares_with_invited


@pytest.mark.parametrize(
    ("content", "ms", "msgs"),
    [
        ({"rotation_period_ms": 1, "rotation_period_msgs": 0}, 3_600_000, 1),
        ({"rotation_period_ms": 10**15, "rotation_period_msgs": 10**9}, 604_800_000, 10_000),
        ({"rotation_period_ms": 7_200_000, "rotation_period_msgs": 5}, 7_200_000, 5),
        ({"rotation_period_ms": -5, "rotation_period_msgs": -5}, 3_600_000, 1),
        ({"rotation_period_ms": "soon", "rotation_period_msgs": None}, 604_800_000, 100),
        ({"rotation_period_ms": True, "rotation_period_msgs": False}, 604_800_000, 100),
        (
            {"rotation_period_ms": float("nan"), "rotation_period_msgs": float("inf")},
            604_800_000,
            10_000,
        ),
        ({"rotation_period_ms": 5_400_000.7, "rotation_period_msgs": 2.5}, 5_400_000, 2),
    ],
)
def test_rotation_periods_are_clamped(content: dict[str, object], ms: int, msgs: int) -> None:
    s = EncryptionSettings.from_event_content({"algorithm": MEGOLM, **content})
    assert (s.rotation_period_ms, s.rotation_period_msgs) == (ms, msgs)


def test_rejects_other_algorithms_and_shapes() -> None:
    with pytest.raises(UnknownAlgorithmError):
        EncryptionSettings.from_event_content({"algorithm": "m.olm.v1.curve25519-aes-sha2"})
    with pytest.raises(UnknownAlgorithmError):
        EncryptionSettings.from_event_content({})
    with pytest.raises(InvalidInputError):
        EncryptionSettings.from_event_content(["algorithm"])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, HistoryVisibility.SHARED),
        ("shared", HistoryVisibility.SHARED),
        ("invited", HistoryVisibility.INVITED),
        ("joined", HistoryVisibility.JOINED),
        ("world_readable", HistoryVisibility.WORLD_READABLE),
        ("something_new", HistoryVisibility.JOINED),
        (42, HistoryVisibility.JOINED),
    ],
)
def test_history_visibility(value: object, expected: HistoryVisibility) -> None:
    s = EncryptionSettings.from_event_content({"algorithm": MEGOLM}, value)
    assert s.history_visibility is expected
    assert s.shares_with_invited is (expected is not HistoryVisibility.JOINED)


def test_dict_roundtrip() -> None:
    s = EncryptionSettings.from_event_content(
        {"algorithm": MEGOLM, "rotation_period_msgs": 7}, "joined"
    )
    assert EncryptionSettings.from_dict(s.to_dict()) == s


def test_recipients() -> None:
    members = {"@a:x": "join", "@b:x": "invite", "@c:x": "leave", "@d:x": "ban"}
    shared = EncryptionSettings()
    joined = EncryptionSettings(history_visibility=HistoryVisibility.JOINED)
    assert room_key_recipients(members, shared) == ["@a:x", "@b:x"]
    assert room_key_recipients(members, joined) == ["@a:x"]
    assert room_key_recipients(list(members.items()), joined) == ["@a:x"]


@given(
    st.one_of(
        st.none(),
        st.integers(),
        st.text(),
        st.lists(st.integers()),
        st.dictionaries(
            st.sampled_from(["algorithm", "rotation_period_ms", "rotation_period_msgs", "x"]),
            st.one_of(
                st.none(), st.booleans(), st.integers(), st.floats(), st.text(), st.just(MEGOLM)
            ),
        ),
    ),
    st.one_of(st.none(), st.text(), st.integers()),
)
def test_any_content_gives_bounded_settings_or_typed_error(content: object, vis: object) -> None:
    try:
        s = EncryptionSettings.from_event_content(content, vis)
    except RemoteInputError:
        return
    assert MIN_ROTATION_PERIOD_MS <= s.rotation_period_ms <= MAX_ROTATION_PERIOD_MS
    assert MIN_ROTATION_PERIOD_MSGS <= s.rotation_period_msgs <= MAX_ROTATION_PERIOD_MSGS
    assert isinstance(s.rotation_period_ms, int) and isinstance(s.rotation_period_msgs, int)
