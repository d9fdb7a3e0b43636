// A matrix-js-sdk (Rust crypto) peer driven over stdin/stdout, one JSON object per line.
//
// Usage: node peer.mjs            (reads commands from stdin)
// Commands:  {"cmd": "login", "url", "user", "password"}  -> {"ok", "user_id", "device_id"}
//            {"cmd": "join", "room"}                         -> {"ok"} once joined
//            {"cmd": "send", "room", "body"}                 -> {"ok", "event_id"}
//            {"cmd": "accept_verification"}                  -> {"ok"} once a request came and we are ready
//            {"cmd": "request_verification", "user", "device"} -> {"ok"} once the other side is ready
//            {"cmd": "start_sas"}                            -> {"ok"} once the SAS flow is started
//            {"cmd": "sas"}                                  -> {"ok", "emoji", "decimals"} once shown
//            {"cmd": "confirm_sas"}                          -> {"ok"} once the verification is done
//            {"cmd": "device_verified", "user", "device"}    -> {"ok", "verified"}
//            {"cmd": "stop"}                                 -> {"ok"} and exit
// Events:    {"event": "message", "room", "sender", "sender_key", "body", "encrypted"}
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
const seen = new Set();
const requests = [];

function report(event) {
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

async function login({ url, user, password }) {
    const bare = sdk.createClient({ baseUrl: url });
    const resp = await bare.loginRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user },
        password,
        initial_device_display_name: "js-sdk interop peer",
    });
    client = sdk.createClient({
        baseUrl: url,
        userId: resp.user_id,
        deviceId: resp.device_id,
        accessToken: resp.access_token,
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

async function send({ room, body }) {
    const resp = await client.sendMessage(room, { msgtype: "m.text", body });
    return { event_id: resp.event_id };
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
    return { verified: status?.isVerified() ?? false, local: status?.localVerified ?? false };
}

const handlers = {
    login,
    join,
    send,
    accept_verification,
    request_verification,
    start_sas,
    sas,
    confirm_sas,
    device_verified,
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
