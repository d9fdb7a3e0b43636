"""The key export file format: passphrase-encrypted ``MEGOLM SESSION DATA``.

The format (spec "Key exports") is the one Element and other clients read and
write, so users can move room keys between clients::

    -----BEGIN MEGOLM SESSION DATA-----
    base64( 0x01 | salt[16] | iv[16] | rounds[4, big-endian]
            | AES-256-CTR(JSON array of sessions) | HMAC-SHA-256 of all before )
    -----END MEGOLM SESSION DATA-----

The AES and HMAC keys are the two halves of PBKDF2-HMAC-SHA-512(passphrase,
salt, rounds, 512 bits).

Both directions stream: an export of 100k sessions never holds more than one
session's JSON at a time, and an import reads the file twice (first to check
the MAC, so nothing is decrypted from an altered file, then to decrypt and
parse it one session at a time).
"""

from __future__ import annotations

import base64
import codecs
import hmac
import io
import itertools
import json
import re
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from messa.errors import CryptoMisuseError, KeyExportError, WrongExportPassphraseError

HEADER = "-----BEGIN MEGOLM SESSION DATA-----"
FOOTER = "-----END MEGOLM SESSION DATA-----"
VERSION = 1
DEFAULT_ROUNDS = 500_000
#: The spec asks for at least 100,000 rounds; Messa never writes fewer.
MIN_EXPORT_ROUNDS = 100_000
#: Files asking for more rounds are refused rather than left to hang the import.
MAX_ROUNDS = 10_000_000
#: An exported session is well under 1 KiB; one far larger is not a session.
MAX_ENTRY_CHARS = 64 * 1024

_SALT_LEN = 16
_IV_LEN = 16
_PREFIX_LEN = 1 + _SALT_LEN + _IV_LEN + 4
_MAC_LEN = 32
_LINE_BYTES = 72  # 96 base64 characters per line, no padding but on the last
_READ_CHARS = 64 * 1024
_MAX_ARMOUR_SLACK = 4096
_B64_RE = re.compile(r"[A-Za-z0-9+/=]*")


def _derive(passphrase: str, salt: bytes, rounds: int) -> tuple[bytes, bytes]:
    kdf = PBKDF2HMAC(algorithm=hashes.SHA512(), length=64, salt=salt, iterations=rounds)
    key = kdf.derive(passphrase.encode("utf-8"))
    return key[:32], key[32:]


def _new_iv() -> bytes:
    iv = bytearray(secrets.token_bytes(_IV_LEN))
    iv[8] &= 0x7F  # bit 63 cleared, as the spec asks, for AES-CTR implementations that differ
    return bytes(iv)


# --- writing -----------------------------------------------------------------------


class _LineWriter:
    """Base64-encodes a byte stream into fixed-width lines as bytes arrive."""

    def __init__(self, write: Callable[[str], object]) -> None:
        self._write = write
        self._pending = bytearray()

    def add(self, data: bytes) -> None:
        self._pending += data
        full = len(self._pending) - len(self._pending) % _LINE_BYTES
        if full:
            chunk = bytes(self._pending[:full])
            del self._pending[:full]
            lines = (
                base64.b64encode(chunk[i : i + _LINE_BYTES]).decode("ascii")
                for i in range(0, full, _LINE_BYTES)
            )
            self._write("".join(line + "\n" for line in lines))

    def finish(self) -> None:
        if self._pending:
            self._write(base64.b64encode(bytes(self._pending)).decode("ascii") + "\n")


