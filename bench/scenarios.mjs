// Benchmark scenarios. Each takes a started target and returns plain numbers.
import { execFileSync } from "node:child_process";
import { client as openClient, inspect, LEGACY_PROTO, rssBytes } from "./runtime.mjs";
import { ROOT } from "../tests/harness.mjs";

const chat = LEGACY_PROTO.encode;
const protoOf = (target) => target.proto ?? LEGACY_PROTO;
const client = (url, target) => openClient(url, target ? protoOf(target).protocols : undefined);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** A sends `n` messages back to back to B; msg/s from first send to last receipt and last reply. */
export async function pairThroughput(target, { n = 5000, warmup = 300, pair = 0 } = {}) {
  const p = protoOf(target);
  const [from, to] = [String(1000 + 2 * pair), String(1001 + 2 * pair)];
  const a = await client(target.wsUrl(from), target);
  const b = await client(target.wsUrl(to), target);
  await Promise.all([a.until(p.initial), b.until(p.initial)]);
  const aBase = a.count;
  const bBase = b.count;
  for (let i = 0; i < warmup; i++) a.send(p.encode(from, to, i));
  await Promise.all([a.until(aBase + warmup * p.senderFrames), b.until(bBase + warmup)]);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) a.send(p.encode(from, to, warmup + i));
  await Promise.all([a.until(aBase + (warmup + n) * p.senderFrames), b.until(bBase + warmup + n)]);
  const ms = performance.now() - t0;
  await Promise.all([a.close(), b.close()]);
  return { n, ms, msgPerSec: (n / ms) * 1000, errors: a.errors };
}

/** One message at a time: latency from send to B's receipt, in ms. */
export async function pairLatency(target, { n = 1000, warmup = 100 } = {}) {
  const p = protoOf(target);
  const [from, to] = ["2000", "2001"];
  const a = await client(target.wsUrl(from), target);
  const b = await client(target.wsUrl(to), target);
  await Promise.all([a.until(p.initial), b.until(p.initial)]);
  const aBase = a.count;
  const samples = [];
  for (let i = 0; i < warmup + n; i++) {
    const t0 = performance.now();
    const got = b.until(b.count + 1);
    a.send(p.encode(from, to, i));
    await got;
    if (i >= warmup) samples.push(performance.now() - t0);
  }
  await a.until(aBase + (warmup + n) * p.senderFrames);
  await Promise.all([a.close(), b.close()]);
  samples.sort((x, y) => x - y);
  return { n, p50: percentile(samples, 50), p99: percentile(samples, 99), p999: percentile(samples, 99.9), samples };
}

/** `senders` users each send `each` messages back to back to one user, all at once. */
export async function fanIn(target, { senders = 100, each = 50 } = {}) {
  const to = "3000";
  const b = await client(target.wsUrl(to));
  const clients = await Promise.all(Array.from({ length: senders }, (_, i) => client(target.wsUrl(String(3001 + i)))));
  const total = senders * each;
  const t0 = performance.now();
  clients.forEach((c, i) => {
    for (let k = 0; k < each; k++) c.send(chat(String(3001 + i), to, k));
  });
  await Promise.all([b.until(total), ...clients.map((c) => c.until(each))]);
  const ms = performance.now() - t0;
  const errors = clients.reduce((s, c) => s + c.errors, 0);
  await Promise.all([b.close(), ...clients.map((c) => c.close())]);
  return { senders, each, total, ms, msgPerSec: (total / ms) * 1000, errors };
}

/** `pairs` pairs (2 × pairs users) each send `each` messages back to back, all at once. */
export async function manyPairs(target, { pairs = 100, each = 50 } = {}) {
  const ends = await Promise.all(
    Array.from({ length: pairs }, async (_, p) => {
      const [from, to] = [String(4000 + 2 * p), String(4001 + 2 * p)];
      return { from, to, a: await client(target.wsUrl(from)), b: await client(target.wsUrl(to)) };
    }),
  );
  const t0 = performance.now();
  for (const e of ends) for (let k = 0; k < each; k++) e.a.send(chat(e.from, e.to, k));
  await Promise.all(ends.flatMap((e) => [e.a.until(each), e.b.until(each)]));
  const ms = performance.now() - t0;
  const errors = ends.reduce((s, e) => s + e.a.errors, 0);
  await Promise.all(ends.flatMap((e) => [e.a.close(), e.b.close()]));
  return { pairs, users: 2 * pairs, total: pairs * each, ms, msgPerSec: ((pairs * each) / ms) * 1000, errors };
}

