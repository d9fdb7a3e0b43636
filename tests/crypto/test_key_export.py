"""The key export file format: vectors, golden file, round trips, every tampering case.

``python -m tests.crypto.test_key_export`` regenerates the golden files in
``data/key_export/`` (only when the format changes on purpose: the committed
file is what other clients' files look like).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from messa.crypto import _vodozemac as vz
from messa.crypto.key_export import (
    FOOTER,
    HEADER,
    MAX_ROUNDS,
    export_keys,
    import_keys,
    iter_import,
    write_export,
)
from messa.crypto.key_export._format import _ArrayReader, _write_export
from messa.errors import CryptoMisuseError, KeyExportError, WrongExportPassphraseError

DATA = Path(__file__).parent / "data" / "key_export"
GOLDEN_TEXT = DATA / "golden.txt"
GOLDEN_JSON = DATA / "golden.json"
FAST = 100_000  # the smallest round count Messa writes


def independent_file(
    plaintext: bytes,
    passphrase: str,
    *,
    salt: bytes = b"S" * 16,
    iv: bytes = bytes(16),
    rounds: int = 1,
    version: int = 1,
    line: int = 64,
) -> str:
    """The spec's six steps with raw hashlib / cryptography calls."""
    key = hashlib.pbkdf2_hmac("sha512", passphrase.encode(), salt, rounds, 64)
    encryptor = Cipher(algorithms.AES(key[:32]), modes.CTR(iv)).encryptor()
    body = bytes([version]) + salt + iv + rounds.to_bytes(4, "big")
    body += encryptor.update(plaintext) + encryptor.finalize()
    body += hmac.new(key[32:], body, hashlib.sha256).digest()
    text = base64.b64encode(body).decode()
    lines = [text[i : i + line] for i in range(0, len(text), line)]
    return HEADER + "\n" + "\n".join(lines) + "\n" + FOOTER + "\n"


def independent_read(text: str, passphrase: str) -> bytes:
    """Decrypt a file with raw calls (checks the MAC first)."""
    lines = text.strip().splitlines()
    assert lines[0] == HEADER and lines[-1] == FOOTER
    body = base64.b64decode("".join(lines[1:-1]))
    assert body[0] == 1
    salt, iv, rounds = body[1:17], body[17:33], int.from_bytes(body[33:37], "big")
    key = hashlib.pbkdf2_hmac("sha512", passphrase.encode(), salt, rounds, 64)
    assert hmac.compare_digest(hmac.new(key[32:], body[:-32], hashlib.sha256).digest(), body[-32:])
    assert iv[8] & 0x80 == 0
    decryptor = Cipher(algorithms.AES(key[:32]), modes.CTR(iv)).decryptor()
    return decryptor.update(body[37:-32]) + decryptor.finalize()


SESSIONS = [
    {
        "algorithm": "m.megolm.v1.aes-sha2",
        "room_id": f"!room{i}:example.org",
        "sender_key": "c" * 43,
        "session_id": f"s{i}",
        "session_key": "k" * 300,
        "sender_claimed_keys": {"ed25519": "e" * 43},
        "forwarding_curve25519_key_chain": [],
    }
    for i in range(5)
]


# --- interop with an independent implementation --------------------------------------


def test_a_file_built_by_hand_imports() -> None:
    text = independent_file(json.dumps(SESSIONS).encode(), "pass phrase")
    assert import_keys(text, "pass phrase") == SESSIONS


def test_our_file_reads_by_hand() -> None:
    text = export_keys(SESSIONS, "pass phrase", rounds=FAST)
    assert json.loads(independent_read(text, "pass phrase")) == SESSIONS
    lines = text.splitlines()
    assert text.endswith("\n") and lines[0] == HEADER and lines[-1] == FOOTER
    assert all(len(line) == 96 for line in lines[1:-2])  # fixed-width body lines
    assert 0 < len(lines[-2]) <= 96
    rounds = int.from_bytes(base64.b64decode("".join(lines[1:-1]))[33:37], "big")
    assert rounds == FAST


def test_default_rounds() -> None:
    text = export_keys([], "p")
    body = base64.b64decode("".join(text.splitlines()[1:-1]))
    assert int.from_bytes(body[33:37], "big") == 500_000


