// A matrix-js-sdk (Rust crypto) peer driven over stdin/stdout, one JSON object per line.
//
// Usage: node peer.mjs            (reads commands from stdin)
// Commands:  {"cmd": "login", "url", "user", "password", "recovery_key"?, "passphrase"?}
//                                                            -> {"ok", "user_id", "device_id"}
//              (recovery_key / passphrase open secret storage when the SDK asks for its key)
//            {"cmd": "create_room", "name", "invite"?}        -> {"ok", "room_id"} (encrypted room)
//            {"cmd": "join", "room"}                         -> {"ok"} once joined
//            {"cmd": "send", "room", "body"}                 -> {"ok", "event_id", "session_id"}
//            {"cmd": "accept_verification"}                  -> {"ok"} once a request came and we are ready
//            {"cmd": "request_verification", "user", "device"} -> {"ok"} once the other side is ready
//            {"cmd": "start_sas"}                            -> {"ok"} once the SAS flow is started
//            {"cmd": "sas"}                                  -> {"ok", "emoji", "decimals"} once shown
//            {"cmd": "confirm_sas"}                          -> {"ok"} once the verification is done
//            {"cmd": "device_verified", "user", "device"}    -> {"ok", "verified", "local",
//                                                                "cross_signing", "signed_by_owner"}
//            {"cmd": "user_verified", "user"}                -> {"ok", "cross_signing", "verified", "tofu"}
//            {"cmd": "bootstrap_cross_signing"}              -> {"ok", "master_key", "ready"}
//              (answers the server's password stage with the login password)
//            {"cmd": "reset_cross_signing"}                  -> {"ok", "master_key"} (a new identity)
//            {"cmd": "bootstrap_secret_storage", "passphrase"?} -> {"ok", "recovery_key", "backup_version"}
//              (new secret storage key and new key backup; cross-signing keys stored in it)
//            {"cmd": "secrets_status"}                       -> {"ok", "master", "self_signing",
//                                                                "user_signing", "backup_key", "backup_version"}
//              (which private keys this device holds, e.g. after they were shared with it)
//            {"cmd": "backed_up_sessions", "room"}           -> {"ok", "version", "sessions"}
//              (session ids the server's current backup holds for the room)
//            {"cmd": "restore_from_secret_storage"}          -> {"ok", "cross_signing_ready", "trusted",
//                                                                "matches_key", "total", "imported"}
//            {"cmd": "stop"}                                 -> {"ok"} and exit
// Events:    {"event": "message", "room", "sender", "sender_key", "body", "encrypted"}
//            {"event": "utd", "room", "event_id", "reason"}  (an event it could not decrypt, and why)
// Every reply carries the "id" of its command. Only this protocol goes to stdout:
// the SDK's own logging is sent to stderr so that it cannot corrupt the stream.
import readline from "node:readline";

for (const name of ["log", "info", "warn", "error", "debug", "trace"]) {
    console[name] = (...args) => process.stderr.write(args.map(String).join(" ") + "\n");
}

const sdk = await import("matrix-js-sdk");
const cryptoApi = await import("matrix-js-sdk/lib/crypto-api/index.js");

function emit(obj) {
    process.stdout.write(JSON.stringify(obj) + "\n");
}

let client = null;
let password = null;
const seen = new Set();
const requests = [];
// The secret storage key: given at login, or cached when this peer creates one.
let secretKey = null;
let secretPassphrase = null;

async function getSecretStorageKey({ keys }) {
    const [keyId, info] = Object.entries(keys)[0];
    if (secretKey === null && secretPassphrase !== null && info.passphrase) {
        const { salt, iterations, bits } = info.passphrase;
        secretKey = await cryptoApi.deriveRecoveryKeyFromPassphrase(secretPassphrase, salt, iterations, bits ?? 256);
    }
    return secretKey === null ? null : [keyId, secretKey];
}

function report(event) {
    if (event.isDecryptionFailure()) {
        emit({
            event: "utd",
            room: event.getRoomId(),
            event_id: event.getId(),
            reason: event.decryptionFailureReason,
        });
        return;
    }
    if (event.getType() !== "m.room.message" || seen.has(event.getId())) return;
    seen.add(event.getId());
    emit({
        event: "message",
        room: event.getRoomId(),
        sender: event.getSender(),
        sender_key: event.getSenderKey?.() ?? null,
        body: event.getContent().body,
        encrypted: event.isEncrypted(),
    });
}

