// Issue 24's limits on groups against the real runtime: group sends over
// HTTP draw from the user's one send bucket (as their chats and v1 group
// frames do), a member's group typing reaches the others at the 1:1 typing
// rate, group entries and edits never fill an offline user's queue, and a
// page of group history draws from the read bucket, with cursors past
// every seq reading from the newest.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { callJson, connectV1, eventually, sleep, startWorker, token } from "../harness.mjs";

/** A group call as `uid` (HTTP, `/v1/groups…`); resolves with status and JSON. */
const call = (w, uid, method, path, body) => callJson(w, uid, method, `/v1/groups${path}`, body);

/** The same through the backend API. */
const api = (w, method, path, body) => callJson(w, null, method, `/api/groups${path}`, body);

/** A group `group` of `owner` with `members`, made by the backend. */
async function makeGroup(w, group, owner, members) {
  const made = await api(w, "POST", "", { group, owner, members });
  assert.equal(made.status, 201, JSON.stringify(made.body));
}

describe("2: one send bucket for every path", () => {
  const [RATE, BURST] = [1, 5];
  let w;
  before(async () => (w = await startWorker({ bindings: { SEND_RATE: String(RATE), SEND_BURST: String(BURST) } })));
  after(() => w.close());

  test("HTTP group sends and v1 sends share SEND_RATE; past it both are refused with when to retry", async () => {
    await makeGroup(w, "gsr", "sr1", ["sr2"]);
    const a = await connectV1(w, "sr1");
    const before = (await w.metrics()).refused_rate;
    const t0 = Date.now();
    const http = await Promise.all(
      Array.from({ length: 12 }, (_, i) => call(w, "sr1", "POST", "/gsr/messages", { message: `h${i}` })),
    );
    const v1 = await Promise.all(
      Array.from({ length: 6 }, (_, i) => a.request({ op: "send", to: "sr2", cmid: `c${i}`, body: { message: `v${i}` } })),
    );
    const elapsedS = Math.ceil((Date.now() - t0) / 1000);
    const stored = http.filter((r) => r.status === 200).length + v1.filter((f) => f.op === "sent").length;
    // The bucket starts full and refills at RATE per second meanwhile.
    assert.ok(stored >= BURST && stored <= BURST + RATE * elapsedS, `${stored} of 18 stored in ${elapsedS} s`);
    const refused = http.find((r) => r.status === 429);
    assert.ok(refused, "HTTP group sends past the rate are refused");
    assert.equal(refused.body.code, "rate_limited");
    assert.match(refused.body.error, /SEND_RATE/);
    assert.ok(refused.body.retry_after_ms > 0 && refused.body.retry_after_ms <= 1000);
    assert.ok(http.every((r) => r.status === 200 || r.status === 429), JSON.stringify(http.map((r) => r.status)));
    assert.ok(v1.some((f) => f.op === "error" && f.code === "rate_limited"), "and so are v1 sends");
    assert.ok((await w.metrics()).refused_rate - before >= 18 - stored);
    // What was refused was not stored: the group holds the created entry and the sent ones only.
    const info = await call(w, "sr1", "GET", "/gsr");
    assert.equal(info.body.head, 1 + http.filter((r) => r.status === 200).length);
    // The backend sending as a user is not held to that user's rate (as with /api/usr-msg).
    const bot = await api(w, "POST", "/gsr/messages", { fromUser: "sr1", message: "from the backend" });
    assert.equal(bot.status, 200);
    await a.close();
  });
});

describe("3: group typing", () => {
  let w;
  before(async () => (w = await startWorker()));
  after(() => w.close());

  test("a member's typing flood reaches the others a few times a second only, HTTP and v1 alike", async () => {
    await makeGroup(w, "gty", "ty1", ["ty2", "ty3"]);
    const [b, c] = [await connectV1(w, "ty2"), await connectV1(w, "ty3")];
    const a = await connectV1(w, "ty1");
    const before = (await w.metrics()).dropped_typing;
    const t0 = Date.now();
    const http = await Promise.all(
      Array.from({ length: 50 }, (_, i) => call(w, "ty1", "POST", "/gty/typing", { typing: i % 2 === 0 })),
    );
    assert.ok(http.every((r) => r.status === 204), "a typist is never told to slow down");
    const frames = await Promise.all(
      Array.from({ length: 50 }, () => a.request({ op: "group", call: "typing", group: "gty", typing: true })),
    );
    assert.ok(frames.every((f) => f.status === 204));
    const elapsedS = Math.ceil((Date.now() - t0) / 1000);
    for (const m of [b, c]) await eventually(() => m.frames.some((f) => f.op === "typing" && f.group === "g:ty"));
    await sleep(300);
    // TYPING_RATE: a burst of 3, then 3 per second.
    for (const m of [b, c]) {
      const got = m.frames.filter((f) => f.op === "typing" && f.group === "g:ty").length;
      assert.ok(got >= 1 && got <= 3 + 3 * elapsedS, `${got} typing frames of 100 in ${elapsedS} s`);
    }
    assert.ok((await w.metrics()).dropped_typing - before >= 100 - 3 - 3 * elapsedS, "the dropped ones are counted");
    await Promise.all([a.close(), b.close(), c.close()]);
  });
});

