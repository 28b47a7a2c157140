// What presence and edits cost, counted in the real runtime.
//
// Presence: one user comes online (a socket opens) and goes offline (it
// closes, and the grace ends), with 0, 1 and 100 watchers, each a contact
// with a v1 device open that watches them. Counted: presence hops (one per
// watcher told), DO requests (the hops land as fetches), and rows written
// (DO SQLite rows plus alarms set, both billed as rows written), over the
// whole connect or close: the part that is presence's own is what grows
// with the watchers, plus the one row of each flip.
//
// Edits: rows written, DO requests and D1 rows written per send, per edit
// and per delete of a chat between two users with v1 devices open.
//
// `npm run bench` runs both; `node bench/presence.mjs` runs them alone.
import { fileURLToPath } from "node:url";
import { connectV1, sleep } from "../tests/harness.mjs";
import { startRust } from "./runtime.mjs";

export const WATCHERS = [0, 1, 100];

/** Counter deltas between two `/api/metrics` snapshots, over `n`. */
const delta = (m0, m1, n = 1) => (k) => ((m1[k] ?? 0) - (m0[k] ?? 0)) / n;
const rowsOf = (d) => d("sql_rows_written") + d("alarms_set");

export async function presenceCosts({ rounds = 3 } = {}) {
  const out = { rounds, flips: {} };
  for (const n of WATCHERS) {
    // A short grace so a round takes seconds; the archive pass far away so
    // it does not land inside a measured window.
    const t = await startRust({ bindings: { PRESENCE_GRACE_S: "1", ARCHIVE_DELAY_MS: "600000" } });
    try {
      const star = `star${n}`;
      const watchers = Array.from({ length: n }, (_, i) => `w${n}-${i}`);
      // Contacts: each watcher wrote to the star once (presence is for contacts).
      await Promise.all(watchers.map((w) => t.api("/api/usr-msg", { fromUser: w, toUser: star, message: "hi" })));
      (await connectV1(t.worker, star)).close();
      await sleep(1500);
      const devices = await Promise.all(watchers.map((w) => connectV1(t.worker, w)));
      await Promise.all(devices.map((d) => d.request({ op: "watch", peer: star })));
      const sum = { on: {}, off: {} };
      const add = (into, d) => {
        for (const k of ["presence_hops", "do_fetches", "rows"]) into[k] = (into[k] ?? 0) + (k === "rows" ? rowsOf(d) : d(k)) / rounds;
      };
      for (let r = 0; r < rounds; r++) {
        const m0 = await t.metrics();
        const c = await connectV1(t.worker, star);
        await Promise.all(devices.map((d) => d.take((f) => f.op === "presence" && f.online)));
        await sleep(200);
        const m1 = await t.metrics();
        await c.close();
        await Promise.all(devices.map((d) => d.take((f) => f.op === "presence" && !f.online, 10000)));
        // With no watcher to tell, wait out the grace (1 s) instead.
        await sleep(n ? 200 : 1500);
        const m2 = await t.metrics();
        add(sum.on, delta(m0, m1));
        add(sum.off, delta(m1, m2));
      }
      // A watch: one hop, one row (the watcher kept until it lapses).
      const w0 = await t.metrics();
      if (devices.length) await devices[0].request({ op: "watch", peer: star });
      const w1 = await t.metrics();
      out.flips[n] = { ...sum, watch: devices.length ? { do_fetches: delta(w0, w1)("do_fetches"), rows: rowsOf(delta(w0, w1)) } : null };
      await Promise.all(devices.map((d) => d.close()));
    } finally {
      await t.close();
    }
  }
  return out;
}

export async function editCosts({ n = 50 } = {}) {
  const t = await startRust({ bindings: { ARCHIVE_DELAY_MS: "500", HISTORY_FLUSH_MS: "50" } });
  try {
    const a = await connectV1(t.worker, "ea");
    const b = await connectV1(t.worker, "eb");
    await a.request({ op: "send", to: "eb", cmid: "warm", body: { message: "warm" } });
    await sleep(2000);
    const measure = async (op) => {
      const m0 = await t.metrics();
      const mids = [];
      for (let i = 0; i < n; i++) mids.push(await op(i));
      await sleep(2500); // archive passes and writer flushes
      const d = delta(m0, await t.metrics(), n);
      return { rows: rowsOf(d), do_fetches: d("do_fetches"), d1_rows: d("d1_rows_written"), mids };
    };
    const sent = await measure(async (i) => (await a.request({ op: "send", to: "eb", cmid: `s${i}`, body: { message: `m${i}` } })).mid);
    const more = await measure(async (i) => (await a.request({ op: "send", to: "eb", cmid: `t${i}`, body: { message: `n${i}` } })).mid);
    const edit = await measure(async (i) => {
      const r = await a.request({ op: "edit", mid: sent.mids[i], cmid: `e${i}`, body: { message: `edited ${i}` } });
      if (r.op !== "sent") throw new Error(`edit refused: ${JSON.stringify(r)}`);
    });
    const del = await measure(async (i) => {
      const r = await a.request({ op: "delete", mid: sent.mids[i], for: "everyone", cmid: `d${i}` });
      if (r.op !== "sent") throw new Error(`delete refused: ${JSON.stringify(r)}`);
    });
    const mine = await measure(async (i) => {
      const r = await b.request({ op: "delete", mid: more.mids[i], for: "me", cmid: `m${i}` });
      if (r.op !== "sent") throw new Error(`delete for me refused: ${JSON.stringify(r)}`);
    });
    await Promise.all([a.close(), b.close()]);
    const strip = ({ mids, ...rest }) => rest;
    return { n, send: strip(sent), edit: strip(edit), delete: strip(del), deleteForMe: strip(mine) };
  } finally {
    await t.close();
  }
}

/** The tables of a `presenceCosts` and an `editCosts` result, for docs/benchmarks.md. */
export function presenceTables(p, e) {
  const f = (x) => (x ?? 0).toFixed(2);
  const flips = WATCHERS.map((n) => {
    const { on, off } = p.flips[n];
    return `| ${n} | ${f(on.presence_hops)} | ${f(on.do_fetches)} | ${f(on.rows)} | ${f(off.presence_hops)} | ${f(off.do_fetches)} | ${f(off.rows)} |`;
  });
  const watch = p.flips[1]?.watch;
  const ops = ["send", "edit", "delete", "deleteForMe"].map((k) => `| ${k} | ${f(e[k].rows)} | ${f(e[k].do_fetches)} | ${f(e[k].d1_rows)} |`);
  return [
    "| watchers | online: presence hops | DO requests | rows written | offline: presence hops | DO requests | rows written |",
    "|---|---|---|---|---|---|---|",
    ...flips,
    "",
    watch ? `A \`watch\`: ${f(watch.do_fetches)} DO requests (the hop), ${f(watch.rows)} rows written (the watcher kept).` : "",
    "",
    "| per op (two users, v1 devices open) | DO rows written (both logs, alarms included) | DO requests | D1 rows written |",
    "|---|---|---|---|",
    ...ops,
  ].join("\n");
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const p = await presenceCosts();
  const e = await editCosts();
  console.log(JSON.stringify({ presence: p, edits: e }));
  console.log(presenceTables(p, e));
}