@pytest.mark.parametrize(
    "transform",
    [
        lambda t: t.replace("\n", "\r\n"),
        lambda t: "\n\n  " + t + "\n\n",
        lambda t: t.rstrip("\n"),
        lambda t: t.replace("=", ""),  # unpadded base64, as some clients write
        lambda t: HEADER + "\n" + "".join(t.splitlines()[1:-1]) + "\n" + FOOTER,  # one line
    ],
)
def test_layout_variants_are_accepted(transform: Any) -> None:
    text = independent_file(json.dumps(SESSIONS).encode(), "p", line=76)
    assert import_keys(transform(text), "p") == SESSIONS


# --- golden file ----------------------------------------------------------------------------


def golden() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(GOLDEN_JSON.read_text())
    return data


def test_golden_file_is_unchanged() -> None:
    g = golden()
    out = io.StringIO()
    _write_export(
        out.write,
        g["sessions"],
        g["passphrase"],
        g["rounds"],
        bytes.fromhex(g["salt_hex"]),
        bytes.fromhex(g["iv_hex"]),
    )
    assert out.getvalue() == GOLDEN_TEXT.read_text()


def test_golden_file_imports() -> None:
    g = golden()
    assert import_keys(GOLDEN_TEXT.read_text(), g["passphrase"]) == g["sessions"]
    assert json.loads(independent_read(GOLDEN_TEXT.read_text(), g["passphrase"])) == g["sessions"]


# --- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sessions",
    [[], SESSIONS[:1], SESSIONS, [{"unicode": "é✓ 😀", "nested": {"a": [1, 2.5, None]}}] * 3],
)
def test_round_trip(sessions: list[dict[str, Any]]) -> None:
    text = export_keys(sessions, "pässwörd ✓", rounds=FAST)
    assert import_keys(text, "pässwörd ✓") == sessions


def test_round_trip_through_files_streams(tmp_path: Path) -> None:
    path = tmp_path / "keys.txt"
    many = [dict(SESSIONS[0], session_id=f"s{i}") for i in range(3000)]
    with path.open("w") as out:
        assert write_export(out, iter(many), "p", rounds=FAST) == 3000
    with path.open() as source:
        entries = iter_import(source, "p")
        assert next(entries) == many[0]
        assert list(entries) == many[1:]


def test_fresh_salt_and_iv_each_time() -> None:
    a, b = export_keys([], "p", rounds=FAST), export_keys([], "p", rounds=FAST)
    body_a, body_b = (base64.b64decode("".join(t.splitlines()[1:-1])) for t in (a, b))
    assert body_a[1:17] != body_b[1:17] and body_a[17:33] != body_b[17:33]
    assert body_a[25] & 0x80 == 0 and body_b[25] & 0x80 == 0  # IV bit 63


def test_json_reader_handles_every_chunk_boundary() -> None:
    text = ' [ {"a": "}\\"{"} , {"b": [1, {"c": 2}]},{} ] \n'
    expected = json.loads(text)
    for size in (1, 2, 3, 7):
        reader = _ArrayReader()
        got: list[dict[str, Any]] = []
        for i in range(0, len(text), size):
            got.extend(reader.feed(text[i : i + size]))
        got.extend(reader.feed("", final=True))
        assert got == expected


# --- export arguments ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("passphrase", "rounds"),
    [("", FAST), ("p", FAST - 1), ("p", 0), ("p", MAX_ROUNDS + 1), ("p", True)],
)
def test_export_refuses_weak_or_absurd_parameters(passphrase: str, rounds: int) -> None:
    with pytest.raises(CryptoMisuseError):
        export_keys([], passphrase, rounds=rounds)


def test_export_refuses_non_json_sessions() -> None:
    with pytest.raises(CryptoMisuseError):
        export_keys([{"key": b"bytes"}], "p", rounds=FAST)


# --- tampering and malformed files --------------------------------------------------------


def body_of(text: str) -> bytearray:
    return bytearray(base64.b64decode("".join(text.strip().splitlines()[1:-1])))


def with_body(body: bytes) -> str:
    return HEADER + "\n" + base64.b64encode(body).decode() + "\n" + FOOTER + "\n"


