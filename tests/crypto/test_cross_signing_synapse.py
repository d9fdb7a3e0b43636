"""Cross-signing against a real Synapse: the upload body, UIA on reset, signature
uploads, and the trust the tracker derives from what Synapse serves back."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from messa._clock import SystemClock
from messa.crypto.account import AccountMachine
from messa.crypto.context import CryptoContext
from messa.crypto.cross_signing import CrossSigningMachine, CrossSigningUploadRequest
from messa.crypto.identities import DeviceTracker, KeyQueryResult
from messa.errors import AuthRequiredError
from messa.homeserver import EmbeddedHomeserver, RegisteredUser
from messa.matrix import MatrixApi, UiaChallenge, password_auth
from messa.store.memory import MemoryStore
from messa.types.ids import DeviceId, UserId
from messa.types.keys import TrustState
from messa.types.requests import SignatureUploadRequest

pytestmark = pytest.mark.integration

NewUser = Callable[..., RegisteredUser]


class Device:
    """One logged-in device: its crypto sub-machines and its HTTP session."""

    def __init__(self, user: RegisteredUser, api: MatrixApi) -> None:
        self.user = user
        self.api = api
        self.user_id = UserId(user.user_id)
        ctx = CryptoContext(self.user_id, DeviceId(user.device_id), MemoryStore(), SystemClock())
        self.account = AccountMachine(ctx)
        self.tracker = DeviceTracker(ctx, self.account)
        self.cs = CrossSigningMachine(ctx, self.account, self.tracker)
        self.uia_rounds = 0

    async def flush(self) -> list[KeyQueryResult]:
        """Send what the machines ask for, until they ask for nothing."""
        results: list[KeyQueryResult] = []
        for _ in range(10):
            sent = False
            upload = self.account.upload_request()
            if upload is not None:
                counts = await self.api.keys_upload(
                    upload.device_keys, upload.one_time_keys, upload.fallback_keys
                )
                self.account.mark_upload_sent({"one_time_key_counts": counts}, upload.request_id)
                sent = True
            query = self.tracker.query_request()
            if query is not None:
                answer = await self.api.keys_query(query.users)
                results.append(self.tracker.receive_query_response(query.request_id, answer))
                sent = True
            for request in self.cs.outgoing_requests():
                answer = await self.api.signatures_upload(signed_body(request))
                result = self.cs.mark_request_as_sent(request.request_id, answer)
                assert result is not None and result.ok, result
                sent = True
            if not sent:
                return results
        raise AssertionError("requests did not settle")

    async def upload_cross_signing(self, request: CrossSigningUploadRequest) -> None:
        """What the client does: try without auth, answer a password UIA if asked."""
        try:
            await self.api.device_signing_upload(request.body())
        except AuthRequiredError as exc:
            self.uia_rounds += 1
            challenge = UiaChallenge.from_error(exc)
            assert challenge.offers("m.login.password")
            auth = password_auth(self.user.user_id, self.user.password, challenge.session)
            await self.api.device_signing_upload(request.body(), auth=auth)
        assert self.cs.mark_upload_sent(request.request_id)

    async def refresh(self, *users: UserId) -> list[KeyQueryResult]:
        self.tracker.update_tracked_users(users)
        self.tracker.mark_changed(users)
        return await self.flush()

    def trust(self, user: UserId, device_id: str) -> TrustState:
        device = self.tracker.get_device(user, DeviceId(device_id))
        assert device is not None
        return device.trust


@asynccontextmanager
async def device(server: EmbeddedHomeserver, user: RegisteredUser) -> AsyncIterator[Device]:
    async with MatrixApi(server.base_url, access_token=user.access_token) as api:
        dev = Device(user, api)
        await dev.flush()
        yield dev


def signed_body(request: SignatureUploadRequest) -> dict[str, Any]:
    return {str(user): keys for user, keys in request.signed_keys.items()}


def signer_ids(key: dict[str, Any], user: str) -> set[str]:
    return set(key.get("signatures", {}).get(user, {}))


async def test_cross_signing_round_trip_on_synapse(
    homeserver: EmbeddedHomeserver, new_user: NewUser
) -> None:
    a, b = new_user("xsa"), new_user("xsb")
    async with device(homeserver, a) as alice, device(homeserver, b) as bob:
        # First upload: no UIA. Synapse keeps our device's signature on the master key.
        await alice.upload_cross_signing(alice.cs.bootstrap())
        await alice.flush()  # re-query ourselves, then sign this device
        await bob.upload_cross_signing(bob.cs.bootstrap())
        await bob.flush()
        assert alice.uia_rounds == bob.uia_rounds == 0
        own = alice.tracker.get_identity(alice.user_id)
        assert own is not None and own.verified and own.user_signing_key is not None
        assert f"ed25519:{a.device_id}" in signer_ids(own.master_key.raw, a.user_id)
        assert alice.trust(alice.user_id, a.device_id) is TrustState.VERIFIED

        await alice.refresh(bob.user_id)
        assert alice.trust(bob.user_id, b.device_id) is TrustState.CROSS_SIGNED
        bob_identity = alice.tracker.get_identity(bob.user_id)
        assert bob_identity is not None and bob_identity.user_signing_key is None

        # Alice verified Bob: her user-signing signature is published and counted.
        request = alice.cs.sign_user(bob.user_id, bob_identity.master_key.public_key)
        answer = await alice.api.signatures_upload(signed_body(request))
        result = alice.cs.mark_request_as_sent(request.request_id, answer)
        assert result is not None and result.ok
        await alice.flush()
        served = await alice.api.keys_query([bob.user_id])
        usk = own.user_signing_key.key_id
        assert usk in signer_ids(served["master_keys"][bob.user_id], a.user_id)
        assert alice.trust(bob.user_id, b.device_id) is TrustState.VERIFIED
        # Bob does not see Alice's signature on his key; he has not verified her.
        await bob.refresh(alice.user_id)
        assert bob.trust(alice.user_id, a.device_id) is TrustState.CROSS_SIGNED

        # Bob resets his identity: Synapse wants the password, Alice is alerted.
        await bob.upload_cross_signing(bob.cs.bootstrap())
        await bob.flush()
        assert bob.uia_rounds == 1 and bob.cs.status().keys_match
        results = await alice.refresh(bob.user_id)
        violations = [i.user_id for r in results for i in r.identity_violations]
        assert violations == [bob.user_id]
        assert alice.trust(bob.user_id, b.device_id) is TrustState.UNVERIFIED
