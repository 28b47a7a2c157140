// Backend API consistency (issue 24, items 14 to 18, noticed by the Go
// client's author), against the real runtime: error bodies in the shape of
// the call and with a code, one 413 shape, Retry-After on every 503, the
// moderation block's answer, Idempotency-Key bound to its request, and
// percent-encoded ids in group paths.
import assert from "node:assert/strict";
import { request } from "node:http";
import { after, before, describe, test } from "node:test";
import { API_KEY, startWorker, token } from "../harness.mjs";

describe("api consistency", () => {
  let w;
  let tight;
  before(async () => {
    w = await startWorker();
    tight = await startWorker({ bindings: { QUEUE_MAX: "1", BODY_MAX_BYTES: "1024", API_MAX_BATCH: "2" } });
  });
  after(() => Promise.all([w.close(), tight.close()]));

  /** A call with the API key; resolves with status, headers and JSON. */
  const call = async (worker, method, path, body, headers = {}) => {
    const res = await worker.fetch(path, {
      method,
      headers: { "content-type": "application/json", authorization: `Bearer ${API_KEY}`, ...headers },
      body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : null };
  };
  const post = (worker, path, body, headers) => call(worker, "POST", path, body, headers);
  /** A call as `uid` with their token. */
  const asUser = async (worker, uid, method, path, body) => {
    const res = await worker.fetch(path, {
      method,
      headers: { "content-type": "application/json", authorization: `Bearer ${token(uid)}` },
      body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  };
  const historyOf = async (worker, uid) => (await worker.history(uid)).json();

  test("14: a one-object send refused 507 answers in the shape of one, with a code", async () => {
    const first = await post(tight, "/api/sys-msg", { uid: "full1", type: "a" });
    assert.equal(first.status, 200);
    const one = await post(tight, "/api/sys-msg", { uid: "full1", type: "b" });
    assert.equal(one.status, 507);
    assert.deepEqual(Object.keys(one.body).sort(), ["code", "error", "id"]);
    assert.equal(one.body.code, "recipient_full");
    assert.equal(one.body.id, null);
    // An array call keeps its ids and errors, with the code too.
    const many = await post(tight, "/api/sys-msg", [{ uid: "full1" }, { uid: "free1" }]);
    assert.equal(many.status, 507);
    assert.equal(many.body.code, "recipient_full");
    assert.equal(many.body.ids[0], null);
    assert.match(many.body.ids[1], /^[0-9a-f]{28}$/);
    assert.deepEqual(many.body.errors, ["recipient_full", null]);
  });

  test("14: both 413s have one shape with a code and the limit", async () => {
    const body = await post(tight, "/api/sys-msg", { uid: "big1", pad: "x".repeat(2000) });
    const batch = await post(tight, "/api/sys-msg", [{ uid: "big1" }, { uid: "big1" }, { uid: "big1" }]);
    assert.deepEqual([body.status, batch.status], [413, 413]);
    assert.deepEqual(Object.keys(body.body).sort(), ["code", "error", "limit"]);
    assert.deepEqual(Object.keys(batch.body).sort(), ["code", "error", "limit"]);
    assert.deepEqual([body.body.code, body.body.limit], ["body_too_large", 1024]);
    assert.deepEqual([batch.body.code, batch.body.limit], ["batch_too_large", 2]);
    assert.equal((await historyOf(tight, "big1")).sys.length, 0, "nothing stored");
    // On a connection of its own: the worker answers before it reads the
    // body, so the connection cannot carry another request after it (a
    // pooled one would fail the next call with "other side closed").
    const client = await new Promise((resolve, reject) => {
      const body = JSON.stringify({ hide_presence: false, pad: "x".repeat(70000) });
      const headers = { "content-type": "application/json", authorization: `Bearer ${token("big2")}` };
      const req = request(`${tight.url}/v1/settings`, { method: "PUT", headers, agent: false }, (res) => {
        let text = "";
        res.on("data", (c) => (text += c));
        res.on("end", () => resolve({ status: res.statusCode, body: JSON.parse(text) }));
      });
      // The worker may close before it has the whole body: the answer came.
      req.on("error", (e) => (e.code === "EPIPE" || e.code === "ECONNRESET" ? undefined : reject(e)));
      req.end(body);
    });
    assert.deepEqual([client.status, client.body.code], [413, "body_too_large"]);
  });

  test("14: every 503 carries Retry-After, an object's as well as the entry's", async () => {
    // A D1 outage: a user's history whose newest page is not all in their
    // log is D1's to tell, and their object answers 503.
    const d = await startWorker();
    try {
      const a = await d.connect("ra1");
      await d.d1Outage();
      a.send({ fromUser: "ra1", toUser: "ra2", message: "during" });
      assert.equal(await a.next(), "ok");
      const res = await d.history("ra1");
      assert.equal(res.status, 503);
      assert.equal(res.headers.get("retry-after"), "1");
      assert.equal((await res.json()).error.length > 0, true);
      a.close();
    } finally {
      await d.close();
    }
  });

  test("15: POST /api/blocks answers with the user whose list changed, and the peer", async () => {
    const r = await post(w, "/api/blocks", { user: "bk1", peer: "bk2", blocked: true });
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, { user: "bk1", peer: "bk2", blocked: true });
    const off = await post(w, "/api/blocks", { user: "bk1", peer: "bk2", blocked: false });
    assert.deepEqual(off.body, { user: "bk1", peer: "bk2", blocked: false });
    const self = await post(w, "/api/blocks", { user: "bk1", peer: "bk1", blocked: true });
    assert.deepEqual([self.status, self.body.code], [400, "bad_field"]);
  });

  test("16: a reused Idempotency-Key with another body is refused 422; an identical retry answers the same id", async () => {
    const key = { "idempotency-key": "job-16-sys" };
    const first = await post(w, "/api/sys-msg", { uid: "ik16", type: "a", n: { x: 1, y: 2 } }, key);
    assert.equal(first.status, 200);
    // The same JSON spelled otherwise is the same request.
    const again = await post(w, "/api/sys-msg", '{ "n": {"y":2,"x":1}, "type": "a", "uid": "ik16" }', key);
    assert.deepEqual([again.status, again.body], [200, first.body]);
    const other = await post(w, "/api/sys-msg", { uid: "ik16", type: "b" }, key);
    assert.equal(other.status, 422);
    assert.deepEqual(other.body, { error: other.body.error, code: "idempotency_key_reused", id: null });
    const sys = (await historyOf(w, "ik16")).sys;
    assert.deepEqual(sys.map((m) => [m.id, m.type]), [[first.body.id, "a"]], "stored once, the first");

    // Chats: the sender's object holds the key.
    const ckey = { "idempotency-key": "job-16-usr" };
    const chat = await post(w, "/api/usr-msg", [{ fromUser: "ik16a", toUser: "ik16b", message: "one" }], ckey);
    assert.equal(chat.status, 200);
    const same = await post(w, "/api/usr-msg", [{ fromUser: "ik16a", toUser: "ik16b", message: "one" }], ckey);
    assert.deepEqual(same.body, chat.body);
    const changed = await post(w, "/api/usr-msg", [{ fromUser: "ik16a", toUser: "ik16b", message: "two" }], ckey);
    assert.equal(changed.status, 422);
    assert.deepEqual([changed.body.code, changed.body.ids, changed.body.errors], ["idempotency_key_reused", [null], ["idempotency_key_reused"]]);
    assert.deepEqual((await historyOf(w, "ik16b")).usr.map((m) => m.message), ["one"]);

    // Moderation: an edit's key with another edit.
    const ekey = { "idempotency-key": "job-16-edit" };
    const mid = chat.body.ids[0];
    const edit = await post(w, "/api/edit", { user: "ik16a", mid, body: { message: "fixed" } }, ekey);
    assert.equal(edit.status, 200);
    assert.deepEqual((await post(w, "/api/edit", { user: "ik16a", mid, body: { message: "fixed" } }, ekey)).body, edit.body);
    const edit2 = await post(w, "/api/edit", { user: "ik16a", mid, body: { message: "other" } }, ekey);
    assert.deepEqual([edit2.status, edit2.body.code], [422, "idempotency_key_reused"]);
    assert.equal((await historyOf(w, "ik16b")).usr[0].message, "fixed");
  });

  test("17: every 400 carries a code, the entry's own included", async () => {
    const cases = [
      [await post(w, "/api/sys-msg", "{not json"), "bad_json", undefined],
      [await post(w, "/api/sys-msg", { uid: "a b" }), "bad_field", "uid"],
      [await post(w, "/api/usr-msg", { fromUser: "c1", toUser: "c2", message: "" }), "empty_message", "message"],
      [await post(w, "/api/sys-msg", { uid: "c1" }, { "idempotency-key": "k".repeat(129) }), "bad_field", "Idempotency-Key"],
      [await post(w, "/api/edit", { user: "c1", mid: "nope" }), "bad_field", "mid"],
      [await post(w, "/api/groups", "[1]"), "bad_json", undefined],
      [await post(w, "/api/groups", { owner: "c1", members: ["c2"], group: "gc17" }), null, undefined],
      [await post(w, "/api/groups/gc17/members", { user: "c3", role: "owner" }), "invalid_role", "role"],
      [await call(w, "PUT", "/api/groups/gc17/members/c2", {}), "invalid_role", "role"],
      [await post(w, "/api/groups/gc17/messages", { fromUser: "c1", message: "" }), "empty_message", "message"],
      [await post(w, "/api/groups/gc17/members", { user: "a b" }), "bad_field", "user"],
      [await asUser(w, "c1", "GET", "/v1/history?limit=0"), "bad_field", "limit"],
      [await asUser(w, "c1", "GET", "/v1/history?group=gc17&before=x"), "bad_field", "before"],
      [await asUser(w, "c1", "PUT", "/v1/blocks/c1"), "bad_field", undefined],
      [await asUser(w, "c1", "PUT", "/v1/settings", "nope"), "bad_json", undefined],
    ];
    for (const [i, [r, code, field]] of cases.entries()) {
      if (code === null) {
        assert.equal(r.status, 201, `case ${i}: ${JSON.stringify(r.body)}`);
        continue;
      }
      assert.equal(r.status, 400, `case ${i}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.code, code, `case ${i}: ${JSON.stringify(r.body)}`);
      if (field) assert.equal(r.body.field, field, `case ${i}: ${JSON.stringify(r.body)}`);
    }
    // An upgrade with a bad device (fetch may not send `upgrade`: plain HTTP).
    const ws = await new Promise((resolve, reject) => {
      const headers = { upgrade: "websocket", connection: "upgrade", "sec-websocket-protocol": "chat.v1", "sec-websocket-version": "13", "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==" };
      const req = request(`${w.url}/ws?token=${token("c1")}&device=a%20b`, { headers }, (res) => {
        let text = "";
        res.on("data", (c) => (text += c));
        res.on("end", () => resolve({ status: res.statusCode, body: JSON.parse(text) }));
      });
      req.on("error", reject);
      req.end();
    });
    assert.deepEqual([ws.status, ws.body.code, ws.body.field], [400, "bad_field", "device"]);
  });

  test("18: percent-encoded ids in group paths are decoded", async () => {
    const made = await post(w, "/api/groups", { owner: "pe1", members: ["u@x", "pe2"], group: "g_team" });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    const info = await asUser(w, "pe1", "GET", "/v1/groups/g%5Fteam");
    assert.equal(info.status, 200, JSON.stringify(info.body));
    assert.equal(info.body.group, "g:_team");
    const role = await asUser(w, "pe1", "PUT", "/v1/groups/g%5Fteam/members/u%40x", { role: "admin" });
    assert.equal(role.status, 200, JSON.stringify(role.body));
    const removed = await asUser(w, "pe1", "DELETE", "/v1/groups/g%5Fteam/members/u%40x");
    assert.equal(removed.status, 200, JSON.stringify(removed.body));
    const api = await call(w, "GET", "/api/groups/g%5fteam");
    assert.deepEqual(api.body.members.map((m) => m.user).sort(), ["pe1", "pe2"]);
    const read = await asUser(w, "pe2", "GET", "/v1/groups/g%5Fteam/messages/1/read");
    assert.equal(read.status, 200, JSON.stringify(read.body));
  });
});
