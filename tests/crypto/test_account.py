"""AccountMachine: identity keys, signatures, one-time and fallback key publication."""

from __future__ import annotations

import pytest

from messa._clock import FakeClock
from messa.crypto import _vodozemac as vz
from messa.crypto.account import SIGNED_CURVE25519, AccountMachine
from messa.crypto.canonical import verify_json
from messa.crypto.context import CryptoContext
from messa.errors import CryptoMisuseError, StoreCorruptError
from messa.store.base import AccountRecord, Changes
from messa.store.memory import MemoryStore
from messa.types.ids import DeviceId, UserId
from messa.types.keys import MEGOLM_ALGORITHM, OLM_ALGORITHM

USER = UserId("@alice:example.org")
DEVICE = DeviceId("ALICE1")


def make(store: MemoryStore | None = None) -> tuple[AccountMachine, CryptoContext]:
    ctx = CryptoContext(USER, DEVICE, store or MemoryStore(), FakeClock())
    return AccountMachine(ctx), ctx


def server_answer(count: int) -> dict[str, object]:
    return {"one_time_key_counts": {SIGNED_CURVE25519: count}}


def test_new_account_is_persisted_and_reloads_with_same_keys() -> None:
    store = MemoryStore()
    account, _ = make(store)
    record = store.load_account()
    assert record is not None
    assert record.user_id == USER and record.device_id == DEVICE and not record.shared
    again, _ = make(store)
    assert again.identity_keys == account.identity_keys


def test_identity_keys_and_signature_verify() -> None:
    account, _ = make()
    keys = account.identity_keys
    assert set(keys) == {"curve25519", "ed25519"}
    vz.verify_ed25519(keys["ed25519"], b"message", account.sign(b"message"))


def test_device_keys_are_signed_and_complete() -> None:
    account, _ = make()
    device_keys = account.device_keys()
    assert device_keys["user_id"] == USER and device_keys["device_id"] == DEVICE
    assert device_keys["algorithms"] == [OLM_ALGORITHM, MEGOLM_ALGORITHM]
    assert device_keys["keys"] == {
        f"curve25519:{DEVICE}": account.curve25519,
        f"ed25519:{DEVICE}": account.ed25519,
    }
    verify_json(device_keys, USER, f"ed25519:{DEVICE}", account.ed25519)


def test_first_upload_has_device_keys_half_the_otks_and_a_fallback_key() -> None:
    account, _ = make()
    request = account.upload_request()
    assert request is not None
    assert request.device_keys == account.device_keys()
    assert len(request.one_time_keys) == account.max_one_time_keys // 2
    assert len(request.fallback_keys) == 1
    for key_id, key in {**request.one_time_keys, **request.fallback_keys}.items():
        assert key_id.startswith(f"{SIGNED_CURVE25519}:")
        verify_json(key, USER, f"ed25519:{DEVICE}", account.ed25519)
    (fallback,) = request.fallback_keys.values()
    assert fallback["fallback"] is True


def test_outstanding_upload_is_reissued_not_regenerated() -> None:
    account, _ = make()
    first = account.upload_request()
    assert account.upload_request() is first
    assert first is not None
    account.upload_failed(first.request_id)
    second = account.upload_request()
    assert second is not None and second.request_id != first.request_id
    assert second.one_time_keys == first.one_time_keys
    assert second.fallback_keys == first.fallback_keys


def test_lost_upload_survives_a_restart_with_the_same_keys() -> None:
    store = MemoryStore()
    account, _ = make(store)
    first = account.upload_request()
    reopened, _ = make(store)
    again = reopened.upload_request()
    assert first is not None and again is not None
    assert again.one_time_keys == first.one_time_keys
    assert again.fallback_keys == first.fallback_keys
    assert again.device_keys == first.device_keys


def test_mark_sent_publishes_and_stops_uploading() -> None:
    store = MemoryStore()
    account, _ = make(store)
    request = account.upload_request()
    assert request is not None
    account.mark_upload_sent(server_answer(25), request.request_id)
    assert account.shared and account.uploaded_key_count == 25
    assert account.upload_request() is None
    record = store.load_account()
    assert record is not None and record.shared and record.uploaded_key_count == 25
    reopened, _ = make(store)
    assert reopened.shared and reopened.upload_request() is None


def test_answer_to_another_request_is_ignored() -> None:
    account, _ = make()
    request = account.upload_request()
    assert request is not None
    account.mark_upload_sent(server_answer(25), "some-other-request")
    assert not account.shared
    assert account.upload_request() is request


def test_malformed_upload_answer_still_counts_the_keys() -> None:
    account, _ = make()
    request = account.upload_request()
    assert request is not None
    account.mark_upload_sent({"one_time_key_counts": "nonsense"}, request.request_id)
    assert account.shared
    assert account.uploaded_key_count == len(request.one_time_keys)


