// Security against the real runtime: a user reaches only their own object and
// data, cannot speak as someone else, internal routes are unreachable, and no
// token, secret or message body reaches the logs.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { connectV1, eventually, openClient, startWorker, token } from "../harness.mjs";

const now = () => Math.floor(Date.now() / 1000);

describe("isolation between users", () => {
  let w;
  before(async () => (w = await startWorker()));
  after(() => w.close());

  const get = (path, uid) => w.fetch(path, { headers: { authorization: `Bearer ${token(uid)}` } });

  test("every client route refuses a bad token with 401", async () => {
    const [h, p] = token("victim").split(".");
    const bad = {
      "alg none": `${Buffer.from('{"alg":"none","typ":"JWT"}').toString("base64url")}.${p}.`,
      "alg HS512": token("victim", { header: { alg: "HS512", typ: "JWT" } }),
      "alg RS256": token("victim", { header: { alg: "RS256", typ: "JWT" } }),
      "no exp": token("victim", { claims: { sub: "victim" } }),
      expired: token("victim", { exp: now() - 1 }),
      "wrong secret": token("victim", { secret: "guess" }),
      "signature of another token": `${h}.${p}.${token("other").split(".")[2]}`,
    };
    for (const path of ["/ws/history", "/v1/history", "/v1/conversations"]) {
      for (const [name, t] of Object.entries(bad)) {
        const r = await w.fetch(path, { headers: { authorization: `Bearer ${t}` } });
        assert.equal(r.status, 401, `${path} with ${name}`);
        const q = await w.fetch(`${path}?token=${encodeURIComponent(t)}`);
        assert.equal(q.status, 401, `${path}?token= with ${name}`);
      }
    }
  });

  test("the objects' internal routes cannot be reached from outside", async () => {
    const internal = ["/deliver", "/send", "/receipt", "/typing", "/connect", "/history", "/conversations"];
    for (const path of internal) {
      for (const method of ["GET", "POST"]) {
        const r = await w.fetch(`${path}?uid=victim&owner=victim`, {
          method,
          headers: { authorization: `Bearer ${token("mallory")}` },
          body: method === "POST" ? '{"fromUser":"victim","toUser":"mallory","message":"x"}' : undefined,
        });
        assert.equal(r.status, 404, `${method} ${path}`);
      }
    }
  });

  test("parameters naming another user are ignored: each reads only their own log", async () => {
    assert.equal((await w.api("/api/usr-msg", { fromUser: "alice", toUser: "victim", message: "secret for victim" })).status, 200);
    for (const path of ["/ws/history", "/v1/history", "/v1/conversations"]) {
      for (const q of ["uid=victim", "owner=victim", "user=victim", "peer=alice"]) {
        const text = await (await get(`${path}?${q}`, "mallory")).text();
        assert.doesNotMatch(text, /secret for victim/, `${path}?${q}`);
      }
      assert.match(await (await get(path, "victim")).text(), /secret for victim/, `${path} as the victim`);
    }
    // Over the socket too: a v1 history request with another user's id.
    const m = await connectV1(w, "mallory");
    const page = await m.request({ op: "history", uid: "victim", owner: "victim", peer: "alice" });
    assert.deepEqual(page.items, []);
    // An upgrade naming another user is the token's user's socket.
    const sock = await openClient(w.wsUrl(`/ws?uid=victim&token=${token("mallory")}&uid=victim`));
    await w.api("/api/sys-msg", { uid: "victim", note: "for the victim only" });
    await w.api("/api/sys-msg", { uid: "mallory", note: "for mallory" });
    // What arrives first is mallory's own message: the victim's never came.
    assert.equal((await sock.nextJson()).note, "for mallory");
    await Promise.all([m.close(), sock.close()]);
  });

  test("a v1 send cannot forge its sender or a system message", async () => {
    const r = await connectV1(w, "bob");
    const m = await connectV1(w, "mallory2");
    const sent = await m.request({ op: "send", to: "bob", cmid: "f1", body: { message: "hi", fromUser: "alice", type: "sys", id: "x", time: "then" } });
    assert.equal(sent.op, "sent");
    const got = await r.msg();
    assert.equal(got.kind, "in");
    assert.equal(got.peer, "mallory2");
    assert.equal(got.body.fromUser, "mallory2");
    assert.equal(got.body.type, undefined);
    assert.equal(got.body.id, got.mid);
    assert.notEqual(got.body.time, "then");
    await Promise.all([r.close(), m.close()]);
  });

  test("a read mark changes only the reader's own conversation", async () => {
    const victim = await connectV1(w, "carol");
    const mallory = await connectV1(w, "mallory3");
    // The victim has one unread message from dave.
    await w.api("/api/usr-msg", { fromUser: "dave", toUser: "carol", message: "unread" });
    await victim.msg();
    const convs = async () => (await (await get("/v1/conversations", "carol")).json()).items;
    await eventually(async () => (await convs()).find((c) => c.peer === "dave")?.unread === 1);
    // Mallory marks "dave" read up to a seq far ahead: her own log only.
    const r = await mallory.request({ op: "read", peer: "dave", up_to: 1000 });
    assert.deepEqual([r.op, r.code, r.field], ["error", "bad_field", "peer"], "no such conversation in her log");
    assert.equal((await convs()).find((c) => c.peer === "dave").unread, 1);
    await victim.expectNone((f) => f.op === "unread");
    await Promise.all([victim.close(), mallory.close()]);
  });
});

