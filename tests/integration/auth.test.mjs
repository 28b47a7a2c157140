// Authentication and configuration: who may reach a user's object, and what
// a broken deploy answers.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { API_KEY, openClient, startWorker, token } from "../harness.mjs";

const now = () => Math.floor(Date.now() / 1000);

describe("client authentication", () => {
  let w;
  before(async () => (w = await startWorker()));
  after(() => w.close());

  test("healthz needs no credentials", async () => {
    const r = await w.fetch("/healthz");
    assert.equal(r.status, 200);
  });

  const refused = {
    "no token": null,
    "malformed token": "not-a-jwt",
    "wrong secret": token("1", { secret: "other" }),
    "alg none": (() => {
      const [h, p] = token("1").split(".");
      return `${Buffer.from('{"alg":"none"}').toString("base64url")}.${p}.`;
    })(),
    "alg HS512": token("1", { header: { alg: "HS512" } }),
    expired: token("1", { exp: now() - 1 }),
    "no exp": token("1", { claims: { sub: "1" } }),
    "sub not a valid id": token("a b"),
    "numeric sub": token("1", { claims: { sub: 1, exp: now() + 60 } }),
  };

  for (const [name, t] of Object.entries(refused)) {
    test(`upgrade refused with 401 and a JSON error: ${name}`, async () => {
      const url = w.wsUrl(t === null ? "/ws" : `/ws?token=${encodeURIComponent(t)}`);
      const err = await openClient(url).then(
        (c) => (c.close(), assert.fail("the socket opened")),
        (e) => e,
      );
      assert.equal(err.status, 401);
      const body = JSON.parse(err.body);
      assert.equal(typeof body.error, "string");
      if (t) assert.ok(!err.body.includes(t), "the error must not echo the token");
    });
  }

  test("a refused upgrade over a real socket never opens", async () => {
    await assert.rejects(w.connect("1", { tokenValue: token("1", { exp: now() - 5 }) }), (e) => e.status === 401 && /expired/.test(e.body));
  });

  test("the token may come in the Authorization header", async () => {
    const r = await w.fetch("/ws/history", { headers: { authorization: `Bearer ${token("7")}` } });
    assert.equal(r.status, 200);
    const bad = await w.fetch("/ws/history", { headers: { authorization: `Bearer ${token("7", { secret: "x" })}` } });
    assert.equal(bad.status, 401);
  });

  test("a GET /ws without an upgrade is refused", async () => {
    const r = await w.fetch(`/ws?token=${token("1")}`);
    assert.equal(r.status, 426);
  });
});

describe("backend authentication", () => {
  let w;
  before(async () => (w = await startWorker()));
  after(() => w.close());

  for (const [name, key] of [["no key", null], ["wrong key", API_KEY + "x"], ["a prefix of the key", API_KEY.slice(0, 4)]]) {
    test(`API refused with 401: ${name}`, async () => {
      const r = await w.api("/api/sys-msg", { uid: "1", type: "x" }, key);
      assert.equal(r.status, 401);
      assert.match((await r.json()).error, /API key/);
    });
  }

  test("a client token is not an API key", async () => {
    const r = await w.fetch("/api/sys-msg", { method: "POST", headers: { authorization: `Bearer ${token("1")}` }, body: "{}" });
    assert.equal(r.status, 401);
  });

  test("unknown routes are 404 JSON", async () => {
    const r = await w.fetch("/nope");
    assert.equal(r.status, 404);
    assert.equal(typeof (await r.json()).error, "string");
  });
});

describe("missing secrets", () => {
  for (const missing of ["JWT_SECRET", "API_KEY"]) {
    test(`without ${missing} every route but healthz answers 500 naming it`, async () => {
      const w = await startWorker({ omit: [missing] });
      try {
        for (const [path, init] of [
          [`/ws/history?token=${token("1")}`, undefined],
          ["/api/sys-msg", { method: "POST", headers: { authorization: `Bearer ${API_KEY}` }, body: '{"uid":"1"}' }],
        ]) {
          const r = await w.fetch(path, init);
          assert.equal(r.status, 500);
          assert.match((await r.json()).error, new RegExp(missing));
        }
        assert.equal((await w.fetch("/healthz")).status, 200);
      } finally {
        await w.close();
      }
    });
  }
});

describe("metrics", () => {
  let w;
  before(async () => (w = await startWorker()));
  after(() => w.close());

  test("counters need the API key and count what happened", async () => {
    assert.equal((await w.fetch("/api/metrics")).status, 401);
    const get = async () => (await w.fetch("/api/metrics", { headers: { authorization: `Bearer ${API_KEY}` } })).json();
    const before = await get();
    const a = await w.connect("901");
    const b = await w.connect("902");
    a.send({ fromUser: 901, toUser: 902, message: "counted" });
    assert.equal(await a.next(), "ok");
    await b.next();
    const after = await get();
    assert.equal(after.messages_stored - before.messages_stored, 1);
    assert.equal(after.do_ws_messages - before.do_ws_messages, 1);
    assert.ok(after.sql_rows_written - before.sql_rows_written >= 2, "both logs written");
    assert.ok(after.frames_out - before.frames_out >= 2, "delivery and ok");
    await Promise.all([a.close(), b.close()]);
  });
});
