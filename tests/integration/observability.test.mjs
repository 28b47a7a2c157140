// What an operator sees: the counters every isolate writes to the Analytics
// Engine dataset (captured by a stand-in bound as METRICS), and log lines
// that are JSON objects naming no user, body or token.
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { API_KEY, ROOT, eventually, sleep, startWorker, token } from "../harness.mjs";

/** docs/operations.md's column tables: set -> counter -> 0-based column. */
function columns() {
  const doc = readFileSync(join(ROOT, "docs/operations.md"), "utf8");
  const sets = {};
  for (const section of doc.split("\n### `").slice(1)) {
    const set = section.slice(0, section.indexOf("`"));
    sets[set] = {};
    for (const m of section.matchAll(/^\| double(\d+) \| `(\w+)` \|/gm)) sets[set][m[2]] = Number(m[1]) - 1;
  }
  return sets;
}

/** Sums the captured points' columns per set. */
function totals(points, cols) {
  const out = {};
  for (const p of points) {
    const set = p.blobs[0];
    out[set] ??= {};
    for (const [name, k] of Object.entries(cols[set])) out[set][name] = (out[set][name] ?? 0) + p.doubles[k];
  }
  return out;
}

async function chat(a, from, to, message) {
  a.send({ fromUser: from, toUser: to, message });
  assert.equal(await a.next(), "ok");
}

describe("fleet metrics", () => {
  const workers = [];
  after(() => Promise.all(workers.map((w) => w.close())));

  test("every counter reaches the dataset once, in the column docs/operations.md gives it", async () => {
    const w = await startWorker({ metrics: true, bindings: { METRICS_FLUSH_S: "0", BODY_MAX_BYTES: "1024" } });
    workers.push(w);
    const cols = columns();
    assert.deepEqual(Object.keys(cols).sort(), ["billable", "events", "refusals"]);
    const [a, b] = [await w.connect(1), await w.connect(2)];
    for (let i = 0; i < 5; i++) await chat(a, 1, 2, `m${i}`);
    for (let i = 0; i < 5; i++) assert.equal(JSON.parse(await b.next()).message, `m${i}`);
    const big = await w.api("/api/sys-msg", { toUser: 2, message: "x".repeat(2000) });
    assert.equal(big.status, 413);
    // Let the archive pass and its alarm run (they count too), then flush:
    // the entry writes what is due before it answers /api/metrics.
    await sleep(300);
    const counts = await w.metrics();
    const points = await eventually(async () => {
      const p = await w.dataPoints();
      return totals(p, cols).billable?.worker_requests === counts.worker_requests && p;
    });
    for (const p of points) {
      assert.ok(cols[p.blobs[0]], `a point of an unknown set: ${JSON.stringify(p)}`);
      assert.deepEqual(p.indexes, [p.blobs[0]]);
      assert.equal(p.doubles.length, Object.keys(cols[p.blobs[0]]).length);
    }
    const sum = totals(points, cols);
    // Nothing counted twice, nothing lost: the points add up to the
    // isolate's own counters as of the last flush.
    assert.ok(counts.messages_stored >= 5);
    assert.equal(sum.billable.messages_stored, counts.messages_stored);
    assert.equal(sum.billable.d1_queries, counts.d1_queries);
    assert.ok(counts.refused_body >= 1);
    assert.equal(sum.refusals.refused_body, counts.refused_body);
    assert.equal(sum.refusals.refused_rate, counts.refused_rate);
  });

  test("an isolate writes at most one set of points per METRICS_FLUSH_S", async () => {
    const w = await startWorker({ metrics: true });
    workers.push(w);
    for (let i = 0; i < 20; i++) assert.equal((await w.fetch("/v1/settings", { headers: { authorization: `Bearer ${token(5)}` } })).status, 200);
    await sleep(200);
    const points = await w.dataPoints();
    assert.ok(points.length >= 1, "the first event flushes");
    assert.ok(points.length <= 3, `one flush of at most 3 sets within 10 s, got ${points.length} points`);
  });
});

describe("log lines", () => {
  const workers = [];
  after(() => Promise.all(workers.map((w) => w.close())));

  /** The worker's lines (console output), parsed; fails on any that is not one JSON object. */
  function lines(w) {
    const out = [];
    for (const line of w.output.split("\n")) {
      const m = /^(error|warn|info|log|debug): (.*)$/.exec(line);
      if (!m) continue;
      const parsed = JSON.parse(m[2]);
      assert.equal(typeof parsed.event, "string", line);
      assert.match(parsed.request_id, /^[0-9a-f]{16}$/, line);
      out.push(parsed);
    }
    return out;
  }

  test("failures are logged as JSON with an event, a request id and the user as a keyed hash only", async () => {
    const w = await startWorker();
    workers.push(w);
    const [alice, bob, body] = ["obs-alice-5d1", "obs-bob-e93", "body-text-77c"];
    const a = await w.connect(alice);
    await w.d1Outage();
    // Bob is offline: whether he got it since is D1's to tell, and D1 is down.
    await chat(a, alice, bob, body);
    await sleep(300);
    const res = await w.history(alice);
    assert.equal(res.status, 503);
    const logged = await eventually(() => {
      const l = lines(w);
      return l.some((x) => x.event === "history_unavailable") && l.some((x) => x.event === "archive_failed") && l;
    });
    const key = createHmac("sha256", API_KEY).update("edge-chat log key").digest();
    const tag = (uid) => createHmac("sha256", key).update(uid).digest().subarray(0, 8).toString("hex");
    const unavailable = logged.find((x) => x.event === "history_unavailable");
    assert.equal(unavailable.level, "error");
    assert.equal(unavailable.user, tag(alice));
    assert.ok(logged.filter((x) => x.event === "archive_failed").every((x) => x.attempt >= 1 && x.retry_ms > 0));
    await w.d1Restore();
    for (const secret of [alice, bob, body, token(alice), API_KEY]) assert.ok(!w.output.includes(secret), `the logs name ${secret}`);
    a.close();
  });

  test("a broken deploy is logged once per request, as JSON", async () => {
    const w = await startWorker({ bindings: { SEND_RATE: "lots" } });
    workers.push(w);
    const res = await w.fetch("/ws/history", { headers: { authorization: `Bearer ${token(1)}` } });
    assert.equal(res.status, 500);
    const line = await eventually(() => lines(w).find((x) => x.event === "misconfigured"));
    assert.match(line.error, /SEND_RATE/);
  });
});
