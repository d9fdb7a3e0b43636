"""Cross-signing on top of the N-party harness: a fake server that serves and accepts
cross-signing keys, parties with a :class:`CrossSigningMachine`, and a bare identity
for building (possibly forged) cross-signing keys.

:class:`CSFakeServer` behaves like Synapse where it matters here:

* ``/keys/device_signing/upload`` stores the keys as given (no signature
  check: the client must check everything it receives). The first upload
  needs no user-interactive auth; replacing keys needs the password stage
  (``AuthRequiredError`` with a session, then ``auth``).
* ``/keys/signatures/upload`` merges a user's signatures of their own
  devices and master key into those objects (visible to everyone) and a
  user-signing signature of another user's master key (visible only to the
  signer). A signed object that does not match the stored key is a failure.
* ``/keys/query`` serves ``master_keys`` and ``self_signing_keys`` of the
  queried users and ``user_signing_keys`` only for the requester.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from messa.crypto.canonical import sign_json
from messa.crypto.cross_signing import CrossSigningMachine, CrossSigningUploadRequest
from messa.crypto.cross_signing.keys import SigningKey
from messa.errors import AuthRequiredError
from messa.matrix.uia import PASSWORD_STAGE, UiaChallenge, password_auth
from messa.store.memory import MemoryStore
from messa.types.ids import DeviceId, UserId
from messa.types.keys import CrossSigningUsage
from messa.types.requests import KeysQueryRequest, SignatureUploadRequest

from .harness import FakeDevice, FakeServer, FlushOutcome, Harness, Party

PASSWORD = "correct horse"


def _bare(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}


def _merge_signatures(target: dict[str, Any], signed: dict[str, Any], signer: str) -> None:
    new = signed.get("signatures", {}).get(signer, {})
    target.setdefault("signatures", {}).setdefault(signer, {}).update(new)


def _public(key_obj: dict[str, Any]) -> str:
    return str(next(iter(key_obj["keys"].values())))


class CSFakeServer(FakeServer):
    """:class:`FakeServer` plus the cross-signing endpoints."""

    def __init__(self) -> None:
        super().__init__()
        self.master_keys: dict[UserId, dict[str, Any]] = {}
        self.self_signing_keys: dict[UserId, dict[str, Any]] = {}
        self.user_signing_keys: dict[UserId, dict[str, Any]] = {}
        # target user -> signer -> {key id: signature}, visible to the signer only
        self.user_signatures: dict[UserId, dict[UserId, dict[str, str]]] = {}
        self.uia_sessions = 0

    # -- /keys/device_signing/upload -------------------------------------------------

    def device_signing_upload(self, user: UserId, body: dict[str, Any]) -> dict[str, Any]:
        """Store cross-signing keys; replacing existing ones needs the password stage."""
        keys = {
            "master_key": self.master_keys,
            "self_signing_key": self.self_signing_keys,
            "user_signing_key": self.user_signing_keys,
        }
        same = all(
            name not in body or table.get(user) == body[name] for name, table in keys.items()
        )
        if user in self.master_keys and not same:
            auth = body.get("auth")
            if not (
                isinstance(auth, dict)
                and auth.get("type") == PASSWORD_STAGE
                and auth.get("password") == PASSWORD
                and auth.get("session") == f"uia{self.uia_sessions}"
            ):
                self.uia_sessions += 1
                challenge = {
                    "flows": [{"stages": [PASSWORD_STAGE]}],
                    "params": {},
                    "session": f"uia{self.uia_sessions}",
                }
                raise AuthRequiredError(401, body=challenge)
        for name, table in keys.items():
            if name in body:
                table[user] = copy.deepcopy(body[name])
        if "master_key" in body:
            # A new identity: signatures others made of the old one no longer apply.
            self.user_signatures.pop(user, None)
        self._notify_changed(user)
        return {}

    # -- /keys/signatures/upload ---------------------------------------------------

    def signatures_upload(
        self, signer: UserId, signed_keys: dict[UserId, dict[str, Any]]
    ) -> dict[str, Any]:
        """Merge uploaded signatures; per-key failures as Synapse reports them."""
        failures: dict[str, dict[str, Any]] = {}
        for target, objects in signed_keys.items():
            for key_id, signed in objects.items():
                error = self._apply_signature(signer, target, key_id, signed)
                if error is not None:
                    failures.setdefault(target, {})[key_id] = {"errcode": error}
                elif target == signer:
                    self._notify_changed(target)
                else:
                    for address, changed in self.changed.items():
                        if address[0] == signer:
                            changed.add(target)
        return {"failures": failures}

    def _apply_signature(
        self, signer: UserId, target: UserId, key_id: str, signed: dict[str, Any]
    ) -> str | None:
        master = self.master_keys.get(target)
        if master is not None and key_id == _public(master):
            if _bare(master) != _bare(signed):
                return "M_INVALID_SIGNATURE"
            if signer == target:
                _merge_signatures(master, signed, signer)
            else:
                sigs = signed.get("signatures", {}).get(signer, {})
                self.user_signatures.setdefault(target, {}).setdefault(signer, {}).update(sigs)
            return None
        device = self.device_keys.get(target, {}).get(DeviceId(key_id))
        if device is None or signer != target:
            return "M_NOT_FOUND"
        if _bare(device) != _bare(signed):
            return "M_INVALID_SIGNATURE"
        _merge_signatures(device, signed, signer)
        return None

    # -- /keys/query -----------------------------------------------------------------

    def keys_query(self, request: KeysQueryRequest) -> dict[str, Any]:
        """Device keys only (the base harness's parties see no cross-signing keys)."""
        return self.keys_query_as(None, request)

    def keys_query_as(self, requester: UserId | None, request: KeysQueryRequest) -> dict[str, Any]:
        """``POST /keys/query`` as ``requester`` sees it."""
        response: dict[str, Any] = {
            "device_keys": {
                user: copy.deepcopy(self.device_keys.get(user, {})) for user in request.users
            },
            "failures": {},
        }
        if requester is not None:
            masters: dict[str, Any] = {}
            for user in request.users:
                if user not in self.master_keys:
                    continue
                master = copy.deepcopy(self.master_keys[user])
                mine = self.user_signatures.get(user, {}).get(requester)
                if mine:
                    master.setdefault("signatures", {}).setdefault(requester, {}).update(mine)
                masters[user] = master
            response["master_keys"] = masters
            response["self_signing_keys"] = {
                user: copy.deepcopy(self.self_signing_keys[user])
                for user in request.users
                if user in self.self_signing_keys
            }
            if requester in request.users and requester in self.user_signing_keys:
                response["user_signing_keys"] = {
                    requester: copy.deepcopy(self.user_signing_keys[requester])
                }
        for hook in self.query_hooks:
            response = hook(response)
        return response


class CSParty(Party):
    """A device with a :class:`CrossSigningMachine` that queries as itself."""

    server: CSFakeServer
    cs: CrossSigningMachine

    def _build(self) -> None:
        super()._build()
        self.cs = CrossSigningMachine(self.ctx, self.account, self.tracker)

    def _keys_query(self, query: KeysQueryRequest) -> dict[str, Any]:
        return self.server.keys_query_as(self.user_id, query)

    def _flush_more(self) -> bool:
        sent = False
        for signatures in self.cs.outgoing_requests():
            self.upload_signatures(signatures)
            sent = True
        return sent

    def upload_signatures(self, request: SignatureUploadRequest) -> dict[str, Any]:
        """Send a signature upload and report the answer to the machine."""
        response = self.server.signatures_upload(self.user_id, request.signed_keys)
        self.cs.mark_request_as_sent(request.request_id, response)
        return response

    def send_cross_signing_upload(
        self, request: CrossSigningUploadRequest, password: str | None = PASSWORD
    ) -> None:
        """Upload cross-signing keys as the client does: without auth first, then UIA.

        Raises:
            AuthRequiredError: if the server wants auth and no password is given.
        """
        body = request.body()
        try:
            self.server.device_signing_upload(self.user_id, body)
        except AuthRequiredError as exc:
            if password is None:
                raise
            challenge = UiaChallenge.from_error(exc)
            assert challenge.offers(PASSWORD_STAGE)
            auth = password_auth(self.user_id, password, challenge.session)
            self.server.device_signing_upload(self.user_id, {**body, "auth": auth})
        assert self.cs.mark_upload_sent(request.request_id)

    def bootstrap(self, password: str | None = PASSWORD) -> CrossSigningUploadRequest:
        """Create and upload cross-signing keys, then sign this device."""
        request = self.cs.bootstrap()
        self.send_cross_signing_upload(request, password)
        self.flush()
        return request

    def refresh(self, *users: UserId) -> FlushOutcome:
        """Track users, mark their lists outdated (as a sync would) and query them."""
        self.tracker.update_tracked_users(users)
        self.tracker.mark_changed(users)
        return self.flush()


class CSHarness(Harness):
    """A :class:`Harness` whose server and parties speak cross-signing."""

    server: CSFakeServer
    parties: list[CSParty]  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.server = CSFakeServer()

    def party(self, user_id: str, device_id: str) -> CSParty:
        """A new device that has uploaded its keys."""
        party = CSParty(self.server, self.clock, user_id, device_id)
        party.flush()
        self.parties.append(party)
        return party

    def reopen(self, party: Party) -> CSParty:
        """A new :class:`CSParty` on ``party``'s store (a process restart)."""
        assert isinstance(party.store, MemoryStore)
        reopened = CSParty(self.server, self.clock, party.user_id, party.device_id, party.store)
        self.parties[self.parties.index(party)] = reopened  # type: ignore[arg-type]
        return reopened


class FakeIdentity:
    """A user's cross-signing keys without any machine, for building test answers.

    Args:
        user_id: The owner.
    """

    def __init__(self, user_id: str) -> None:
        self.user_id = UserId(user_id)
        self.master = SigningKey.generate()
        self.self_signing = SigningKey.generate()
        self.user_signing = SigningKey.generate()

    def _key(self, kind: CrossSigningUsage, key: SigningKey, **overrides: Any) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "user_id": self.user_id,
            "usage": [kind.value],
            "keys": {key.key_id: key.public_key},
        }
        obj.update(overrides)
        return obj

    def master_key(self, **overrides: Any) -> dict[str, Any]:
        """The (unsigned) master key object; ``overrides`` replace fields."""
        return self._key(CrossSigningUsage.MASTER, self.master, **overrides)

    def self_signing_key(
        self, *, signer: SigningKey | None = None, **overrides: Any
    ) -> dict[str, Any]:
        """The self-signing key, signed by the master (or by ``signer``) after ``overrides``."""
        obj = self._key(CrossSigningUsage.SELF_SIGNING, self.self_signing, **overrides)
        return self.sign(obj, signer or self.master)

    def user_signing_key(
        self, *, signer: SigningKey | None = None, **overrides: Any
    ) -> dict[str, Any]:
        """The user-signing key, signed by the master (or by ``signer``) after ``overrides``."""
        obj = self._key(CrossSigningUsage.USER_SIGNING, self.user_signing, **overrides)
        return self.sign(obj, signer or self.master)

    def sign(self, obj: dict[str, Any], key: SigningKey) -> dict[str, Any]:
        """``obj`` with a signature by ``key`` (filed under this user)."""
        return sign_json(obj, self.user_id, key.key_id, key.sign)

    def sign_device(self, device: FakeDevice, **overrides: Any) -> dict[str, Any]:
        """``device``'s self-signed keys, cross-signed by this identity's self-signing key."""
        return self.sign(device.device_keys(**overrides), self.self_signing)

    def answer(self, *, with_user_signing: bool = False) -> dict[str, dict[str, Any]]:
        """The ``master_keys`` / ``self_signing_keys`` (/ ``user_signing_keys``) parts."""
        parts: dict[str, dict[str, Any]] = {
            "master_keys": {self.user_id: self.master_key()},
            "self_signing_keys": {self.user_id: self.self_signing_key()},
        }
        if with_user_signing:
            parts["user_signing_keys"] = {self.user_id: self.user_signing_key()}
        return parts


def merge_answers(*parts: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Merge several ``{section: {user: ...}}`` query fragments."""
    merged: dict[str, dict[str, Any]] = {}
    for part in parts:
        for section, users in part.items():
            merged.setdefault(section, {}).update(users)
    return merged


def devices_of(*devices: FakeDevice, signed_by: FakeIdentity | None = None) -> dict[str, Any]:
    """``{device id: keys}``, cross-signed by ``signed_by`` when given."""
    return {
        d.device_id: (signed_by.sign_device(d) if signed_by else d.device_keys()) for d in devices
    }


def users(*ids: str) -> Iterable[UserId]:
    """User ids typed as such."""
    return [UserId(i) for i in ids]
