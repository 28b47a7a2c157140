// Benchmark scenarios. Each takes a started target and returns plain numbers.
import { client } from "./runtime.mjs";

const chat = (from, to, i) => JSON.stringify({ fromUser: from, toUser: to, message: `message number ${i} with a little text` });

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** A sends `n` messages back to back to B; msg/s from first send to last receipt and last ok. */
export async function pairThroughput(target, { n = 5000, warmup = 300, pair = 0 } = {}) {
  const [from, to] = [String(1000 + 2 * pair), String(1001 + 2 * pair)];
  const a = await client(target.wsUrl(from));
  const b = await client(target.wsUrl(to));
  for (let i = 0; i < warmup; i++) a.send(chat(from, to, i));
  await Promise.all([a.until(warmup), b.until(warmup)]);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) a.send(chat(from, to, i));
  await Promise.all([a.until(warmup + n), b.until(warmup + n)]);
  const ms = performance.now() - t0;
  await Promise.all([a.close(), b.close()]);
  return { n, ms, msgPerSec: (n / ms) * 1000 };
}

/** One message at a time: latency from send to B's receipt, in ms. */
export async function pairLatency(target, { n = 1000, warmup = 100 } = {}) {
  const [from, to] = ["2000", "2001"];
  const a = await client(target.wsUrl(from));
  const b = await client(target.wsUrl(to));
  const samples = [];
  for (let i = 0; i < warmup + n; i++) {
    const t0 = performance.now();
    const got = b.until(b.count + 1);
    a.send(chat(from, to, i));
    await got;
    if (i >= warmup) samples.push(performance.now() - t0);
  }
  await a.until(warmup + n);
  await Promise.all([a.close(), b.close()]);
  samples.sort((x, y) => x - y);
  return { n, p50: percentile(samples, 50), p99: percentile(samples, 99), p999: percentile(samples, 99.9), samples };
}