/** `n` messages queued for an offline user (backend API, 1000 per call); then the user connects. */
export async function backlog(target, { n = 10000 } = {}) {
  const uid = "5000";
  const tq = performance.now();
  for (let i = 0; i < n; i += 1000) {
    const batch = Array.from({ length: Math.min(1000, n - i) }, (_, k) => ({ uid, type: "notice", n: i + k }));
    const r = await target.api("/api/sys-msg", batch);
    if (r.status !== 200) throw new Error(`queueing failed: ${r.status} ${await r.text()}`);
  }
  const queueMs = performance.now() - tq;
  const t0 = performance.now();
  const b = await client(target.wsUrl(uid));
  const openMs = performance.now() - t0;
  await b.until(n);
  const ms = performance.now() - t0;
  await b.close();
  return { n, queueMs, openMs, ms };
}

/**
 * History of a 100,000-message conversation, built through the backend API
 * (1,000 chats per call, alternating sides) on a runtime whose logs keep
 * `LOG_CAP` 1,000 entries, so pages past the newest thousand come from D1
 * (written by the real archive path). First page and page 100, with query
 * plans, rows read per page, and the layout printed by
 * `cargo run --example history_sql`.
 */
export async function historyPaging(target, { rows = 100000, samples = 20 } = {}) {
  const owner = "h1";
  const peer = "h2";
  // Both online, so nothing waits in a queue (QUEUE_MAX follows LOG_CAP).
  const sockets = [await client(target.wsUrl(owner), target), await client(target.wsUrl(peer), target)];
  for (let start = 0; start < rows; start += 1000) {
    const n = Math.min(1000, rows - start);
    const [from, to] = (start / 1000) % 2 === 0 ? [owner, peer] : [peer, owner];
    const batch = Array.from({ length: n }, (_, i) => ({ fromUser: from, toUser: to, message: `history message ${start + i + 1}` }));
    const r = await target.api("/api/usr-msg", batch);
    if (r.status !== 200) throw new Error(`usr-msg failed: ${r.status} ${(await r.text()).slice(0, 200)}`);
  }
  await Promise.all(sockets.map((c) => c.until(rows / 2)));
  await Promise.all(sockets.map((c) => c.close()));
  // Every row handed to the writers and written (the senders' passes).
  await sleep((target.archiveDelayMs ?? 500) + 3000);
  const shards = (await target.worker.shards()).length;
  const layout = JSON.parse(
    execFileSync("cargo", ["run", "--quiet", "--example", "history_sql", "--", String(shards), String(Date.now()), "30"], { cwd: ROOT }).toString(),
  );
  const db = (await target.worker.shards())[layout.shard];
  const page100 = rows - 99 * 50 + 1;
  const time = async (params) => {
    const lat = [];
    for (let i = 0; i < samples; i++) {
      const t0 = performance.now();
      const r = await target.worker.history(owner, params);
      const body = await r.json();
      lat.push(performance.now() - t0);
      if (r.status !== 200 || body.usr.length !== 50) throw new Error(`bad page: ${r.status}`);
    }
    lat.sort((a, b) => a - b);
    return { p50: percentile(lat, 50), p99: percentile(lat, 99) };
  };
  const readPerPage = async (params) => {
    const read0 = (await target.metrics()).d1_rows_read;
    await target.worker.history(owner, params);
    return (await target.metrics()).d1_rows_read - read0;
  };
  const rowsReadPerPage = { first: await readPerPage({ limit: 50 }), page100: await readPerPage({ limit: 50, before: page100 }) };
  const result = {
    rows,
    rowsReadPerPage,
    first: await time({ limit: 50 }),
    page100: await time({ limit: 50, before: page100 }),
    firstPeer: await time({ limit: 50, peer }),
    page100Peer: await time({ limit: 50, peer, before: page100 }),
    plans: {},
  };
  for (const s of layout.pages) {
    const plan = await db.prepare(`EXPLAIN QUERY PLAN ${s.sql}`).bind(...s.binds).all();
    result.plans[s.name] = plan.results.map((r) => r.detail);
  }
  return result;
}

