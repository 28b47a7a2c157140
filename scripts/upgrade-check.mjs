// Upgrade in place, on the real runtime: state written by an older build is
// opened by this one. Before a deploy that changes a schema, build the
// version now deployed in another checkout, then:
//   node scripts/upgrade-check.mjs <older checkout, built>
// The older build queues chats for an offline user, a system message and
// history; this build must replay them in order, keep accepting chats,
// serve the whole history, and edit a chat the older build stored. Exits
// non-zero on any difference.
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { Miniflare } from "miniflare";
import { spawn } from "node:child_process";
import { API_KEY, JWT_SECRET, ROOT, migrate, openClient, sleep, token, workerOptions } from "../tests/harness.mjs";

const older = resolve(process.argv[2] ?? "");
if (!process.argv[2]) {
  console.error("usage: node scripts/upgrade-check.mjs <older checkout, built>");
  process.exit(2);
}
const { startWorker } = await import(join(older, "tests", "harness.mjs"));

const wsUrl = (url, uid) => `${url.replace(/^http/, "ws")}/ws?token=${token(uid)}`;
const chat = (from, to, message) => JSON.stringify({ fromUser: from, toUser: to, message });
const frames = (client) => client.received.map(String);
const history = async (url, uid) =>
  (await fetch(`${url}/ws/history?limit=50`, { headers: { authorization: `Bearer ${token(uid)}` } })).json();

// 1. The older build writes state.
const w = await startWorker();
const state = w.persistDir;
try {
  const sender = await openClient(wsUrl(w.url, "u1"));
  for (let i = 1; i <= 5; i++) sender.send(chat("u1", "u2", `old ${i}`));
  await sleep(500);
  assert.deepEqual(frames(sender), Array(5).fill("ok"), "the older build stored the chats");
  const sys = await fetch(`${w.url}/api/sys-msg`, {
    method: "POST",
    headers: { authorization: `Bearer ${API_KEY}`, "content-type": "application/json" },
    body: JSON.stringify({ uid: "u3", type: "notice" }),
  });
  assert.equal(sys.status, 200);
  await sleep(500); // archived to D1
} finally {
  await w.mf.dispose();
}

// 2. This build opens the same state: the older build's database is DB_0
// (as an operator keeps its id there), DB_1 is new.
const mf = new Miniflare(
  workerOptions({
    persistDir: state,
    vars: { JWT_SECRET, API_KEY, ARCHIVE_DELAY_MS: "50", ARCHIVE_RETRY_MS: "100" },
    d1: { DB_0: "edge-chat-test", DB_1: "edge-chat-test-1" },
  }),
);
try {
  const url = (await mf.ready).toString().replace(/\/$/, "");
  // Migrations the older deployment lacks (wrangler d1 migrations apply, per
  // shard, skips the ones it applied).
  const applied = readdirSync(join(older, "migrations")).filter((f) => f.endsWith(".sql"));
  await migrate(mf, ["DB_0", "DB_1"], applied);
  // History written in the older layout, copied into today's (the README's
  // upgrade step), then the older build's messages are in every page.
  await new Promise((res, rej) =>
    spawn(process.execPath, [join(ROOT, "scripts", "upgrade-history.mjs"), url, API_KEY], { stdio: "inherit" }).on("exit", (code) =>
      code === 0 ? res() : rej(new Error(`upgrade-history exited ${code}`)),
    ),
  );
  const recipient = await openClient(wsUrl(url, "u2"));
  const notified = await openClient(wsUrl(url, "u3"));
  await sleep(500);
  const replayed = frames(recipient).map((f) => JSON.parse(f).message);
  assert.deepEqual(replayed, ["old 1", "old 2", "old 3", "old 4", "old 5"], "queued chats replayed in order");
  assert.equal(JSON.parse(frames(notified)[0]).type, "notice", "the queued system message");
  const sender = await openClient(wsUrl(url, "u1"));
  for (let i = 6; i <= 8; i++) sender.send(chat("u1", "u2", `new ${i}`));
  await sleep(800);
  assert.deepEqual(frames(sender), Array(3).fill("ok"), "new chats accepted");
  assert.equal(frames(recipient).length, 8, "and delivered live");
  const h = await history(url, "u2");
  assert.deepEqual(
    h.usr.map((m) => m.message),
    ["new 8", "new 7", "new 6", "old 5", "old 4", "old 3", "old 2", "old 1"],
    "history holds both builds' messages",
  );
  assert.equal((await history(url, "u1")).usr.length, 8);
  assert.equal((await history(url, "u3")).sys.length, 1);
  // A chat the older build stored can be edited by this one (its log
  // schema upgraded in place), and both sides' history shows it.
  const old1 = h.usr.find((m) => m.message === "old 1");
  const edit = await fetch(`${url}/api/edit`, {
    method: "POST",
    headers: { authorization: `Bearer ${API_KEY}` },
    body: JSON.stringify({ user: "u1", mid: old1.id, body: { message: "old 1, edited" } }),
  });
  assert.equal(edit.status, 200, await edit.text());
  for (const uid of ["u1", "u2"]) {
    const texts = (await history(url, uid)).usr.map((m) => m.message);
    assert.ok(texts.includes("old 1, edited") && !texts.includes("old 1"), `${uid}: ${texts}`);
  }
  console.log(`upgrade check passed: state of ${older} opened by ${ROOT}`);
} finally {
  await mf.dispose();
}
process.exit(0);
