// The SDK's watches against the REAL worker (issue 24, item 11): a watch
// made before two users have a conversation is answered "never seen" and
// not kept by the server; the SDK sends it again at the first message
// between them, so presence shows on both sides then, not at the renewal
// (30 s away with the default WATCH_TTL_S). Run under Node >= 22.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { ChatClient } from "../../../client/dist/index.js";
import { eventually, startWorker, token } from "../../harness.mjs";
import { record } from "../fake.mjs";

let w;
const made = [];
before(async () => (w = await startWorker()));
after(async () => {
  await Promise.all(made.map((c) => c.close()));
  await w.close();
});

function client(uid) {
  const chat = new ChatClient({ url: w.wsUrl("/ws"), token: () => token(uid), backoff: { baseMs: 50, maxMs: 400 } });
  made.push(chat);
  return { chat, got: record(chat) };
}

test("presence watched before the first message shows on both sides once it is sent", async () => {
  const a = client("pw1");
  const b = client("pw2");
  await Promise.all([a.chat.connect(), b.chat.connect()]);
  a.chat.watch("pw2");
  b.chat.watch("pw1");
  await eventually(() => a.got.presence.length === 1 && b.got.presence.length === 1);
  const never = { online: false, last_seen: null };
  assert.deepEqual([a.chat.presence("pw2"), b.chat.presence("pw1")], [never, never], "no conversation yet");

  await a.chat.send("pw2", "hello");
  // Watched again at the message (A's own `out` entry, B's `in`): both online now.
  await eventually(() => a.chat.presence("pw2")?.online === true && b.chat.presence("pw1")?.online === true, 10_000);
  assert.equal(a.got.presence.length, 2, "one more answer each, not a renewal loop");
  assert.equal(b.got.presence.length, 2);

  // The kept watch hears of a change: B going away reaches A.
  await b.chat.close();
  await eventually(() => a.chat.presence("pw2")?.online === false, 20_000);
});
