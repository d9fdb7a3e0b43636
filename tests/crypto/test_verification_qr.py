"""The QR payload format (spec example as a golden file), the strict parser, and rendering."""

from __future__ import annotations

import base64
import struct
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from messa.crypto.verification.qr import (
    QrCodeError,
    QrMode,
    QrPayload,
    _symbol,
    parse_scanned,
    render_png,
    render_svg,
    render_terminal,
)

DATA = Path(__file__).parent / "data" / "verification"
EVENT_ID = "$" + "A" * 44  # the spec example's id is 0x2D = 45 bytes long


def _spec_example() -> QrPayload:
    """The spec's example: keys 00 01 02 ..., 10 11 12 ..., secret 20 .. 27."""
    return QrPayload(
        mode=QrMode.VERIFY_OTHER_USER,
        flow_id=EVENT_ID,
        first_key=bytes(range(0x00, 0x20)),
        second_key=bytes(range(0x10, 0x30)),
        secret=bytes(range(0x20, 0x28)),
    )


def test_spec_example_layout_and_golden_bytes() -> None:
    payload = _spec_example()
    raw = payload.encode()
    assert raw[:10] == bytes.fromhex("4D 41 54 52 49 58 02 00 00 2D")
    assert raw[10:55] == EVENT_ID.encode()
    assert raw[55:87] == bytes(range(32)) and raw[87:119] == bytes(range(0x10, 0x30))
    assert raw[119:] == bytes.fromhex("2021222324252627")
    assert payload.first_key_b64.startswith("AAECAwQFBg")
    assert payload.second_key_b64.startswith("EBESExQVFh")
    assert payload.secret_b64 == "ICEiIyQlJic"
    assert raw == (DATA / "qr_spec_example.bin").read_bytes()
    assert QrPayload.parse(raw) == payload


@pytest.mark.parametrize("mode", list(QrMode))
def test_round_trip_each_mode(mode: QrMode) -> None:
    first = base64.b64encode(bytes(range(32))).decode().rstrip("=")
    second = base64.b64encode(bytes(range(1, 33))).decode().rstrip("=")
    payload = QrPayload.create(mode, "txn-é", first, second)
    assert len(payload.secret) >= 8
    parsed = parse_scanned(payload.encode())
    assert parsed == payload and parsed.mode is mode
    assert parse_scanned(base64.b64encode(payload.encode()).decode()) == payload
    assert parse_scanned(base64.urlsafe_b64encode(payload.encode()).decode()) == payload
    assert payload.secret.hex() not in repr(payload)


def _with(raw: bytes, at: int, value: bytes) -> bytes:
    return raw[:at] + value + raw[at + len(value) :]


@pytest.mark.parametrize(
    ("case", "mutate"),
    [
        ("empty", lambda raw: b""),
        ("prefix", lambda raw: b"MATRIY" + raw[6:]),
        ("version 1", lambda raw: _with(raw, 6, b"\x01")),
        ("version 3", lambda raw: _with(raw, 6, b"\x03")),
        ("mode 3", lambda raw: _with(raw, 7, b"\x03")),
        ("zero id length", lambda raw: _with(raw, 8, b"\x00\x00")),
        ("id longer than data", lambda raw: _with(raw, 8, b"\xff\xff")),
        ("truncated keys", lambda raw: raw[:100]),
        ("secret shorter than 8", lambda raw: raw[:-1]),
        ("id not utf-8", lambda raw: _with(raw, 10, b"\xff")),
        ("id with control char", lambda raw: _with(raw, 11, b"\n")),
        ("too long", lambda raw: raw + bytes(3000)),
    ],
)
def test_strict_parser_rejects(case: str, mutate: object) -> None:
    raw = _spec_example().encode()
    with pytest.raises(QrCodeError):
        QrPayload.parse(mutate(raw))  # type: ignore[operator]


def test_scanned_text_must_be_base64_of_the_payload() -> None:
    with pytest.raises(QrCodeError):
        parse_scanned("not base64 at all!")
    with pytest.raises(QrCodeError):
        parse_scanned("MATRIX\x02\x00")  # the raw bytes pasted as text
    with pytest.raises(QrCodeError):
        parse_scanned(base64.b64encode(b"hello").decode())


@given(st.binary(max_size=400))
def test_parser_only_returns_payloads_or_raises_qr_errors(data: bytes) -> None:
    try:
        payload = QrPayload.parse(data)
    except QrCodeError:
        return
    assert payload.encode() == data


@given(
    st.sampled_from(list(QrMode)),
    st.text(min_size=1, max_size=80).filter(str.isprintable),
    st.binary(min_size=32, max_size=32),
    st.binary(min_size=32, max_size=32),
    st.binary(min_size=8, max_size=64),
)
def test_encode_parse_round_trip(
    mode: QrMode, flow: str, k1: bytes, k2: bytes, secret: bytes
) -> None:
    payload = QrPayload(mode, flow, k1, k2, secret)
    assert QrPayload.parse(payload.encode()) == payload


def test_symbol_is_one_byte_mode_segment() -> None:
    symbol = _symbol(_spec_example())
    assert symbol.mode == "byte" and not symbol.is_micro
    assert symbol.error in ("M", "m")


def test_render_terminal_text() -> None:
    text = render_terminal(_spec_example())
    lines = text.splitlines()
    assert len(lines) > 10 and len({len(line) for line in lines}) == 1
    assert set(text) <= {"█", "▀", "▄", " ", "\n"}
    ansi = render_terminal(_spec_example(), ansi=True)
    assert "\x1b[" in ansi
    assert render_terminal(_spec_example()) == text  # deterministic for one payload


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    crc = struct.unpack(">I", data[29:33])[0]
    assert crc == zlib.crc32(data[12:29])
    return width, height


def test_render_png_and_svg(tmp_path: Path) -> None:
    payload = _spec_example()
    png, svg = tmp_path / "code.png", tmp_path / "code.svg"
    render_png(payload, png, scale=4)
    render_svg(payload, svg)
    width, height = _png_size(png.read_bytes())
    modules = _symbol(payload).symbol_size(scale=4)
    assert (width, height) == modules and width == height
    root = ET.fromstring(svg.read_text())  # noqa: S314 - our own file
    assert root.tag.endswith("svg")