def test_sync_counts_drive_top_up() -> None:
    account, _ = make()
    request = account.upload_request()
    assert request is not None
    account.mark_upload_sent(server_answer(25), request.request_id)
    account.update_key_counts({SIGNED_CURVE25519: 20}, [SIGNED_CURVE25519])
    top_up = account.upload_request()
    assert top_up is not None
    assert top_up.device_keys is None
    assert len(top_up.one_time_keys) == 5
    assert not top_up.fallback_keys
    assert not set(top_up.one_time_keys) & set(request.one_time_keys)


def test_no_top_up_while_enough_keys() -> None:
    account, _ = make()
    request = account.upload_request()
    assert request is not None
    account.mark_upload_sent(server_answer(25), request.request_id)
    account.update_key_counts({SIGNED_CURVE25519: 25}, [SIGNED_CURVE25519])
    assert account.upload_request() is None


def test_used_fallback_key_is_replaced() -> None:
    account, _ = make()
    request = account.upload_request()
    assert request is not None
    account.mark_upload_sent(server_answer(25), request.request_id)
    account.update_key_counts({SIGNED_CURVE25519: 25}, [])
    replacement = account.upload_request()
    assert replacement is not None
    assert len(replacement.fallback_keys) == 1
    assert set(replacement.fallback_keys) != set(request.fallback_keys)
    account.mark_upload_sent(server_answer(25), replacement.request_id)
    assert account.upload_request() is None


def test_missing_fallback_report_leaves_fallback_alone() -> None:
    account, _ = make()
    request = account.upload_request()
    assert request is not None
    account.mark_upload_sent(server_answer(25), request.request_id)
    account.update_key_counts({SIGNED_CURVE25519: 25}, None)
    assert account.upload_request() is None


def test_need_for_fallback_key_survives_restart() -> None:
    store = MemoryStore()
    account, _ = make(store)
    request = account.upload_request()
    assert request is not None
    account.mark_upload_sent(server_answer(25), request.request_id)
    account.update_key_counts({SIGNED_CURVE25519: 25}, [])
    reopened, _ = make(store)
    replacement = reopened.upload_request()
    assert replacement is not None and len(replacement.fallback_keys) == 1


def test_counts_arriving_during_upload_do_not_generate_a_second_batch() -> None:
    account, _ = make()
    first = account.upload_request()
    assert first is not None
    account.update_key_counts({SIGNED_CURVE25519: 0}, [])
    account.upload_failed(first.request_id)
    again = account.upload_request()
    assert again is not None
    assert again.one_time_keys == first.one_time_keys
    assert again.fallback_keys == first.fallback_keys


@pytest.mark.parametrize(
    "counts",
    [{SIGNED_CURVE25519: -1}, {SIGNED_CURVE25519: "3"}, {SIGNED_CURVE25519: True}, "x"],
)
def test_bad_counts_are_ignored(counts: object) -> None:
    account, _ = make()
    request = account.upload_request()
    assert request is not None
    account.mark_upload_sent(server_answer(25), request.request_id)
    account.update_key_counts(counts, "not a list")  # type: ignore[arg-type]
    assert account.uploaded_key_count == 25
    assert account.upload_request() is None


def test_store_of_another_device_is_refused() -> None:
    store = MemoryStore()
    make(store)
    ctx = CryptoContext(USER, DeviceId("OTHER"), store, FakeClock())
    with pytest.raises(CryptoMisuseError):
        AccountMachine(ctx)


def test_damaged_pickle_is_a_store_error() -> None:
    store = MemoryStore()
    make(store)
    record = store.load_account()
    assert record is not None
    store.save_changes(
        Changes(account=AccountRecord(USER, DEVICE, "not a pickle", record.shared, 0))
    )
    with pytest.raises(StoreCorruptError):
        make(store)


def test_failed_batch_drops_memory_state() -> None:
    store = MemoryStore()
    account, ctx = make(store)
    with pytest.raises(RuntimeError), ctx.batch():
        account.upload_request()  # generates keys inside the failing batch
        raise RuntimeError("boom")
    # The generated keys were never saved; memory follows the store.
    record = store.load_account()
    assert record is not None
    stored = vz.Account.from_pickle(record.pickle, store.pickle_key)
    assert not stored.one_time_keys
    request = account.upload_request()
    assert request is not None
    assert set(request.one_time_keys) == {
        f"{SIGNED_CURVE25519}:{kid}" for kid in _published_after_reload(store)
    }


def _published_after_reload(store: MemoryStore) -> set[str]:
    record = store.load_account()
    assert record is not None
    return set(vz.Account.from_pickle(record.pickle, store.pickle_key).one_time_keys)
