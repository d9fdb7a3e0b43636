"""Sharing a new room key with N devices: Messa vs matrix-nio, same fixture, same run.

The fixture is built once per size: N devices (two per user), each a real
vodozemac account with self-signed device keys and one signed one-time key;
from them the ``/keys/query`` and ``/keys/claim`` answers a homeserver would
give. Both implementations get the very same answers.

For each contender, every repeat starts from a fresh state (a new Olm
account on a new store) that first learns the devices from the query
answer (timed as "query", for information). Then the measured steps:

* claim → sessions: the claim answer goes in; each one-time key's
  signature is checked against the device's Ed25519 key and an outbound
  Olm session is created and stored (Messa: ``mark_request_as_sent`` of the
  claim; nio: ``KeysClaimResponse.from_dict`` + ``Olm.handle_response``);
* share: a new Megolm session is created and its ``m.room_key`` is
  Olm-encrypted for every device, ready to send (Messa:
  ``OlmMachine.share_room_key``; nio: ``Olm.share_group_session_parallel``
  with ``ignore_unverified_devices=True`` over all chunks, then marking the
  session shared, as nio's client does).

Both persist what they create as they normally do. Two store settings:
``memory`` (Messa ``MemoryStore`` vs nio ``SqliteMemoryStore``, an
in-memory SQLite database, nio's only store without files) and ``disk``
(Messa's encrypted ``SqliteStore`` vs nio's ``DefaultStore``, its default:
an SQLite file plus trust files), both in a temporary directory.

In the memory setting a third, diagnostic column runs nio with its store's
per-session writes and trust lookups stubbed out: not a usable setup, but it
shows how much of nio's time is its store and how Messa compares with nio's
crypto work alone.

Each step is checked: N sessions, N encrypted ``m.room_key`` messages, and a
few of them (chosen at random) are decrypted by their recipient device.
The median of ``--repeats`` runs is reported, with the ratio nio / Messa
(above 1: Messa is faster).

Usage::

    python bench/share_keys.py                      # N = 100 and 1000
    python bench/share_keys.py --devices 300 --repeats 5
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import logging
import random
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nio.crypto import Olm, TrustState
from nio.responses import KeysClaimResponse, KeysQueryResponse
from nio.store import DefaultStore, MatrixStore, SqliteMemoryStore

from _common import Row, fmt_ms, fmt_ratio, median, print_table, ratio, timed
from messa.crypto import _vodozemac as vz
from messa.crypto.canonical import sign_json
from messa.crypto.machine import OlmMachine
from messa.store import MemoryStore, RawKey, SqliteStore, Store
from messa.types.ids import DeviceId, RoomId, UserId
from messa.types.keys import MEGOLM_ALGORITHM, OLM_ALGORITHM
from messa.types.requests import KeysQueryRequest, KeysUploadRequest

ROOM = RoomId("!share:bench.example")
SHARER = UserId("@sharer:bench.example")
SHARER_DEVICE = DeviceId("SHARER")
DEVICES_PER_USER = 2
STEPS = ("query", "claim", "share")
STORE_SETTINGS = ("memory", "disk")
CHECKED_PER_RUN = 3
ENCRYPTION = {"algorithm": MEGOLM_ALGORITHM}


# --- fixture -------------------------------------------------------------------------


@dataclass
class FakeDevice:
    """A remote device: a real account whose public keys the fixture publishes."""

    user_id: UserId
    device_id: DeviceId
    account_pickle: str
    curve25519: str


@dataclass
class Fixture:
    """The devices and the homeserver answers built from them."""

    devices: list[FakeDevice]
    users: list[UserId]
    device_keys: dict[str, dict[str, Any]]  # user -> device -> signed device keys
    claimed: dict[str, dict[str, Any]]  # user -> device -> {key id: signed key}

    def query_answer(
        self, own_keys: dict[str, Any] | None, users: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """The ``/keys/query`` answer for ``users`` (default: all), ours included; a copy."""
        everyone = {**self.device_keys, SHARER: {SHARER_DEVICE: own_keys} if own_keys else {}}
        wanted = everyone if users is None else {u: everyone.get(u, {}) for u in users}
        return {"device_keys": copy.deepcopy(wanted), "failures": {}}

    def claim_answer(self) -> dict[str, Any]:
        """The ``/keys/claim`` answer: one signed one-time key per device (a fresh copy)."""
        return {"one_time_keys": copy.deepcopy(self.claimed), "failures": {}}


PICKLE_KEY = b"p" * 32


def _signer(account: vz.Account) -> Callable[[bytes], str]:
    return lambda message: account.sign(message).to_base64()


def build_fixture(n: int, seed: int = 7) -> Fixture:
    """N devices with signed device keys and one signed one-time key each."""
    rng = random.Random(seed)
    devices: list[FakeDevice] = []
    device_keys: dict[str, dict[str, Any]] = {}
    claimed: dict[str, dict[str, Any]] = {}
    for i in range(n):
        user = UserId(f"@user{i // DEVICES_PER_USER:05d}:bench.example")
        device = DeviceId("".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(10)))
        account = vz.Account()
        sign = _signer(account)
        curve = account.curve25519_key.to_base64()
        entry = {
            "user_id": user,
            "device_id": device,
            "algorithms": [OLM_ALGORITHM, MEGOLM_ALGORITHM],
            "keys": {
                f"curve25519:{device}": curve,
                f"ed25519:{device}": account.ed25519_key.to_base64(),
            },
        }
        signed = sign_json(entry, user, f"ed25519:{device}", sign)
        signed["unsigned"] = {"device_display_name": f"device {i}"}
        device_keys.setdefault(user, {})[device] = signed
        account.generate_one_time_keys(1)
        key_id, key = next(iter(account.one_time_keys.items()))
        account.mark_keys_as_published()
        otk = sign_json({"key": key.to_base64()}, user, f"ed25519:{device}", sign)
        claimed.setdefault(user, {})[device] = {f"signed_curve25519:{key_id}": otk}
        devices.append(FakeDevice(user, device, account.pickle(PICKLE_KEY), curve))
    users = sorted({d.user_id for d in devices})
    return Fixture(devices, users, device_keys, claimed)


def check_delivery(
    fx: Fixture, messages: dict[str, dict[str, Any]], sender_curve: str, rng: random.Random
) -> int:
    """Decrypt a few ``m.room_key`` messages as their recipients would; return how many did.

    Each check uses a copy of the recipient's account, so the fixture's one
    one-time key stays usable for the next run.
    """
    ok = 0
    for dev in rng.sample(fx.devices, min(CHECKED_PER_RUN, len(fx.devices))):
        account = vz.Account.from_pickle(dev.account_pickle, PICKLE_KEY)
        try:
            part = messages[dev.user_id][dev.device_id]["ciphertext"][dev.curve25519]
            message = vz.AnyOlmMessage.from_parts(part["type"], vz.b64decode(part["body"]))
            pre_key = message.to_pre_key()
            if pre_key is None:
                continue
            _, plaintext = account.create_inbound_session(
                vz.Curve25519PublicKey.from_base64(sender_curve), pre_key
            )
            payload = json.loads(plaintext)
        except (KeyError, TypeError, ValueError):  # the binding's errors are ValueErrors
            continue
        if (
            payload.get("type") == "m.room_key"
            and payload["content"].get("room_id") == ROOM
            and payload.get("recipient") == dev.user_id
        ):
            ok += 1
    return ok


# --- contenders ----------------------------------------------------------------------


@dataclass
class RunResult:
    """One run of one contender."""

    seconds: dict[str, float] = field(default_factory=dict)
    sessions: int = 0
    messages: int = 0
    checked_ok: int = 0
    delivered: dict[str, dict[str, Any]] = field(default_factory=dict)  # user -> device -> content
    sender_curve25519: str = ""


def run_messa(fx: Fixture, setting: str, tmp: Path, rng: random.Random) -> RunResult:
    """A fresh Messa device shares a new room key with every fixture device."""
    store: Store
    if setting == "memory":
        store = MemoryStore()
    else:
        store = SqliteStore(tmp / "messa" / "store.sqlite3", RawKey(b"k" * 32))
    out = RunResult()
    try:
        machine = OlmMachine(SHARER, SHARER_DEVICE, store)
        members = [SHARER, *fx.users]
        machine.update_tracked_users(members)
        # As the client's request loop does: upload our keys, then answer each
        # query (at most a few hundred users each) with the users it asks for.
        out.seconds["query"] = 0.0
        own_keys = None
        for _ in range(20):
            reqs = machine.outgoing_requests()
            if not reqs:
                break
            for req in reqs:
                if isinstance(req, KeysUploadRequest):
                    own_keys = req.device_keys or own_keys
                    machine.mark_request_as_sent(req.request_id, {"one_time_key_counts": {}})
                elif isinstance(req, KeysQueryRequest):
                    answer = fx.query_answer(own_keys, req.users)
                    elapsed, _ = timed(
                        functools.partial(machine.mark_request_as_sent, req.request_id, answer)
                    )
                    out.seconds["query"] += elapsed
        claim = machine.get_missing_sessions(members)
        if claim is None:
            raise AssertionError("messa asked for no one-time keys")
        claim_answer = fx.claim_answer()
        out.seconds["claim"], _ = timed(
            lambda: machine.mark_request_as_sent(claim.request_id, claim_answer)
        )
        out.sessions = sum(
            1
            for user in fx.users
            for device in machine.get_user_devices(user)
            if machine.olm.session_ids(device)
        )
        out.seconds["share"], requests = timed(
            lambda: machine.share_room_key(ROOM, members, ENCRYPTION)
        )
        messages: dict[str, dict[str, Any]] = {}
        for req in requests:
            if req.event_type == "m.room.encrypted":
                for user, devs in req.messages.items():
                    for device_id, content in devs.items():
                        messages.setdefault(user, {})[device_id] = content
        out.messages = sum(len(d) for d in messages.values())
        out.delivered, out.sender_curve25519 = messages, machine.identity_keys["curve25519"]
        out.checked_ok = check_delivery(fx, messages, out.sender_curve25519, rng)
    finally:
        store.close()
    return out


class NioWithoutPersistence(SqliteMemoryStore):
    """nio's in-memory store with every per-session write and trust lookup stubbed out.

    Not a usable configuration (nothing survives, trust is always "unset"):
    a diagnostic showing nio's crypto work apart from its store's cost.
    """

    def save_account(self, account: Any) -> None:
        """Skip."""

    def save_session(self, curve_key: str, session: Any) -> None:
        """Skip."""

    def save_device_keys(self, device_keys: Any) -> None:
        """Skip."""

    def save_inbound_group_session(self, session: Any) -> None:
        """Skip."""

    def is_device_verified(self, device: Any) -> bool:
        """Unset trust, as for every fresh device."""
        return False

    def is_device_blacklisted(self, device: Any) -> bool:
        """Unset trust."""
        return False

    def is_device_ignored(self, device: Any) -> bool:
        """Unset trust."""
        return False

    def ignore_devices(self, devices: list[Any]) -> None:
        """Mark in memory only."""
        for device in devices:
            device.trust_state = TrustState.ignored


def run_nio(fx: Fixture, setting: str, tmp: Path, rng: random.Random) -> RunResult:
    """A fresh matrix-nio device does the same work."""
    store: MatrixStore
    if setting == "memory":
        store = SqliteMemoryStore(SHARER, SHARER_DEVICE)
    elif setting == "none":
        store = NioWithoutPersistence(SHARER, SHARER_DEVICE)
    else:
        (tmp / "nio").mkdir(parents=True, exist_ok=True)
        store = DefaultStore(SHARER, SHARER_DEVICE, str(tmp / "nio"))
    out = RunResult()
    olm = Olm(SHARER, SHARER_DEVICE, store)
    own_keys = olm.share_keys()["device_keys"]
    olm.mark_keys_as_published()
    answer = fx.query_answer(own_keys)

    def query() -> None:
        olm.handle_response(KeysQueryResponse.from_dict(answer))

    out.seconds["query"], _ = timed(query)
    members = [SHARER, *fx.users]
    missing = olm.get_missing_sessions(members)
    if sum(len(d) for d in missing.values()) != len(fx.devices):
        raise AssertionError("nio does not see every device")
    claim_answer = fx.claim_answer()

    def claim() -> None:
        olm.handle_response(KeysClaimResponse.from_dict(claim_answer, ROOM))

    out.seconds["claim"], _ = timed(claim)
    out.sessions = sum(1 for d in fx.devices if olm.session_store.get(d.curve25519))

    def share() -> dict[str, dict[str, Any]]:
        messages: dict[str, dict[str, Any]] = {}
        session = None
        for sharing_with, to_device in olm.share_group_session_parallel(
            ROOM, members, ignore_unverified_devices=True
        ):
            # What nio's client does once each to-device request is answered.
            session = olm.outbound_group_sessions[ROOM]
            session.users_shared_with.update(sharing_with)
            for user, devs in to_device["messages"].items():
                messages.setdefault(user, {}).update(devs)
        if session is not None:
            session.shared = True
        return messages

    out.seconds["share"], messages = timed(share)
    out.messages = sum(len(d) for d in messages.values())
    out.delivered, out.sender_curve25519 = messages, olm.account.identity_keys["curve25519"]
    out.checked_ok = check_delivery(fx, messages, out.sender_curve25519, rng)
    store.database.close()
    return out


Runner = Callable[[Fixture, str, Path, random.Random], RunResult]


def run_nio_without_persistence(
    fx: Fixture, setting: str, tmp: Path, rng: random.Random
) -> RunResult:
    """nio on :class:`NioWithoutPersistence` (diagnostic, memory setting only)."""
    return run_nio(fx, "none", tmp, rng)


CONTENDERS: dict[str, Runner] = {"messa": run_messa, "nio": run_nio}
DIAGNOSTIC: dict[str, Runner] = {"nio, no store*": run_nio_without_persistence}


# --- main ----------------------------------------------------------------------------


def measure(fx: Fixture, setting: str, repeats: int, seed: int) -> dict[str, Any]:
    """Median step times of each contender, interleaved run by run."""
    rng = random.Random(seed)
    runners = dict(CONTENDERS)
    if setting == "memory":
        runners.update(DIAGNOSTIC)
    times: dict[str, dict[str, list[float]]] = {
        name: {step: [] for step in (*STEPS, "total")} for name in runners
    }
    counts: dict[str, dict[str, int]] = {}
    for _ in range(repeats):
        for name, run in runners.items():
            with tempfile.TemporaryDirectory(prefix="messa-bench-") as tmp:
                result = run(fx, setting, Path(tmp), rng)
            for step in STEPS:
                times[name][step].append(result.seconds[step])
            times[name]["total"].append(result.seconds["claim"] + result.seconds["share"])
            seen = {
                "sessions": result.sessions,
                "messages": result.messages,
                "checked": result.checked_ok,
            }
            prev = counts.get(name, seen)
            counts[name] = {k: min(prev[k], seen[k]) for k in seen}
    medians = {
        name: {step: median(values) for step, values in per.items()} for name, per in times.items()
    }
    ratios = {
        name: {step: ratio(medians[name][step], medians["messa"][step]) for step in medians[name]}
        for name in runners
        if name != "messa"
    }
    return {"medians": medians, "ratios": ratios, "counts": counts}


def main(argv: Sequence[str] | None = None) -> dict[int, dict[str, Any]]:
    """Run the benchmark, print the tables, and return the figures per size and setting."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument(
        "--devices", type=int, nargs="+", default=[100, 1000], help="sizes (default 100 1000)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="fresh runs per contender")
    parser.add_argument("--stores", nargs="+", choices=STORE_SETTINGS, default=list(STORE_SETTINGS))
    args = parser.parse_args(argv)
    if args.repeats < 1 or min(args.devices) < 1:
        parser.error("sizes must be positive")
    # nio warns about every device without a session before the claim; keep the output readable.
    logging.getLogger("nio").setLevel(logging.ERROR)

    figures: dict[int, dict[str, Any]] = {}
    for n in args.devices:
        build_s, fx = timed(functools.partial(build_fixture, n))
        print(
            f"\n## {n} devices ({len(fx.users)} users), median of {args.repeats} fresh runs "
            f"(fixture built in {build_s:.1f} s)"
        )
        figures[n] = {}
        for setting in args.stores:
            f = measure(fx, setting, args.repeats, seed=n)
            figures[n][setting] = f
            others = [name for name in f["medians"] if name != "messa"]
            rows = []
            for step, label in (
                ("query", "query (information)"),
                ("claim", "claim -> sessions"),
                ("share", "encrypt + share"),
                ("total", "claim + share"),
            ):
                cells = [fmt_ms(f["medians"]["messa"][step])]
                for name in others:
                    cells += [fmt_ms(f["medians"][name][step]), fmt_ratio(f["ratios"][name][step])]
                rows.append(Row(label, tuple(cells)))
            headers = ["messa"]
            for name in others:
                headers += [name, f"{name.split(',')[0]}/messa"]
            print()
            print_table(f"store: {setting}", headers, rows)
            for name, c in f["counts"].items():
                print(
                    f"  {name}: {c['sessions']}/{n} sessions, {c['messages']}/{n} m.room_key "
                    f"messages, {c['checked']}/{min(CHECKED_PER_RUN, n)} sampled decrypted ok"
                )
            if setting == "memory":
                print(
                    "  * diagnostic, not a usable nio setup: its store's writes and trust "
                    "lookups stubbed out, to show nio's crypto work alone"
                )

    print()
    print("=== summary: sharing a new room key (nio time / messa time; > 1 = messa faster) ===")
    for n, per_setting in figures.items():
        for setting, f in per_setting.items():
            r = f["ratios"]["nio"]
            verdict = "messa faster" if r["total"] > 1 else "messa SLOWER"
            print(
                f"N={n:<5} {setting:<6}  claim->sessions {r['claim']:5.2f}x   "
                f"share {r['share']:5.2f}x   together {r['total']:5.2f}x  "
                f"({fmt_ms(f['medians']['messa']['total'])} vs "
                f"{fmt_ms(f['medians']['nio']['total'])}): {verdict}"
            )
            for name in DIAGNOSTIC:
                if name in f["ratios"]:
                    d = f["ratios"][name]
                    print(
                        f"{'':14}{name}: claim->sessions {d['claim']:5.2f}x   "
                        f"share {d['share']:5.2f}x   together {d['total']:5.2f}x"
                    )
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