def _write_export(
    write: Callable[[str], object],
    sessions: Iterable[Mapping[str, Any]],
    passphrase: str,
    rounds: int,
    salt: bytes,
    iv: bytes,
) -> int:
    """Write a whole export; ``salt`` and ``iv`` must be fresh (fixed only in tests)."""
    aes_key, mac_key = _derive(passphrase, salt, rounds)
    encryptor = Cipher(algorithms.AES(aes_key), modes.CTR(iv)).encryptor()
    mac = hmac.new(mac_key, digestmod="sha256")
    lines = _LineWriter(write)

    def emit_plain(data: bytes) -> None:
        ciphertext = encryptor.update(data)
        mac.update(ciphertext)
        lines.add(ciphertext)

    write(HEADER + "\n")
    prefix = bytes([VERSION]) + salt + iv + rounds.to_bytes(4, "big")
    mac.update(prefix)
    lines.add(prefix)
    emit_plain(b"[")
    count = 0
    for session in sessions:
        try:
            entry = json.dumps(session, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise CryptoMisuseError("an exported session is not JSON-serializable") from exc
        emit_plain((b"," if count else b"") + entry.encode("utf-8"))
        count += 1
    emit_plain(b"]")
    tail = encryptor.finalize()  # empty for CTR, kept for form
    mac.update(tail)
    lines.add(tail)
    lines.add(mac.digest())
    lines.finish()
    write(FOOTER + "\n")
    return count


def write_export(
    out: TextIO,
    sessions: Iterable[Mapping[str, Any]],
    passphrase: str,
    *,
    rounds: int = DEFAULT_ROUNDS,
) -> int:
    """Stream an encrypted export of ``sessions`` (``ExportedSessionData`` dicts) to ``out``.

    Returns:
        The number of sessions written.

    Raises:
        CryptoMisuseError: if the passphrase is empty, ``rounds`` is out of
            bounds, or a session is not JSON.
    """
    if not isinstance(passphrase, str) or not passphrase:
        raise CryptoMisuseError("a key export needs a non-empty passphrase")
    if isinstance(rounds, bool) or not MIN_EXPORT_ROUNDS <= rounds <= MAX_ROUNDS:
        raise CryptoMisuseError(f"export rounds must be in [{MIN_EXPORT_ROUNDS}, {MAX_ROUNDS}]")
    return _write_export(
        out.write, sessions, passphrase, rounds, secrets.token_bytes(_SALT_LEN), _new_iv()
    )


def export_keys(
    sessions: Iterable[Mapping[str, Any]], passphrase: str, rounds: int = DEFAULT_ROUNDS
) -> str:
    """Encrypt sessions into the text of an export file (see :func:`write_export`)."""
    out = io.StringIO()
    write_export(out, sessions, passphrase, rounds=rounds)
    return out.getvalue()


# --- reading -----------------------------------------------------------------------


def _armoured_body(source: TextIO) -> Iterator[str]:
    """Yield the base64 body (whitespace removed) between the armour lines."""
    pending = ""
    in_body = False
    tail: str | None = None
    while True:
        chunk = source.read(_READ_CHARS)
        if not chunk:
            break
        if not in_body:
            pending += chunk
            start = pending.lstrip()
            if len(start) <= len(HEADER):
                if not HEADER.startswith(start) or len(pending) > _MAX_ARMOUR_SLACK:
                    raise KeyExportError("not a key export file (no BEGIN line)")
                continue
            if not start.startswith(HEADER) or not start[len(HEADER)].isspace():
                raise KeyExportError("not a key export file (no BEGIN line)")
            in_body, chunk, pending = True, start[len(HEADER) :], ""
        if tail is not None:
            tail += chunk
            if len(tail) > _MAX_ARMOUR_SLACK:
                raise KeyExportError("data after the END line")
            continue
        dash = chunk.find("-")  # "-" is not in the base64 alphabet: the footer starts here
        if dash >= 0:
            chunk, tail = chunk[:dash], chunk[dash:]
        body = "".join(chunk.split())
        if not _B64_RE.fullmatch(body):
            raise KeyExportError("the file body is not base64")
        if body:
            yield body
    if not in_body:
        raise KeyExportError("not a key export file (no BEGIN line)")
    if tail is None or tail.strip() != FOOTER:
        raise KeyExportError("the file is truncated (no END line)")


def _payload(source: TextIO) -> Iterator[bytes]:
    """Decode the armoured base64 body as a byte stream (padding only at the very end)."""
    carry = ""
    ended = False
    for text in _armoured_body(source):
        if ended:
            raise KeyExportError("data after base64 padding")
        text = carry + text
        if "=" in text:
            ended = True
            carry = text
            continue
        whole = len(text) - len(text) % 4
        carry = text[whole:]
        if whole:
            yield base64.b64decode(text[:whole])
    if carry:
        data = carry.rstrip("=")
        if "=" in data or len(data) % 4 == 1 or len(carry) - len(data) > 2:
            raise KeyExportError("bad base64 padding")
        yield base64.b64decode(data + "=" * (-len(data) % 4))


@dataclass(slots=True)
class _Scan:
    """Keys for one file, and the MACs one pass over it found."""

    aes_key: bytes
    mac_key: bytes
    iv: bytes
    computed_mac: bytes = b""
    stored_mac: bytes = b""


def _walk(
    source: TextIO, keys: Callable[[bytes, bytes, int], _Scan], done: list[_Scan]
) -> Iterator[bytes]:
    """Parse the prefix, MAC the rest, and yield the ciphertext as it streams by.

    When the stream ends, the pass's :class:`_Scan` (with both MACs) is
    appended to ``done``.
    """
    stream = _payload(source)
    head = bytearray()
    for data in stream:
        head += data
        if len(head) >= _PREFIX_LEN:
            break
    if not head:
        raise KeyExportError("the export is empty")
    if head[0] != VERSION:
        raise KeyExportError(f"unsupported export format version {head[0]}")
    if len(head) < _PREFIX_LEN:
        raise KeyExportError("the export is too short")
    salt = bytes(head[1 : 1 + _SALT_LEN])
    iv = bytes(head[1 + _SALT_LEN : 1 + _SALT_LEN + _IV_LEN])
    rounds = int.from_bytes(head[_PREFIX_LEN - 4 : _PREFIX_LEN], "big")
    scan = keys(salt, iv, rounds)
    mac = hmac.new(scan.mac_key, bytes(head[:_PREFIX_LEN]), digestmod="sha256")
    held = b""
    for data in itertools.chain((bytes(head[_PREFIX_LEN:]),), stream):
        held += data
        if len(held) > _MAC_LEN:
            body, held = held[:-_MAC_LEN], held[-_MAC_LEN:]
            mac.update(body)
            yield body
    if len(held) < _MAC_LEN:
        raise KeyExportError("the export is too short")
    scan.computed_mac, scan.stored_mac = mac.digest(), held
    done.append(scan)


class _ArrayReader:
    """Incrementally parses a JSON array of objects, one object at a time."""

    def __init__(self) -> None:
        self._buf = ""
        self._state = "start"  # start, first, value, after, done
        self._decoder = json.JSONDecoder()

    def feed(self, text: str, final: bool = False) -> list[dict[str, Any]]:
        self._buf += text
        out: list[dict[str, Any]] = []
        pos = 0
        buf = self._buf
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n":
                pos += 1
            if pos == len(buf):
                break
            char = buf[pos]
            if self._state == "start":
                if char != "[":
                    raise KeyExportError("the decrypted data is not a JSON array")
                self._state, pos = "first", pos + 1
            elif self._state in ("first", "after") and char == "]":
                self._state, pos = "done", pos + 1
            elif self._state == "after":
                if char != ",":
                    raise KeyExportError("the decrypted JSON is malformed")
                self._state, pos = "value", pos + 1
            elif self._state in ("first", "value"):
                if char != "{":
                    raise KeyExportError("an exported session is not a JSON object")
                try:
                    value, end = self._decoder.raw_decode(buf, pos)
                except json.JSONDecodeError:
                    if final or len(buf) - pos > MAX_ENTRY_CHARS:
                        raise KeyExportError("an exported session is malformed") from None
                    break  # the object continues in the next chunk
                if end - pos > MAX_ENTRY_CHARS:
                    raise KeyExportError("an exported session is too large")
                out.append(value)
                self._state, pos = "after", end
            else:
                raise KeyExportError("data after the end of the JSON array")
        self._buf = buf[pos:]
        if final and self._state != "done":
            raise KeyExportError("the decrypted JSON array is incomplete")
        return out


def iter_import(
    source: TextIO, passphrase: str, *, max_rounds: int = MAX_ROUNDS
) -> Iterator[dict[str, Any]]:
    """Check and decrypt an export file, yielding its session dicts one by one.

    ``source`` must be seekable: it is read once to check the MAC (nothing
    is decrypted from an altered file), then again to decrypt.

    Raises:
        CryptoMisuseError: if ``source`` is not seekable.
        KeyExportError: if the file is malformed, truncated, asks for more
            than ``max_rounds`` rounds, or its content is not a JSON array of
            objects.
        WrongExportPassphraseError: if the MAC does not match: a wrong
            passphrase, or an altered file.
    """

    if not source.seekable():
        raise CryptoMisuseError("a key file is read twice: the source must be seekable")

    def derive(salt: bytes, iv: bytes, rounds: int) -> _Scan:
        if not 1 <= rounds <= max_rounds:
            raise KeyExportError(f"the export asks for {rounds} rounds (limit {max_rounds})")
        return _Scan(*_derive(passphrase, salt, rounds), iv)

    done: list[_Scan] = []
    for _ in _walk(source, derive, done):
        pass
    first = done[0]
    if not hmac.compare_digest(first.computed_mac, first.stored_mac):
        raise WrongExportPassphraseError("wrong passphrase, or the key file was altered")

    def same_keys(salt: bytes, iv: bytes, rounds: int) -> _Scan:
        return _Scan(first.aes_key, first.mac_key, iv)

    source.seek(0)
    decryptor = Cipher(algorithms.AES(first.aes_key), modes.CTR(first.iv)).decryptor()
    text = codecs.getincrementaldecoder("utf-8")()
    reader = _ArrayReader()
    try:
        for ciphertext in _walk(source, same_keys, done):
            yield from reader.feed(text.decode(decryptor.update(ciphertext)))
        tail = text.decode(decryptor.finalize(), final=True)
    except UnicodeDecodeError:
        raise KeyExportError("the decrypted data is not UTF-8") from None
    second = done[1]
    # The MAC is checked again so that a file swapped between the two reads
    # cannot slip its last entries through.
    if second.iv != first.iv or not hmac.compare_digest(second.computed_mac, first.stored_mac):
        raise KeyExportError("the key file changed while it was read")
    yield from reader.feed(tail, final=True)


def import_keys(
    text: str, passphrase: str, *, max_rounds: int = MAX_ROUNDS
) -> list[dict[str, Any]]:
    """Check and decrypt the text of an export file (see :func:`iter_import`)."""
    if not isinstance(text, str):
        raise KeyExportError("a key export is text")
    return list(iter_import(io.StringIO(text), passphrase, max_rounds=max_rounds))