async function login({ url, user, password: pw, recovery_key, passphrase }) {
    password = pw;
    if (recovery_key) secretKey = cryptoApi.decodeRecoveryKey(recovery_key);
    if (passphrase) secretPassphrase = passphrase;
    const bare = sdk.createClient({ baseUrl: url });
    const resp = await bare.loginRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user },
        password: pw,
        initial_device_display_name: "js-sdk interop peer",
    });
    client = sdk.createClient({
        baseUrl: url,
        userId: resp.user_id,
        deviceId: resp.device_id,
        accessToken: resp.access_token,
        cryptoCallbacks: {
            getSecretStorageKey,
            cacheSecretStorageKey: (_keyId, _info, key) => {
                secretKey = key;
            },
        },
    });
    await client.initRustCrypto({ useIndexedDB: false });
    client.on(sdk.RoomEvent.Timeline, (event) => {
        if (event.isEncrypted() && event.isBeingDecrypted?.()) return;
        report(event);
    });
    client.on(sdk.MatrixEventEvent.Decrypted, (event) => report(event));
    client.on(cryptoApi.CryptoEvent.VerificationRequestReceived, (request) => requests.push(request));
    const synced = new Promise((resolve) => {
        client.on(sdk.ClientEvent.Sync, (state) => {
            if (state === "PREPARED") resolve();
        });
    });
    await client.startClient({ initialSyncLimit: 20 });
    await synced;
    return { user_id: resp.user_id, device_id: resp.device_id };
}

async function until(pred, what, ms = 20000) {
    const end = Date.now() + ms;
    while (Date.now() < end) {
        if (await pred()) return;
        await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`timed out waiting for ${what}`);
}

async function join({ room }) {
    await until(() => client.getRoom(room)?.getMyMembership() === "invite", "the invite");
    await client.joinRoom(room);
    await until(() => client.getRoom(room)?.getMyMembership() === "join", "the join");
    await until(() => client.isRoomEncrypted?.(room) ?? client.getRoom(room)?.hasEncryptionStateEvent(), "encryption state");
    return {};
}

async function create_room({ name, invite = [] }) {
    const resp = await client.createRoom({
        name,
        invite,
        initial_state: [
            { type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } },
        ],
    });
    await until(() => client.getRoom(resp.room_id)?.hasEncryptionStateEvent(), "the new room");
    return { room_id: resp.room_id };
}

async function send({ room, body }) {
    const resp = await client.sendMessage(room, { msgtype: "m.text", body });
    let sent = null;
    await until(() => (sent = client.getRoom(room)?.findEventById(resp.event_id)), "the sent event");
    return { event_id: resp.event_id, session_id: sent.getWireContent().session_id ?? null };
}

// The server's user-interactive auth: first without auth (a first upload of
// cross-signing keys may need none), then the password stage in its session.
async function passwordAuth(makeRequest) {
    try {
        return await makeRequest(null);
    } catch (err) {
        const session = err?.data?.session;
        if (err?.httpStatus !== 401 || !session) throw err;
        return await makeRequest({
            type: "m.login.password",
            identifier: { type: "m.id.user", user: client.getUserId() },
            password,
            session,
        });
    }
}

async function bootstrap_cross_signing() {
    const crypto = client.getCrypto();
    await crypto.bootstrapCrossSigning({ authUploadDeviceSigningKeys: passwordAuth });
    return {
        master_key: await crypto.getCrossSigningKeyId(),
        ready: await crypto.isCrossSigningReady(),
    };
}

async function reset_cross_signing() {
    const crypto = client.getCrypto();
    await crypto.bootstrapCrossSigning({ setupNewCrossSigning: true, authUploadDeviceSigningKeys: passwordAuth });
    return { master_key: await crypto.getCrossSigningKeyId() };
}

async function bootstrap_secret_storage({ passphrase }) {
    const crypto = client.getCrypto();
    const generated = await crypto.createRecoveryKeyFromPassphrase(passphrase);
    await crypto.bootstrapSecretStorage({
        createSecretStorageKey: async () => generated,
        setupNewSecretStorage: true,
        setupNewKeyBackup: true,
    });
    await until(async () => (await crypto.getActiveSessionBackupVersion()) !== null, "the backup to be enabled");
    return {
        recovery_key: generated.encodedPrivateKey,
        backup_version: await crypto.getActiveSessionBackupVersion(),
        secret_storage_ready: await crypto.isSecretStorageReady(),
    };
}

