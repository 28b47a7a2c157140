// Large groups (issue 25, part 1): one group of 1,000 (or 10,000) members
// with 10 % or 100 % of them online, counted in the real runtime.
//
// The group is created by the backend (`POST /api/groups`); the online
// members hold one v1 socket each, acking like the shipped client
// (`bench/groups.mjs`'s `member`). A first message, not counted, creates
// every member's object (as for users who have used the service). Then one
// online member sends `messages` group messages over its socket, keeping
// `window` sends outstanding. Measured:
//
// - sent/s: sends answered per second;
// - msg/s to every online member, and to every member's object (the fan-out
//   is over when the group's delivery counter stops moving for 1 s);
// - latency to the LAST online member's socket, per message (p50, p99);
// - per message, from `/api/metrics` deltas: DO requests (fetches + alarm
//   runs), DO rows written (SQLite rows + alarms set), deliveries;
// - $ per million messages at list prices (`bench/prices.mjs`; duration
//   modelled as in `bench/groups.mjs`), and per member.
//
// `node bench/large-groups.mjs [--members=1000,10000] [--online=10,100]
// [--messages=20] [--window=4] [--out=FILE]`.
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { costPerMillion } from "./prices.mjs";
import { member } from "./groups.mjs";
import { metricsDelta, pct, startRust } from "./runtime.mjs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const diff = metricsDelta;

/** Waits until the group's deliveries stop moving for `quietMs`: the time of the last move. */
async function fanOutDone(t, quietMs = 1000, timeoutMs = 600_000) {
  let last = (await t.metrics()).group_deliveries ?? 0;
  let movedAt = performance.now();
  const until = performance.now() + timeoutMs;
  while (performance.now() - movedAt < quietMs && performance.now() < until) {
    await sleep(200);
    const now = (await t.metrics()).group_deliveries ?? 0;
    if (now !== last) {
      last = now;
      movedAt = performance.now();
    }
  }
  return movedAt;
}