describe("5: group entries and edits in the queue", () => {
  let w;
  before(async () => (w = await startWorker({ bindings: { QUEUE_MAX: "40", QUEUE_PER_SENDER: "10" } })));
  after(() => w.close());

  test("a stranger's group messages and edits never fill an offline user's queue", async () => {
    const stranger = await connectV1(w, "qs1");
    const first = await stranger.request({ op: "send", to: "qv1", cmid: "c0", body: { message: "hello" } });
    assert.equal(first.op, "sent");
    await makeGroup(w, "gqv", "qs1", ["qv1"]);
    for (let i = 0; i < 45; i++) {
      const sent = await api(w, "POST", "/gqv/messages", { fromUser: "qs1", message: `g${i}` });
      assert.equal(sent.status, 200);
    }
    for (let i = 1; i <= 45; i++) {
      const e = await stranger.request({ op: "edit", mid: first.mid, cmid: `e${i}`, body: { message: `hello v${i}` } });
      assert.equal(e.op, "sent", JSON.stringify(e));
    }
    // Every group entry is in the victim's log before anyone else sends.
    const unread = async () => {
      const res = await w.fetch("/v1/conversations", { headers: { authorization: `Bearer ${token("qv1")}` } });
      const page = await res.json();
      return page.items.find((c) => c.group === "g:qv")?.unread ?? 0;
    };
    await eventually(async () => (await unread()) >= 45, 15_000, 200);
    // Everyone else still gets in, and so does the backend.
    const other = await connectV1(w, "qo1");
    const sent = await other.request({ op: "send", to: "qv1", cmid: "c1", body: { message: "still room" } });
    assert.equal(sent.op, "sent", JSON.stringify(sent));
    const sys = await w.api("/api/sys-msg", { uid: "qv1", message: "notice" });
    assert.equal(sys.status, 200, await sys.text());
    // The victim connects and gets the queued chats and the notice, in order.
    const victim = await w.connect("qv1");
    const got = [];
    for (let i = 0; i < 3; i++) got.push((await victim.nextJson()).message);
    assert.deepEqual(got, ["hello v45", "still room", "notice"]);
    await Promise.all([stranger.close(), other.close(), victim.close()]);
  });
});

describe("6: group history", () => {
  let w;
  before(async () => (w = await startWorker({ bindings: { READ_RATE: "1", READ_BURST: "3" } })));
  after(() => w.close());

  const history = (uid, q) => w.fetch(`/v1/history?${q}`, { headers: { authorization: `Bearer ${token(uid)}` } });

  test("pages of group history draw from READ_RATE, HTTP and v1 alike", async () => {
    await makeGroup(w, "grr", "rr1", ["rr2"]);
    const before = (await w.metrics()).refused_read;
    const answers = await Promise.all(Array.from({ length: 5 }, () => history("rr1", "group=grr")));
    assert.deepEqual(answers.map((r) => r.status).sort(), [200, 200, 200, 429, 429]);
    const body = await answers.find((r) => r.status === 429).json();
    assert.match(body.error, /READ_RATE/);
    assert.ok(body.retry_after_ms > 0 && body.retry_after_ms <= 1000);
    const c = await connectV1(w, "rr1");
    const e = await c.request({ op: "group", call: "history", group: "grr" });
    assert.deepEqual([e.op, e.code, e.retry], ["error", "rate_limited", true]);
    assert.equal((await w.metrics()).refused_read - before, 3);
    await c.close();
  });

  test("a group history cursor past every seq (2^63, 2^64 - 1) reads from the newest", async () => {
    await makeGroup(w, "gcur", "cu1", ["cu2"]);
    const sent = await api(w, "POST", "/gcur/messages", { fromUser: "cu1", message: "one" });
    assert.equal(sent.status, 200);
    const pages = [];
    for (const q of ["", "&before=9223372036854775808", "&before=18446744073709551615"]) {
      const res = await history("cu2", `group=gcur${q}`);
      assert.equal(res.status, 200);
      pages.push((await res.json()).items.map((i) => i.group_seq));
    }
    assert.deepEqual(pages, [[2, 1], [2, 1], [2, 1]]);
  });
});