# A well-formed prefix (version 1, one round) and a MAC-sized tail.
TINY = bytes([1]) + bytes(32) + (1).to_bytes(4, "big") + bytes(32)
SMALL = independent_file(json.dumps(SESSIONS[:2]).encode(), "p")


def test_wrong_passphrase() -> None:
    with pytest.raises(WrongExportPassphraseError):
        import_keys(SMALL, "P")
    with pytest.raises(WrongExportPassphraseError):
        import_keys(SMALL, "")


@pytest.mark.parametrize(
    "offset",
    [1, 16, 17, 32, 40, 60, -40, -33, -32, -1],
    ids=lambda o: f"byte{o}",
)
def test_any_flipped_bit_fails_the_mac(offset: int) -> None:
    """Salt, IV, ciphertext and MAC are all covered (rounds below)."""
    body = body_of(SMALL)
    body[offset] ^= 0x10
    with pytest.raises(WrongExportPassphraseError):
        import_keys(with_body(bytes(body)), "p")


def test_changed_rounds_fail_the_mac_or_the_bounds() -> None:
    body = body_of(SMALL)
    body[36] ^= 0x02  # 1 -> 3 rounds
    with pytest.raises(WrongExportPassphraseError):
        import_keys(with_body(bytes(body)), "p")
    for rounds in (0, MAX_ROUNDS + 1, 2**32 - 1):
        body[33:37] = rounds.to_bytes(4, "big")
        with pytest.raises(KeyExportError, match="rounds"):
            import_keys(with_body(bytes(body)), "p")


def test_rounds_above_the_callers_limit_are_refused_before_deriving() -> None:
    text = independent_file(b"[]", "p", rounds=5000)
    with pytest.raises(KeyExportError, match="limit 1000"):
        import_keys(text, "p", max_rounds=1000)
    assert import_keys(text, "p", max_rounds=5000) == []


def test_other_versions_are_refused() -> None:
    for version in (0, 2, 255):
        text = independent_file(b"[]", "p", version=version)
        with pytest.raises(KeyExportError, match="version"):
            import_keys(text, "p")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "BEGIN"),
        ("hello", "BEGIN"),
        ("-----BEGIN PGP MESSAGE-----\nAAAA\n-----END PGP MESSAGE-----\n", "BEGIN"),
        (HEADER + "AAAA\n" + FOOTER, "BEGIN"),
        (HEADER + "\n", "truncated"),
        (HEADER + "\n" + FOOTER, "empty"),
        (HEADER + "\nAQ==\n" + FOOTER, "too short"),
        (HEADER + "\n" + base64.b64encode(TINY).decode() + "\n", "truncated"),
        (HEADER + "\n" + "AA*A\n" + FOOTER, "not base64"),
        (HEADER + "\nAA==AAAA\n" + FOOTER, "padding"),
        (HEADER + "\nAAAAA\n" + FOOTER, "padding"),
        (HEADER + "\nAA===\n" + FOOTER, "padding"),
        (HEADER + "\nAAAA\n-----END SOMETHING ELSE-----", "truncated"),
        (HEADER + "\nAAAA\n" + FOOTER + "\ntrailing", "truncated"),
        (" " * 10_000 + HEADER, "BEGIN"),
    ],
)
def test_malformed_armour(text: str, match: str) -> None:
    with pytest.raises(KeyExportError, match=match):
        import_keys(text, "p")


def test_truncations_are_refused() -> None:
    lines = SMALL.splitlines()
    cases = [
        "\n".join(lines[:-1]),  # no END line
        "\n".join(lines[:-2] + lines[-1:]),  # last body line lost (MAC gone)
        "\n".join([lines[0], lines[1][:20], lines[-1]]),
    ]
    for text in cases:
        with pytest.raises((KeyExportError, WrongExportPassphraseError)):
            import_keys(text, "p")


@pytest.mark.parametrize(
    ("plaintext", "match"),
    [
        (b"", "incomplete"),
        (b"{}", "not a JSON array"),
        (b"[1, 2]", "not a JSON object"),
        (b'[{"a": 1} {"b": 2}]', "malformed"),
        (b'[{"a": 1},]', "not a JSON object"),
        (b'[{"a": 1}', "incomplete"),
        (b'[{"a": 1}] []', "after the end"),
        (b'[{"a": ', "malformed"),
        (b'[{"a": "\xff"}]', "UTF-8"),
        (b"[" + b'{"a": "' + b"x" * 70_000 + b'"}]', "too large"),
        (b"[" + b'{"a": "' + b"x" * 70_000, "malformed"),
    ],
)
def test_authenticated_but_malformed_content(plaintext: bytes, match: str) -> None:
    with pytest.raises(KeyExportError, match=match):
        import_keys(independent_file(plaintext, "p"), "p")


