"""Recovery: secret storage set-up and restore, on the client.

``setup_recovery`` makes sure this account has cross-signing keys and a key
backup, creates a secret storage key (random, or from a passphrase), and
stores the private cross-signing keys and the backup key in the user's
account data, encrypted under it. The recovery key is shown once.

``restore_from_recovery`` is the other end: on a brand-new device, the
recovery key (or passphrase) opens secret storage; every secret is checked
against the public key it must match before use; the device then trusts and
signs itself, and restores the room keys from the backup.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from messa.crypto.secrets import (
    CROSS_SIGNING_MASTER,
    CROSS_SIGNING_SELF_SIGNING,
    CROSS_SIGNING_USER_SIGNING,
    MEGOLM_BACKUP,
    SecretStorage,
    SecretStorageKey,
)
from messa.crypto.secrets.storage import DEFAULT_KEY_EVENT, KEY_EVENT_PREFIX
from messa.errors import ConfigError, NotFoundError, SecretError

if TYPE_CHECKING:
    from messa.client.backup_ops import Progress
    from messa.client.wiring import Wiring
    from messa.store.base import Store

_CS = (CROSS_SIGNING_MASTER, CROSS_SIGNING_SELF_SIGNING, CROSS_SIGNING_USER_SIGNING)


@dataclass(frozen=True, slots=True)
class RecoveryResult:
    """What a restore from secret storage did.

    Attributes:
        cross_signing: The private cross-signing keys were imported (this
            device is now trusted by our identity).
        backup_key: The backup key was found and checked.
        sessions_restored: Room keys imported from the server-side backup.
        events_decrypted: Stored events that became readable.
    """

    cross_signing: bool
    backup_key: bool
    sessions_restored: int
    events_decrypted: int


class RecoveryMixin:
    """Secret storage and recovery of :class:`~messa.client.MessaClient`."""

    if TYPE_CHECKING:
        _store: Store

        @property
        def _w(self) -> Wiring: ...

        async def bootstrap_cross_signing(self, password: str | None = None) -> bool: ...

        async def _refresh_own_devices(self) -> None: ...

        async def enable_backup(self, *, replace: bool = False) -> str: ...

        async def use_backup_key(self, private_key_b64: str) -> None: ...

        async def restore_backup(
            self, *, progress: Progress | None = None, version: str | None = None
        ) -> tuple[int, int]: ...

    async def _account_data(self, event_type: str) -> dict[str, Any] | None:
        w = self._w
        try:
            return await w.api.get_account_data(w.session.user_id, event_type)
        except NotFoundError:
            return None

    async def _secret_storage(self) -> SecretStorage:
        storage = SecretStorage()
        default = await self._account_data(DEFAULT_KEY_EVENT)
        if default is None:
            raise ConfigError("this account has no recovery set up: run setup_recovery first")
        storage.update(DEFAULT_KEY_EVENT, default)
        key_id = storage.default_key_id()
        if key_id is None:
            raise SecretError("the default secret storage key is malformed")
        description = await self._account_data(KEY_EVENT_PREFIX + key_id)
        storage.update(KEY_EVENT_PREFIX + key_id, description)
        for name in (*_CS, MEGOLM_BACKUP):
            content = await self._account_data(name)
            if content is not None:
                storage.update(name, content)
        return storage

    async def recovery_is_set_up(self) -> bool:
        """Whether the account already has secret storage (a recovery key)."""
        return await self._account_data(DEFAULT_KEY_EVENT) is not None

    async def setup_recovery(
        self,
        *,
        passphrase: str | None = None,
        password: str | None = None,
        backup: bool = True,
    ) -> str:
        """Set up recovery and return the recovery key (show it to the user once).

        Args:
            passphrase: Derive the secret storage key from this passphrase as
                well (the recovery key still works).
            password: Account password, if the server asks for it to publish
                cross-signing keys.
            backup: Also create (or keep) a server-side key backup and store
                its key.

        Raises:
            ConfigError: if the account has cross-signing keys this device
                does not hold (verify it from another device, or restore).
        """
        w = self._w
        trust = w.machine.trust
        await self.bootstrap_cross_signing(password)
        seeds = trust.cross_signing.export_seeds()
        if seeds is None or not (seeds.master and seeds.self_signing and seeds.user_signing):
            raise ConfigError(
                "this device does not hold the account's cross-signing keys: "
                "verify it from another device or restore from the recovery key first"
            )
        if backup:
            # Setting recovery up starts over: a backup whose key no device
            # holds any more is replaced by one under the new recovery key.
            await self.enable_backup(replace=True)
        new = SecretStorage.create_key(passphrase)
        secrets = {
            CROSS_SIGNING_MASTER: seeds.master,
            CROSS_SIGNING_SELF_SIGNING: seeds.self_signing,
            CROSS_SIGNING_USER_SIGNING: seeds.user_signing,
        }
        backup_key = trust.backup_private_key()
        if backup_key is not None:
            secrets[MEGOLM_BACKUP] = backup_key
        uid = w.session.user_id
        await w.api.set_account_data(uid, new.event_type, new.content)
        for name, value in secrets.items():
            content = SecretStorage.store_secret(name, value, [new.opened])
            await w.api.set_account_data(uid, name, content)
        await w.api.set_account_data(
            uid, DEFAULT_KEY_EVENT, SecretStorage.default_key_content(new.key_id)
        )
        return new.recovery_key.to_display()

    async def restore_from_recovery(
        self,
        recovery_key: str | None = None,
        *,
        passphrase: str | None = None,
        progress: Progress | None = None,
    ) -> RecoveryResult:
        """Restore keys on this device from secret storage and the key backup.

        Give the recovery key, or the passphrase it was set up with.

        Raises:
            InvalidRecoveryKeyError: if the recovery key is mistyped.
            WrongSecretStorageKeyError: if it (or the passphrase) is not this account's.
            SecretMismatchError: if a stored secret does not match its public key.
        """
        if (recovery_key is None) == (passphrase is None):
            raise ConfigError("give either the recovery key or the passphrase")
        w = self._w
        storage = await self._secret_storage()
        key: SecretStorageKey = (
            storage.unlock_with_recovery_key(recovery_key)
            if recovery_key is not None
            else storage.unlock_with_passphrase(passphrase or "")
        )
        await self._refresh_own_devices()
        values = {name: storage.get_secret(name, key) for name in _CS}
        cross_signing = False
        if all(values.values()):
            with w.machine.batch():
                w.machine.trust.cross_signing.import_seeds(
                    values[CROSS_SIGNING_MASTER],
                    values[CROSS_SIGNING_SELF_SIGNING],
                    values[CROSS_SIGNING_USER_SIGNING],
                )
            cross_signing = True
            await w.pump.flush()  # signs this device with the self-signing key
            await self._refresh_own_devices()
        backup_secret = storage.get_secret(MEGOLM_BACKUP, key)
        restored = decrypted = 0
        has_backup_key = False
        if backup_secret is not None:
            await self.use_backup_key(backup_secret)
            has_backup_key = True
            restored, decrypted = await self.restore_backup(progress=progress)
        return RecoveryResult(cross_signing, has_backup_key, restored, decrypted)