describe("dev tokens", () => {
  test("/dev/token exists only with DEV_TOKENS=1, and mints a token for that user alone", async () => {
    const off = await startWorker();
    try {
      const r = await off.fetch("/dev/token?user=alice");
      assert.equal(r.status, 404);
      assert.doesNotMatch(await r.text(), /eyJ/);
    } finally {
      await off.close();
    }
    const on = await startWorker({ bindings: { DEV_TOKENS: "1" } });
    try {
      assert.equal((await on.fetch("/dev/token?user=a%20b")).status, 400);
      const { token: t, user, exp } = await (await on.fetch("/dev/token?user=alice")).json();
      assert.equal(user, "alice");
      assert.ok(exp > now() && exp <= now() + 3600);
      const c = await connectV1(on, "alice", { tokenValue: t });
      assert.equal(c.welcome.user, "alice");
      await c.close();
    } finally {
      await on.close();
    }
  });
});

describe("logs", () => {
  const JWT_SECRET = "sekret-jwt-7d1f9c";
  const API_KEY = "sekret-api-4b2e8a";
  let w;
  before(async () => (w = await startWorker({ bindings: { JWT_SECRET, API_KEY, FAULTS: "1" } })));
  after(() => w.close());

  test("no token, secret or message body appears in what the runtime prints, errors included", async () => {
    const tokens = ["la", "lb"].map((u) => token(u, { secret: JWT_SECRET }));
    const a = await w.connect("la", { tokenValue: tokens[0] });
    const b = await connectV1(w, "lb", { tokenValue: tokens[1] });
    // D1 goes away, so archiving fails and logs its errors.
    await w.d1Outage();
    a.send({ fromUser: "la", toUser: "lb", message: "body-marker-legacy" });
    assert.equal(await a.next(), "ok");
    await b.request({ op: "send", to: "la", cmid: "m1", body: { message: "body-marker-v1" } });
    assert.equal((await w.api("/api/sys-msg", { uid: "lb", note: "body-marker-sys" }, API_KEY)).status, 200);
    // Refusals and errors of every kind.
    a.send("not json");
    await a.next();
    await w.api("/api/sys-msg", { uid: "lb" }, "sekret-wrong-key");
    await w.fetch(`/v1/history?token=${tokens[0]}x`);
    // Served from lb's own log: D1 is not needed for the newest page.
    const h = await w.fetch("/v1/history", { headers: { authorization: `Bearer ${tokens[1]}` } });
    assert.equal(h.status, 200);
    // The archive pass fails (D1 is gone) before the panic, which would cut
    // a pass still waiting for its writer short.
    await eventually(() => /"event":"archive_failed"/.test(w.output), 20000);
    b.send("__panic");
    await eventually(() => /fault injected/.test(w.output), 20000);
    await w.d1Restore();
    await Promise.all([a.close(), b.close()]);
    for (const secret of [JWT_SECRET, API_KEY, "sekret-wrong-key", ...tokens, ...tokens.map((t) => t.split(".")[2])]) {
      assert.ok(!w.output.includes(secret), `the logs carry ${secret.slice(0, 12)}…`);
    }
    assert.doesNotMatch(w.output, /body-marker/);
  });
});
