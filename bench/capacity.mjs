// The capacity model: what a deployment needs at a given scale, from the
// per-message counts the benchmark measured (sparse traffic, the realistic
// case), the configured shard count and batch settings, and the platform's
// published limits. `npm run bench` runs it into docs/benchmarks.md; on its
// own, from the last results:
//   node bench/capacity.mjs [--users=10000000] [--rate=100000]
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { costPerMillion } from "./prices.mjs";

/** Platform limits the model checks against, each with the page that states it. */
export const LIMITS = {
  d1QueriesPerSec: { value: 1000, page: "https://developers.cloudflare.com/d1/platform/limits/", note: "one database is single-threaded: about 1,000 queries/s at 1 ms each, fewer for writes" },
  d1DatabaseBytes: { value: 10e9, page: "https://developers.cloudflare.com/d1/platform/limits/", note: "10 GB per database, not raisable" },
  d1AccountBytes: { value: 1e12, page: "https://developers.cloudflare.com/d1/platform/limits/", note: "1 TB per account by default" },
  doRequestsPerSec: { value: 1000, page: "https://developers.cloudflare.com/durable-objects/platform/limits/", note: "soft limit of about 1,000 requests/s per object" },
};

/** The targets of issue 11 for the model (per database, per object). */
export const TARGETS = { statementsPerSecPerDb: 200, bytesPerDayPerDb: 5e9 };

/** D1 databases bound in wrangler.toml (`[[d1_databases]]` tables). */
export function configuredShards(root) {
  const toml = readFileSync(join(root, "wrangler.toml"), "utf8");
  return (toml.match(/^\[\[d1_databases\]\]/gm) ?? []).length;
}

/**
 * The model. `perMsg`: measured counts per message; `d1BytesPerMsg`: D1
 * storage per message; `activeSecondsPerMsg`: modelled DO duration.
 */
export function capacity({ users = 10e6, rate = 100e3, shards, perMsg, d1BytesPerMsg, activeSecondsPerMsg, hotRate = 5000 }) {
  const day = 86400;
  const statementsPerSec = rate * perMsg.d1_queries;
  const perDb = statementsPerSec / shards;
  const bytesPerDay = rate * day * d1BytesPerMsg;
  const bytesPerDayPerDb = bytesPerDay / shards;
  // Each chat wakes the sender's object (a socket message) and the
  // recipient's (a hop); spread over every user.
  const requestsPerUserObject = (rate * (perMsg.do_fetches + perMsg.do_ws_messages)) / users;
  const cost = costPerMillion(perMsg, activeSecondsPerMsg);
  const monthly = (cost.total * rate * 30 * day) / 1e6;
  const shardsNeeded = Math.max(Math.ceil(statementsPerSec / TARGETS.statementsPerSecPerDb), Math.ceil(bytesPerDay / TARGETS.bytesPerDayPerDb));
  const rows = [
    ["D1 statements/s, all databases", statementsPerSec, null],
    [`D1 statements/s per database (${shards} configured)`, perDb, perDb <= TARGETS.statementsPerSecPerDb],
    ["D1 GB per day, all databases", bytesPerDay / 1e9, null],
    ["D1 GB per day per database", bytesPerDayPerDb / 1e9, bytesPerDayPerDb <= TARGETS.bytesPerDayPerDb],
    ["days until one database is full (10 GB)", LIMITS.d1DatabaseBytes.value / bytesPerDayPerDb, null],
    ["days until the account is full (1 TB)", LIMITS.d1AccountBytes.value / bytesPerDay, null],
    ["D1 databases needed for the targets", shardsNeeded, shardsNeeded <= shards],
    ["requests/s per user object (average)", requestsPerUserObject, requestsPerUserObject <= LIMITS.doRequestsPerSec.value],
    [`requests/s to a hot recipient's object (${hotRate} msg/s to one user)`, hotRate, hotRate <= LIMITS.doRequestsPerSec.value],
    ["monthly bill at list prices (USD)", monthly, null],
  ];
  return { users, rate, shards, perMsg, d1BytesPerMsg, costPerMillion: cost.total, monthly, shardsNeeded, rows };
}

/** The model as a Markdown table. */
export function capacityTable(m) {
  const n = (x) => (x >= 100 ? Math.round(x).toLocaleString("en-US") : x.toFixed(x >= 1 ? 1 : 3));
  return [
    `${n(m.users)} users, ${n(m.rate)} messages/s sustained, ${m.shards} D1 database(s); ${m.perMsg.d1_queries.toFixed(3)} D1 statements and ${n(m.d1BytesPerMsg)} D1 bytes per message (measured, sparse traffic); $${m.costPerMillion.toFixed(2)} per million messages.`,
    "",
    "| quantity | value | within the target or limit |",
    "|---|---:|---|",
    ...m.rows.map(([k, v, ok]) => `| ${k} | ${n(v)} | ${ok === null ? "" : ok ? "yes" : "**no**"} |`),
    "",
    `Limits used: ${Object.values(LIMITS).map((l) => `[${l.note}](${l.page})`).join("; ")}. Targets: at most ${TARGETS.statementsPerSecPerDb} statements/s and ${TARGETS.bytesPerDayPerDb / 1e9} GB per day per database.`,
  ].join("\n");
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const root = join(fileURLToPath(import.meta.url), "..", "..");
  const args = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, "").split("=")));
  const r = JSON.parse(readFileSync(join(root, "bench", "results", "latest.json"), "utf8"));
  const m = capacity({
    users: Number(args.users ?? 10e6),
    rate: Number(args.rate ?? 100e3),
    shards: configuredShards(root),
    perMsg: r.sparse.online.perMsg,
    d1BytesPerMsg: r.sparse.d1.bytesPerMessage,
    activeSecondsPerMsg: (2 * r.pair.disk.rust.p50) / 1000,
  });
  console.log(capacityTable(m));
}