/** Opens `n` idle sockets (spread over users, `perUser` each); setup rate and memory per socket. */
export async function idleConnections(target, { n = 1000, perUser = 4, parallel = 50 } = {}) {
  const rss0 = rssBytes(target.pid);
  const open = [];
  const t0 = performance.now();
  for (let i = 0; i < n; i += parallel) {
    const batch = Array.from({ length: Math.min(parallel, n - i) }, (_, k) => client(target.wsUrl(String(6000 + Math.floor((i + k) / perUser)))));
    open.push(...(await Promise.all(batch)));
  }
  const ms = performance.now() - t0;
  await sleep(1000);
  const rss1 = rssBytes(target.pid);
  // Heartbeats are answered by the runtime: the objects must not see them.
  const before = await target.metrics();
  for (const c of open) c.send("heartbeat");
  await Promise.all(open.map((c) => c.until(1)));
  const after = await target.metrics();
  await Promise.all(open.map((c) => c.close()));
  return {
    n,
    ms,
    perSec: (n / ms) * 1000,
    rssBeforeMB: rss0 / 2 ** 20,
    rssAfterMB: rss1 / 2 ** 20,
    bytesPerConnection: (rss1 - rss0) / n,
    heartbeats: n,
    heartbeatWakeups: after.do_ws_messages - before.do_ws_messages,
  };
}

/** Rounds of pair traffic; after each, workerd RSS, V8 heap after a forced GC, wasm memory. */
export async function memoryOverTime(target, { rounds = 10, n = 5000 } = {}) {
  const cdp = await inspect(target.inspectorPort);
  const series = [];
  for (let r = 1; r <= rounds; r++) {
    const thr = await pairThroughput(target, { n, warmup: 0, pair: 10 + r });
    await sleep(700); // let the archive alarm run
    const heap = await cdp.heapAfterGc(() => target.metrics());
    const m = await target.metrics();
    series.push({ round: r, msgPerSec: thr.msgPerSec, rssMB: rssBytes(target.pid) / 2 ** 20, heapMB: heap / 2 ** 20, wasmMB: m.wasm_memory_bytes / 2 ** 20 });
  }
  cdp.close();
  return series;
}

/** Counters of billable operations over one pair run, per message stored. */
export async function billableCounts(target, { n = 5000 } = {}) {
  // Earlier scenarios' archive passes (the backlog's replay re-archives its
  // 10,000 entries) land within one archive delay: let them pass first.
  await sleep((target.archiveDelayMs ?? 500) + 3000);
  const before = await target.metrics();
  const thr = await pairThroughput(target, { n, warmup: 0, pair: 50 });
  await sleep((target.archiveDelayMs ?? 500) + 1500); // the archive alarm writes the last batch
  const after = await target.metrics();
  const diff = Object.fromEntries(Object.keys(after).map((k) => [k, after[k] - (before[k] ?? 0)]));
  return { n, msgPerSec: thr.msgPerSec, counts: diff };
}

/**
 * Realistic chat: `pairs` pairs, each user sending one legacy chat to its peer
 * every `minMs`–`maxMs` (uniformly at random) for `seconds`. With `offline`,
 * only one side of each pair sends and the recipients connect after the
 * senders stop, so everything goes through the offline queue. Every message
 * must be answered `ok` and delivered; the counters of billable operations
 * (after the archive alarms wrote the last batches) are returned per message.
 * With `prefill`, every user's log first gets that many system messages
 * (delivered and archived before counting starts), so a run with a small
 * LOG_CAP measures the steady state in which every new entry prunes an old one.
 */