def test_non_text_input() -> None:
    with pytest.raises(KeyExportError):
        import_keys(b"bytes", "p")  # type: ignore[arg-type]


def test_unseekable_sources_are_refused() -> None:
    class Pipe(io.StringIO):
        def seekable(self) -> bool:
            return False

    with pytest.raises(CryptoMisuseError, match="seekable"):
        list(iter_import(Pipe(SMALL), "p"))


# --- property tests ------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_only_raises_typed_errors(text: str) -> None:
    for candidate in (text, HEADER + "\n" + text + "\n" + FOOTER):
        try:
            import_keys(candidate, "p", max_rounds=1000)
        except (KeyExportError, WrongExportPassphraseError):
            continue


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_files_only_raise_typed_errors(data: st.DataObject) -> None:
    body = body_of(SMALL)
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(body) - 1))
        body[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(body)))
    mutated = bytes(body[:cut]) if data.draw(st.booleans()) else bytes(body)
    try:
        result = import_keys(with_body(mutated), "p", max_rounds=1000)
    except (KeyExportError, WrongExportPassphraseError):
        return
    assert mutated == bytes(body_of(SMALL)) and result == SESSIONS[:2]


def make_golden() -> None:  # pragma: no cover - run by hand
    """Write new golden files: random real Megolm sessions and a message of each."""
    sessions: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    sender = {
        "user_id": "@golden:example.org",
        "device_id": "GOLDEN",
        "curve25519": vz.Curve25519SecretKey().public_key().to_base64(),
        "ed25519": vz.Account().ed25519_key.to_base64(),
    }
    for n in range(3):
        room = f"!golden{n}:example.org"
        outbound = vz.GroupSession()
        inbound = vz.InboundGroupSession(outbound.session_key)
        payload = {"room_id": room, "type": "m.room.message", "content": {"body": f"hello {n}"}}
        ciphertext = outbound.encrypt(json.dumps(payload).encode()).to_base64()
        sessions.append(
            {
                "algorithm": "m.megolm.v1.aes-sha2",
                "room_id": room,
                "sender_key": sender["curve25519"],
                "session_id": inbound.session_id,
                "session_key": inbound.export_at(0).to_base64(),
                "sender_claimed_keys": {"ed25519": sender["ed25519"]},
                "forwarding_curve25519_key_chain": [],
            }
        )
        events.append(
            {
                "room_id": room,
                "body": f"hello {n}",
                "event": {
                    "type": "m.room.encrypted",
                    "sender": sender["user_id"],
                    "event_id": f"$golden{n}:example.org",
                    "origin_server_ts": 1_700_000_000_000,
                    "content": {
                        "algorithm": "m.megolm.v1.aes-sha2",
                        "sender_key": sender["curve25519"],
                        "device_id": sender["device_id"],
                        "session_id": inbound.session_id,
                        "ciphertext": ciphertext,
                    },
                },
            }
        )
    doc = {
        "passphrase": "golden passphrase",
        "rounds": FAST,
        "salt_hex": bytes(range(16)).hex(),
        "iv_hex": bytes(range(16, 32)).hex(),
        "sender": sender,
        "sessions": sessions,
        "events": events,
    }
    iv = bytearray(bytes.fromhex(doc["iv_hex"]))
    iv[8] &= 0x7F
    doc["iv_hex"] = bytes(iv).hex()
    GOLDEN_JSON.write_text(json.dumps(doc, indent=2) + "\n")
    with GOLDEN_TEXT.open("w") as out:
        _write_export(
            out.write,
            sessions,
            doc["passphrase"],
            FAST,
            bytes.fromhex(doc["salt_hex"]),
            bytes(iv),
        )


if __name__ == "__main__":  # pragma: no cover
    make_golden()
    sys.stdout.write(f"wrote {GOLDEN_JSON} and {GOLDEN_TEXT}\n")
