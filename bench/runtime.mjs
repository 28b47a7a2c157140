// Benchmark targets: each runs in its own Miniflare (one workerd process),
// persisted to a temporary folder, production settings (no test shortcuts).
import { Miniflare } from "miniflare";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import WebSocket from "ws";
import { ROOT, startWorker, token } from "../tests/harness.mjs";

const BASELINE = join(ROOT, "bench", "baselines");

async function startBaseline(queue, batch = 0, batchMs = 0) {
  queue = String(queue);
  const dir = mkdtempSync(join(tmpdir(), "edge-chat-bench-"));
  const mf = new Miniflare({
    host: "127.0.0.1",
    port: 0,
    modules: true,
    modulesRoot: BASELINE,
    scriptPath: join(BASELINE, "forwarder.js"),
    compatibilityDate: "2026-04-20",
    durableObjects: { USER: { className: "UserObject", useSQLite: true } },
    durableObjectsPersist: join(dir, "do"),
    bindings: { QUEUE: queue, BATCH: String(batch), BATCH_MS: String(batchMs) },
  });
  const url = (await mf.ready).toString().replace(/\/$/, "").replace(/^http/, "ws");
  return {
    mf,
    wsUrl: (uid) => `${url}/ws?uid=${uid}`,
    async close() {
      await mf.dispose();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function startRust() {
  const w = await startWorker({ bindings: { ARCHIVE_DELAY_MS: "500", ARCHIVE_RETRY_MS: "1000" } });
  return {
    mf: w.mf,
    worker: w,
    wsUrl: (uid) => w.wsUrl(`/ws?token=${token(uid)}`),
    close: () => w.close(),
  };
}

/** The targets every scenario runs against, in the order they are interleaved. */
export const TARGETS = {
  "js-forward": { label: "JS forwarder, no storage (ceiling)", start: () => startBaseline(0) },
  "js-queue": { label: "JS forwarder + DO SQLite queue", start: () => startBaseline(1) },
  "js-two-logs": { label: "JS forwarder + queue + sender's copy", start: () => startBaseline(2) },
  "js-gc0": { label: "JS two logs, group commit 0ms", start: () => startBaseline(2, 1, 0) },
  "js-gc1": { label: "JS two logs, group commit 1ms", start: () => startBaseline(2, 1, 1) },
  rust: { label: "edge-chat (Rust, legacy protocol, history on)", start: startRust },
};

/** A lightweight client: counts frames and wakes waiters, no buffering of text. */
export function client(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    const c = {
      ws,
      count: 0,
      onFrame: null,
      send: (s) => ws.send(s),
      close: () => new Promise((r) => (ws.readyState === WebSocket.CLOSED ? r() : (ws.once("close", r), ws.close()))),
      /** Resolves when `count` reaches `n`. */
      until(n) {
        if (c.count >= n) return Promise.resolve();
        return new Promise((res) => {
          const prev = c.onFrame;
          c.onFrame = () => {
            if (c.count >= n) {
              c.onFrame = prev;
              res();
            }
          };
        });
      },
    };
    ws.on("message", () => {
      c.count++;
      c.onFrame?.();
    });
    ws.once("open", () => resolve(c));
    ws.once("error", reject);
  });
}
