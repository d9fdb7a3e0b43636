"""The stored form of an inbound Megolm session.

A session is stored as its key exported at its first known index, tagged
``"k1:"``. That is everything the session can decrypt, in a fifth of the
size of a vodozemac pickle, and it is cheaper both ways (exporting costs a
tenth of pickling, importing half of unpickling). The pickle's own
encryption would add nothing: every store seals its records under the
store key (the SQLite store with AES-256-GCM).

Records written before this form hold a vodozemac pickle (encrypted with
the store's pickle key); they are still read, and replaced by the new form
the next time the session is written.
"""

from __future__ import annotations

from messa.crypto import _vodozemac as vz
from messa.errors import CryptoError

_EXPORTED = "k1:"


def dump_session(session: vz.InboundGroupSession) -> str:
    """The stored form of ``session``. Secret key material: never log it."""
    exported = session.export_at(session.first_known_index)
    if exported is None:  # pragma: no cover - a session can always export its first index
        raise CryptoError("inbound Megolm session cannot be exported")
    return _EXPORTED + exported.to_base64()


def load_session(state: str, pickle_key: bytes) -> vz.InboundGroupSession:
    """Rebuild a session from :func:`dump_session` output or an older pickle.

    Raises:
        CryptoError: if the stored state is unreadable.
    """
    with vz.translate(CryptoError, "stored inbound Megolm session is unreadable"):
        if state.startswith(_EXPORTED):
            key = vz.ExportedSessionKey(state[len(_EXPORTED) :])
            return vz.InboundGroupSession.import_session(key)
        return vz.InboundGroupSession.from_pickle(state, pickle_key)


def exported_key(state: str, pickle_key: bytes) -> str:
    """The session key exported at the first known index, from a stored state.

    Raises:
        CryptoError: if the stored state is unreadable.
    """
    if state.startswith(_EXPORTED):
        # Checked, so that a damaged record is reported rather than passed on.
        load_session(state, pickle_key)
        return state[len(_EXPORTED) :]
    return dump_session(load_session(state, pickle_key))[len(_EXPORTED) :]