export async function sparseTraffic(target, { pairs = 100, seconds = 30, minMs = 1000, maxMs = 3000, offline = false, base = 6000, prefill = 0, warm = true } = {}) {
  const users = Array.from({ length: pairs }, (_, p) => [String(base + 2 * p), String(base + 2 * p + 1)]);
  const open = (uid) => client(target.wsUrl(uid), target);
  // Users who have used the service before: each one's object and tables
  // exist (created once in a user's lifetime, counted apart as `setup`).
  let setup = null;
  if (warm) {
    const m0 = await target.metrics();
    const first = await Promise.all(users.flat().map(open));
    await Promise.all(first.map((c) => c.close()));
    const m1 = await target.metrics();
    setup = { users: 2 * pairs, sqlRowsWrittenPerUser: (m1.sql_rows_written - m0.sql_rows_written) / (2 * pairs) };
  }
  let before = await target.metrics();
  const ends = await Promise.all(
    users.map(async ([x, y]) => ({ x, y, cx: await open(x), cy: offline ? null : await open(y), sentX: 0, sentY: 0 })),
  );
  if (prefill) {
    // Delivered live (to the online users), so no queue bound is in the way.
    const items = users.flat().flatMap((uid) => Array.from({ length: prefill }, (_, n) => ({ uid, type: "prefill", n })));
    for (let i = 0; i < items.length; i += 1000) {
      const r = await target.api("/api/sys-msg", items.slice(i, i + 1000));
      if (r.status !== 200) throw new Error(`prefill failed: ${r.status} ${(await r.text()).slice(0, 200)}`);
    }
    await Promise.all(ends.flatMap((e) => [e.cx.until(prefill), e.cy?.until(prefill)]));
    await sleep((target.archiveDelayMs ?? 500) + 2000); // archived, pruned: the steady state
    before = await target.metrics();
  }
  for (const e of ends) [e.bx, e.by] = [e.cx.count, e.cy?.count ?? 0];
  const deadline = performance.now() + seconds * 1000;
  const next = () => minMs + Math.random() * (maxMs - minMs);
  const talk = async (e, side) => {
    // Staggered starts, as real users are.
    await sleep(Math.random() * maxMs);
    while (performance.now() < deadline) {
      if (side === "x") e.cx.send(chat(e.x, e.y, e.sentX++));
      else e.cy.send(chat(e.y, e.x, e.sentY++));
      await sleep(next());
    }
  };
  await Promise.all(ends.flatMap((e) => (offline ? [talk(e, "x")] : [talk(e, "x"), talk(e, "y")])));
  // Each user's frames: an `ok` per own send, plus the peer's messages.
  // A lost message shows as `delivered` < `total`, not as a hang.
  const settle = (waits) => Promise.race([Promise.all(waits), sleep(60_000)]);
  await settle(ends.flatMap((e) => (offline ? [e.cx.until(e.bx + e.sentX)] : [e.cx.until(e.bx + e.sentX + e.sentY), e.cy.until(e.by + e.sentY + e.sentX)])));
  if (offline) {
    for (const e of ends) e.cy = await open(e.y);
    await settle(ends.map((e) => e.cy.until(e.sentX)));
  }
  const total = ends.reduce((s, e) => s + e.sentX + e.sentY, 0);
  const errors = ends.reduce((s, e) => s + e.cx.errors + (e.cy?.errors ?? 0), 0);
  // Frames that are messages (not the sender's own replies).
  const delivered = ends.reduce((s, e) => s + (e.cx.count - e.bx - e.sentX) + (e.cy.count - e.by - (offline ? 0 : e.sentY)), 0);
  await Promise.all(ends.flatMap((e) => [e.cx.close(), e.cy.close()]));
  // The archive alarms hand in the last batches; the writers flush them.
  await sleep((target.archiveDelayMs ?? 500) + 3000);
  const after = await target.metrics();
  const counts = Object.fromEntries(Object.keys(after).map((k) => [k, after[k] - (before[k] ?? 0)]));
  const perMsg = Object.fromEntries(Object.entries(counts).map(([k, v]) => [k, v / total]));
  return { pairs, seconds, offline, prefill, warm, setup, total, delivered, errors, counts, perMsg };
}

/** Time for a freshly started runtime to answer its first upgrade. */
export async function coldStart(start) {
  const t0 = performance.now();
  const target = await start();
  const ready = performance.now() - t0;
  const t1 = performance.now();
  const c = await client(target.wsUrl("7000"));
  const firstUpgradeMs = performance.now() - t1;
  await c.close();
  await target.close();
  return { readyMs: ready, firstUpgradeMs };
}