async function secrets_status() {
    const crypto = client.getCrypto();
    const cached = (await crypto.getCrossSigningStatus()).privateKeysCachedLocally;
    return {
        master: cached.masterKey,
        self_signing: cached.selfSigningKey,
        user_signing: cached.userSigningKey,
        backup_key: (await crypto.getSessionBackupPrivateKey()) !== null,
        backup_version: await crypto.getActiveSessionBackupVersion(),
    };
}

async function backed_up_sessions({ room }) {
    const info = await client.getCrypto().getKeyBackupInfo();
    if (!info?.version) return { version: null, sessions: [] };
    const path = `/room_keys/keys/${encodeURIComponent(room)}`;
    let keys;
    try {
        keys = await client.http.authedRequest(sdk.Method.Get, path, { version: info.version });
    } catch (err) {
        if (err?.httpStatus === 404) return { version: info.version, sessions: [] };
        throw err;
    }
    return { version: info.version, sessions: Object.keys(keys.sessions ?? {}) };
}

// What a new device does with the recovery key: take the cross-signing keys
// from secret storage (signing this device), then the backup key, then restore.
async function restore_from_secret_storage() {
    const crypto = client.getCrypto();
    // As Element does: the account's public identity first (this queries it afresh),
    // else the private keys from secret storage have nothing to be checked against.
    if (!(await crypto.userHasCrossSigningKeys(client.getUserId(), true))) {
        throw new Error("the account has no cross-signing identity");
    }
    await crypto.bootstrapCrossSigning({});
    await crypto.loadSessionBackupPrivateKeyFromSecretStorage();
    const check = await crypto.checkKeyBackupAndEnable();
    const restored = await crypto.restoreKeyBackup();
    return {
        cross_signing_ready: await crypto.isCrossSigningReady(),
        version: check?.backupInfo?.version ?? null,
        trusted: check?.trustInfo?.trusted ?? false,
        matches_key: check?.trustInfo?.matchesDecryptionKey ?? false,
        total: restored.total,
        imported: restored.imported,
    };
}

let verifier = null;
let shown = null;
let verified = null;

function watch(verifierNow) {
    if (!verifierNow || verifier) return;
    verifier = verifierNow;
    verifier.on(cryptoApi.VerifierEvent.ShowSas, (sas) => {
        shown = sas;
    });
    verified = verifier.verify();
    verified.catch(() => {});
}

async function accept_verification() {
    await until(() => requests.length > 0, "a verification request");
    const request = requests[0];
    request.on(cryptoApi.VerificationRequestEvent.Change, () => watch(request.verifier));
    await request.accept();
    return {};
}

async function request_verification({ user, device }) {
    const request = await client.getCrypto().requestDeviceVerification(user, device);
    requests.push(request);
    await until(() => request.phase === cryptoApi.VerificationPhase.Ready, "the other side to be ready");
    return {};
}

async function start_sas() {
    watch(await requests[0].startVerification("m.sas.v1"));
    return {};
}

async function sas() {
    await until(() => shown !== null, "the SAS to show");
    return { emoji: shown.sas.emoji, decimals: shown.sas.decimal };
}

async function confirm_sas() {
    await shown.confirm();
    await verified;
    return {};
}

async function device_verified({ user, device }) {
    const status = await client.getCrypto().getDeviceVerificationStatus(user, device);
    return {
        verified: status?.isVerified() ?? false,
        local: status?.localVerified ?? false,
        cross_signing: status?.crossSigningVerified ?? false,
        signed_by_owner: status?.signedByOwner ?? false,
    };
}

async function user_verified({ user }) {
    const status = await client.getCrypto().getUserVerificationStatus(user);
    return {
        cross_signing: status.isCrossSigningVerified(),
        verified: status.isVerified(),
        tofu: status.isTofu(),
    };
}

const handlers = {
    login,
    create_room,
    join,
    send,
    accept_verification,
    request_verification,
    start_sas,
    sas,
    confirm_sas,
    device_verified,
    user_verified,
    bootstrap_cross_signing,
    reset_cross_signing,
    bootstrap_secret_storage,
    secrets_status,
    backed_up_sessions,
    restore_from_secret_storage,
};

const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
    if (!line.trim()) continue;
    const msg = JSON.parse(line);
    if (msg.cmd === "stop") {
        emit({ id: msg.id, ok: true });
        break;
    }
    try {
        const result = await handlers[msg.cmd](msg);
        emit({ id: msg.id, ok: true, ...result });
    } catch (err) {
        emit({ id: msg.id, ok: false, error: String(err?.stack ?? err) });
    }
}
client?.stopClient();
process.exit(0);
