#!/usr/bin/env node
// Copies the history a deployment wrote before history by conversation (the
// per-owner `messages` table of migrations/0001, kept in DB_0) into today's
// layout, 500 rows per call of `POST /api/history/upgrade`, until done.
// Safe to stop and run again: every call is idempotent.
//
//   node scripts/upgrade-history.mjs <worker url> <API_KEY>
const [url, key] = process.argv.slice(2);
if (!url || !key) {
  console.error("usage: node scripts/upgrade-history.mjs <worker url> <API_KEY>");
  process.exit(2);
}
let next = { owner: "", seq: 0 };
let copied = 0;
while (next) {
  const q = new URLSearchParams({ owner: next.owner, seq: String(next.seq) });
  const r = await fetch(`${url.replace(/\/$/, "")}/api/history/upgrade?${q}`, { method: "POST", headers: { authorization: `Bearer ${key}` } });
  if (r.status === 503) {
    await new Promise((res) => setTimeout(res, 1000));
    continue;
  }
  if (r.status !== 200) throw new Error(`upgrade failed: ${r.status} ${await r.text()}`);
  const body = await r.json();
  copied += body.copied;
  next = body.next;
  process.stdout.write(`\r${copied} rows copied`);
}
console.log("\ndone");
