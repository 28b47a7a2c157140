// Presence against the real runtime: watch and its answer, changes pushed
// to live watchers only (after the grace, not on a reconnect within it),
// watches that expire, hide_presence, blocked and stranger watchers seeing
// "never seen", presence in the conversation list, and its cost in hops.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { connectV1, sleep, startWorker, token } from "../harness.mjs";

describe("presence", () => {
  let w;
  // A short grace and watch, so changes and expiries happen within a test.
  before(async () => (w = await startWorker({ bindings: { PRESENCE_GRACE_S: "1", WATCH_TTL_S: "3" } })));
  after(() => w.close());

  const as = (uid, path, init = {}) =>
    w.fetch(path, { ...init, headers: { authorization: `Bearer ${token(uid)}`, ...(init.headers ?? {}) } });
  const talk = async (a, b) => {
    // A conversation between a and b (presence is shown to contacts only).
    const ca = await connectV1(w, a, { device: "talk" });
    assert.equal((await ca.request({ op: "send", to: b, cmid: `${a}-${b}`, body: { message: "hi" } })).op, "sent");
    await ca.close();
  };
  const isPresence = (user) => (f) => f.op === "presence" && f.user === user && f.re === undefined;
  const minute = (t) => t - (t % 60000);

  test("watch answers the presence now; a close is told after the grace, a reconnect within it is not", async () => {
    await talk("pa", "pb");
    await sleep(1500); // pa's own socket above went offline
    const b = await connectV1(w, "pb");
    const a = await connectV1(w, "pa");
    const seen = await a.request({ op: "watch", peer: "pb" });
    assert.equal(seen.op, "presence");
    assert.equal(seen.user, "pb");
    assert.equal(seen.online, true);
    assert.equal(seen.last_seen, minute(seen.last_seen), "rounded to the minute");

    // A reconnect within the grace: no change, no frame.
    await b.close();
    const b2 = await connectV1(w, "pb", { device: "d2" });
    await a.expectNone(isPresence("pb"), 1800);

    // The last socket closes: offline once the grace is over, last seen this minute.
    const closedAt = Date.now();
    await b2.close();
    const off = await a.take(isPresence("pb"), 5000);
    assert.equal(off.online, false);
    assert.ok(off.last_seen <= closedAt && off.last_seen >= minute(closedAt) - 60000, JSON.stringify(off));
    assert.ok(Date.now() - closedAt >= 900, "not before the grace");

    // Back online: told at once (a legacy socket counts too).
    const legacy = await w.connect("pb");
    const on = await a.take(isPresence("pb"));
    assert.equal(on.online, true);
    await Promise.all([a.close(), legacy.close()]);
  });

  test("a change costs one hop per live watcher; an expired watch gets nothing", async () => {
    await talk("pc", "pd");
    const d = await connectV1(w, "pd");
    await sleep(1500);
    const c = await connectV1(w, "pc");
    await c.request({ op: "watch", peer: "pd" });
    const hops = (await w.metrics()).presence_hops;
    await d.close();
    await c.take(isPresence("pd"), 5000);
    assert.equal((await w.metrics()).presence_hops - hops, 1, "one watcher, one hop");

    // Let the watch lapse (WATCH_TTL_S = 3): the next change is not told.
    await sleep(3500);
    const d2 = await connectV1(w, "pd");
    await c.expectNone(isPresence("pd"), 800);
    // Renewed: told again.
    await c.request({ op: "watch", peer: "pd" });
    await d2.close();
    assert.equal((await c.take(isPresence("pd"), 5000)).online, false);
    await c.close();
  });

  test("strangers and blocked users see 'never seen'; so does everyone once it is hidden", async () => {
    await talk("ph", "pi");
    await talk("pj", "ph");
    const h = await connectV1(w, "ph");
    const stranger = await connectV1(w, "pz");
    const hidden = { online: false, last_seen: null };
    const view = async (c, peer) => {
      const { online, last_seen } = await c.request({ op: "watch", peer });
      return { online, last_seen };
    };
    assert.deepEqual(await view(stranger, "ph"), hidden, "no conversation");
    const i = await connectV1(w, "pi");
    assert.equal((await view(i, "ph")).online, true, "a contact");
    const j = await connectV1(w, "pj");
    assert.equal((await h.request({ op: "block", user: "pj" })).op, "ok");
    assert.deepEqual(await view(j, "ph"), hidden, "blocked");

    // hide_presence: ok, a settings frame on every device, and watchers told "never seen".
    const h2 = await connectV1(w, "ph", { device: "d2" });
    assert.deepEqual(h.welcome.settings, { hide_presence: false, group_adds: "everyone" });
    assert.equal((await h.request({ op: "settings", hide_presence: true })).op, "ok");
    for (const d of [h, h2]) assert.deepEqual((await d.take((f) => f.op === "settings")).settings, { hide_presence: true, group_adds: "everyone" });
    const told = await i.take(isPresence("ph"));
    assert.deepEqual({ online: told.online, last_seen: told.last_seen }, hidden);
    assert.deepEqual(await view(i, "ph"), hidden);
    // Changes while hidden are not told.
    await Promise.all([h.close(), h2.close()]);
    await i.expectNone(isPresence("ph"), 1800);
    const again = await connectV1(w, "ph");
    assert.deepEqual(again.welcome.settings, { hide_presence: true, group_adds: "everyone" });

    // Over HTTP: read, change back, and watchers learn the presence again.
    assert.deepEqual(await (await as("ph", "/v1/settings")).json(), { hide_presence: true, group_adds: "everyone" });
    const put = await as("ph", "/v1/settings", { method: "PUT", body: JSON.stringify({ hide_presence: false }) });
    assert.deepEqual([put.status, await put.json()], [200, { hide_presence: false, group_adds: "everyone" }]);
    assert.deepEqual((await again.take((f) => f.op === "settings")).settings, { hide_presence: false, group_adds: "everyone" });
    assert.equal((await i.take(isPresence("ph"))).online, true);
    const bad = await as("ph", "/v1/settings", { method: "PUT", body: JSON.stringify({ hide_presence: "no" }) });
    assert.equal(bad.status, 400);
    assert.equal((await as("ph", "/v1/settings", { method: "DELETE" })).status, 404);
    assert.equal((await w.fetch("/v1/settings")).status, 401);
    const refused = await again.request({ op: "settings", hide_presence: 1 });
    assert.deepEqual([refused.code, refused.field], ["bad_field", "hide_presence"]);
    await Promise.all([again.close(), i.close(), j.close(), stranger.close()]);
  });

  test("the conversation list carries each peer's presence", async () => {
    await talk("pm", "pl"); // pm was online to write
    await talk("pl", "pn"); // pn never was
    await talk("pl", "pq");
    await sleep(1500);
    const q = await connectV1(w, "pq");
    const items = (await (await as("pl", "/v1/conversations")).json()).items;
    const of = (peer) => items.find((c) => c.peer === peer).presence;
    assert.equal(of("pq").online, true);
    assert.deepEqual(of("pn"), { last_seen: null, online: false }, "never seen");
    assert.equal(of("pm").online, false);
    assert.ok(of("pm").last_seen > 0 && of("pm").last_seen === minute(of("pm").last_seen), JSON.stringify(of("pm")));
    await q.close();
  });

  test("presence survives a restart of the runtime: last seen is kept", async () => {
    await talk("ps", "pr");
    await sleep(1500);
    const before = (await (await as("pr", "/v1/conversations")).json()).items[0].presence;
    assert.equal(before.online, false);
    await w.restart();
    const after = (await (await as("pr", "/v1/conversations")).json()).items[0].presence;
    assert.deepEqual(after, before);
  });

  test("a watch of oneself, of a bad id, and faster than the read rate", async () => {
    const c = await connectV1(w, "po");
    const self = await c.request({ op: "watch", peer: "po" });
    assert.equal(self.online, true);
    const bad = await c.request({ op: "watch", peer: "a b" });
    assert.deepEqual([bad.code, bad.field], ["bad_field", "peer"]);
    await c.close();
  });
});
