"""Hypothesis strategies for untrusted JSON shared by the crypto property tests."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from messa.crypto import _vodozemac as vz

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(),  # NaN and infinities too: Python's json module accepts them
    st.text(max_size=40),
)

json_values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=20), children, max_size=4),
    ),
    max_leaves=20,
)

user_ids = st.one_of(
    st.sampled_from(["@alice:example.org", "@bob:example.org", "@eve:evil.example"]),
    st.text(max_size=30),
)

curve_keys = st.builds(lambda: vz.Curve25519SecretKey().public_key().to_base64())

base64_bodies = st.binary(max_size=300).map(vz.b64encode)


def mutated(body: str) -> st.SearchStrategy[str]:
    """Truncations and byte flips of a real base64 ciphertext body."""
    raw = vz.b64decode(body)

    def flip(position: int, mask: int) -> str:
        data = bytearray(raw)
        data[position % len(data)] ^= mask
        return vz.b64encode(bytes(data))

    return st.one_of(
        st.integers(0, len(raw)).map(lambda n: vz.b64encode(raw[:n])),
        st.builds(flip, st.integers(0, len(raw) - 1), st.integers(1, 255)),
        st.binary(max_size=16).map(lambda extra: vz.b64encode(raw + extra)),
    )