export async function largeGroup({ members, onlinePct, messages = 20, window = 4, storageDir }) {
  const t = await startRust({ storageDir, bindings: { GROUP_MAX_MEMBERS: String(Math.max(members, 100)) } });
  const tag = `L${members}o${onlinePct}x`;
  const uids = Array.from({ length: members }, (_, i) => `${tag}${i}`);
  const online = Math.max(1, Math.ceil((members * onlinePct) / 100));
  const seen = new Map();
  const onGroup = (_m, body) => {
    if (body.n === undefined) return;
    const now = performance.now();
    const s = seen.get(body.n) ?? { count: 0, last: now };
    s.count++;
    s.last = now;
    seen.set(body.n, s);
  };
  const ms = [];
  try {
    for (let i = 0; i < online; i += 50) ms.push(...(await Promise.all(uids.slice(i, Math.min(online, i + 50)).map((u) => member(t, u, onGroup)))));
    const made = await t.api("/api/groups", { owner: uids[0], members: uids.slice(1) });
    if (made.status !== 201) throw new Error(`group not created: ${made.status} ${await made.text()}`);
    const group = (await made.json()).group;
    const send = (n) => ms[0].request({ op: "group", call: "send", group, cmid: `c${n}`, body: { message: `large group message ${n}`, n } });
    // Warm-up: every member's object exists and holds the notice and message -1.
    const w = await send(-1);
    if (w.status !== 200) throw new Error(`warm-up refused: ${JSON.stringify(w)}`);
    await fanOutDone(t, 1500);
    const m0 = await t.metrics();
    const sentAt = new Map();
    const replies = [];
    let next = 0;
    let refused = 0;
    const t0 = performance.now();
    const loop = async () => {
      while (next < messages) {
        const n = next++;
        sentAt.set(n, performance.now());
        const start = performance.now();
        const r = await send(n);
        replies.push(performance.now() - start);
        if (r.status !== 200) refused++;
      }
    };
    await Promise.all(Array.from({ length: window }, loop));
    const answeredAt = performance.now();
    const until = performance.now() + 600_000;
    while ([...sentAt.keys()].some((n) => (seen.get(n)?.count ?? 0) < online) && performance.now() < until) await sleep(20);
    const complete = [...sentAt.keys()].every((n) => (seen.get(n)?.count ?? 0) >= online);
    const lastOnline = Math.max(...[...sentAt.keys()].map((n) => seen.get(n)?.last ?? 0));
    const allDone = await fanOutDone(t);
    const counts = diff(m0, await t.metrics());
    const perMsg = Object.fromEntries(Object.entries(counts).map(([k, v]) => [k, v / messages]));
    const lat = [...sentAt].filter(([n]) => (seen.get(n)?.count ?? 0) >= online).map(([n, t0n]) => seen.get(n).last - t0n);
    const deliveries = counts.group_deliveries ?? 0;
    const hopSeconds = deliveries ? (allDone - t0) / 1000 / deliveries : 0;
    const cost = costPerMillion(perMsg, ((perMsg.group_deliveries ?? 0) + 2) * hopSeconds);
    return {
      members,
      onlinePct,
      online,
      messages,
      window,
      refused,
      complete,
      sentPerSec: messages / ((answeredAt - t0) / 1000),
      toOnlinePerSec: messages / ((lastOnline - t0) / 1000),
      toAllPerSec: messages / ((allDone - t0) / 1000),
      reply: { p50: pct(replies, 50), p99: pct(replies, 99) },
      lastOnline: { p50: pct(lat, 50), p99: pct(lat, 99) },
      doRequests: (perMsg.do_fetches ?? 0) + (perMsg.do_alarms ?? 0),
      rows: (perMsg.sql_rows_written ?? 0) + (perMsg.alarms_set ?? 0),
      deliveriesPerMsg: perMsg.group_deliveries ?? 0,
      cost: { total: cost.total, perMember: cost.total / members, items: cost.items },
      counts,
    };
  } finally {
    await Promise.all(ms.map((m) => m.close()));
    await t.close();
  }
}

export function table(runs) {
  const f = (x, d = 1) => (x === undefined || Number.isNaN(x) ? "–" : x.toFixed(d));
  return [
    "| members | online | messages | sent/s | msg/s to every online member | msg/s to every member's object | to the last online member p50 / p99 ms | DO requests / msg | DO rows written / msg | deliveries / msg | $ / M msgs | $ / member / M |",
    "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ...runs.map(
      (r) =>
        `| ${r.members} | ${r.onlinePct} % | ${r.messages}${r.complete ? "" : " (incomplete)"}${r.refused ? `, ${r.refused} refused` : ""} | ${f(r.sentPerSec)} | ${f(r.toOnlinePerSec, 2)} | ${f(r.toAllPerSec, 2)} | ${f(r.lastOnline.p50, 0)} / ${f(r.lastOnline.p99, 0)} | ${f(r.doRequests)} | ${f(r.rows)} | ${f(r.deliveriesPerMsg)} | ${f(r.cost.total, 0)} | ${f(r.cost.perMember, 3)} |`,
    ),
  ].join("\n");
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = Object.fromEntries(process.argv.slice(2).map((a) => { const [k, v = "true"] = a.replace(/^--/, "").split("="); return [k, v]; }));
  const memberCounts = (args.members ?? "1000").split(",").map(Number);
  const onlines = (args.online ?? "10,100").split(",").map(Number);
  const runs = [];
  for (const members of memberCounts) {
    for (const onlinePct of onlines) {
      const r = await largeGroup({ members, onlinePct, messages: Number(args.messages ?? 20), window: Number(args.window ?? 4), storageDir: args.tmpfs ? "/dev/shm" : undefined });
      runs.push(r);
      console.log(table([r]).split("\n").at(-1));
      if (args.out) writeFileSync(args.out, JSON.stringify(runs, null, 2));
    }
  }
  console.log(table(runs));
}
