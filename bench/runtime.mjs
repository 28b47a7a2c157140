// Benchmark targets: each runs in its own Miniflare (one workerd process),
// persisted to a temporary folder, production settings (no test shortcuts).
// Also: the workerd process's memory, and V8 heap figures over the inspector.
import { Miniflare } from "miniflare";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import WebSocket from "ws";
import { API_KEY, ROOT, freePort, startWorker, token } from "../tests/harness.mjs";

const BASELINE = join(ROOT, "bench", "baselines");

/** PIDs of workerd processes started by this process. */
function workerdPids() {
  try {
    return execFileSync("pgrep", ["-P", String(process.pid), "workerd"]).toString().trim().split("\n").filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Resident memory of a process, in bytes. */
/** What each counter of `/api/metrics` moved between two readings. */
export const metricsDelta = (m0, m1) => Object.fromEntries(Object.keys(m1).map((k) => [k, m1[k] - (m0[k] ?? 0)]));

/** The `p`th percentile of `xs` (unsorted; NaN for none). */
export function pct(xs, p) {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

export function rssBytes(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) * 1024 : NaN;
}

async function withPid(start) {
  const before = new Set(workerdPids());
  const t = await start();
  t.pid = workerdPids().find((p) => !before.has(p));
  return t;
}

/**
 * Miniflare options of a JavaScript baseline (one file, no imports): its
 * Durable Object `className` bound as `binding` (SQLite-backed), text vars
 * `vars`, persisted under `dir`.
 */
function baselineOptions(dir, script, { binding, className, vars = {} }) {
  const env = { [binding]: { type: "durable-object", worker: "", exportName: className } };
  for (const [name, value] of Object.entries(vars)) env[name] = { type: "text", value };
  return {
    host: "127.0.0.1",
    port: 0,
    cf: false,
    enableDevRegistry: false,
    telemetry: { enabled: false },
    logRequests: false,
    resourcePersistencePath: dir,
    workers: [
      {
        config: {
          name: "",
          compatibilityDate: "2026-04-20",
          manifest: {
            mainModule: script,
            modulesRoot: BASELINE,
            modules: { [script]: { type: "esm", contents: readFileSync(join(BASELINE, script), "utf8") } },
          },
          env,
          exports: { [className]: { type: "durable-object", storage: "sqlite" } },
        },
      },
    ],
  };
}

async function startBaseline(queue, { storageDir } = {}) {
  const dir = mkdtempSync(join(storageDir ?? tmpdir(), "edge-chat-bench-"));
  const mf = new Miniflare(
    baselineOptions(dir, "forwarder.js", {
      binding: "USER",
      className: "UserObject",
      vars: { QUEUE: String(queue), BATCH: "0", BATCH_MS: "0" },
    }),
  );
  const url = (await mf.ready).toString().replace(/\/$/, "");
  return {
    mf,
    url,
    wsUrl: (uid) => `${url.replace(/^http/, "ws")}/ws?uid=${uid}`,
    async close() {
      await mf.dispose();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function startRoom() {
  const dir = mkdtempSync(join(tmpdir(), "edge-chat-bench-"));
  const mf = new Miniflare(baselineOptions(dir, "room.js", { binding: "ROOM", className: "Room" }));
  const url = (await mf.ready).toString().replace(/\/$/, "");
  return {
    mf,
    url,
    // Both ends of a pair scenario join one room: the conversation.
    wsUrl: () => `${url.replace(/^http/, "ws")}/ws?room=pair`,
    metrics: async () => (await fetch(`${url}/api/metrics`)).json(),
    async close() {
      await mf.dispose();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** How a target's clients speak: legacy frames, or chat.v1 `send` frames. */
export const LEGACY_PROTO = {
  encode: (from, to, i) => JSON.stringify({ fromUser: from, toUser: to, message: `message number ${i} with a little text` }),
  // frames the sender gets per message (ok), frames on connect
  senderFrames: 1,
  initial: 0,
};
let cmids = 0;
export const V1_PROTO = {
  encode: (from, to, i) =>
    JSON.stringify({ op: "send", id: i, to, cmid: `b${++cmids}`, body: { message: `message number ${i} with a little text` } }),
  // `sent` and the sender's own `msg`; `welcome` on connect
  senderFrames: 2,
  initial: 1,
  protocols: ["chat.v1"],
};

export async function startRust({ storageDir, inspector = false, v1 = false, bindings = {} } = {}) {
  const inspectorPort = inspector ? await freePort() : undefined;
  const prevTmp = process.env.TMPDIR;
  if (storageDir) process.env.TMPDIR = storageDir;
  let w;
  try {
    w = await startWorker({
      // Production settings, except the per-user send rate and the cap on sends
      // waiting for recipients: the benchmark sends 5000 back to back, flat out.
      bindings: { ARCHIVE_DELAY_MS: "30000", ARCHIVE_RETRY_MS: "1000", HISTORY_FLUSH_MS: "2000", SEND_RATE: "1000000", SEND_BURST: "1000000", READ_RATE: "1000000", READ_BURST: "1000000", INFLIGHT_SENDS: "100000", ...bindings },
      inspectorPort,
    });
  } finally {
    if (storageDir && prevTmp === undefined) delete process.env.TMPDIR;
    else if (storageDir) process.env.TMPDIR = prevTmp;
  }
  return {
    mf: w.mf,
    worker: w,
    url: w.url,
    inspectorPort,
    archiveDelayMs: Number(bindings.ARCHIVE_DELAY_MS ?? 30000),
    wsUrl: (uid) => w.wsUrl(`/ws?token=${token(uid)}${v1 ? "&device=bench" : ""}`),
    proto: v1 ? V1_PROTO : LEGACY_PROTO,
    metrics: async () => (await fetch(`${w.url}/api/metrics`, { headers: { authorization: `Bearer ${API_KEY}` } })).json(),
    api: (path, body) => w.api(path, body),
    close: () => w.close(),
  };
}

/** The targets compared in every pair scenario, in the order they are interleaved. */
export const TARGETS = {
  "js-forward": { label: "JS forwarder, no storage (ceiling)", start: (o) => withPid(() => startBaseline(0, o)) },
  "js-queue": { label: "JS forwarder + DO SQLite queue", start: (o) => withPid(() => startBaseline(1, o)) },
  rust: { label: "edge-chat (Rust, legacy protocol, history on)", start: (o) => withPid(() => startRust(o)) },
  "rust-v1": { label: "edge-chat (Rust, chat.v1, history on)", start: (o) => withPid(() => startRust({ ...o, v1: true })) },
};
/** The targets of the many-users scenarios (legacy frames only). */
export const CROWD_TARGETS = ["js-forward", "js-queue", "rust"];
export const startRoomTarget = () => withPid(startRoom);
export const startRustTarget = (o) => withPid(() => startRust(o));

/** A Chrome DevTools Protocol session with the isolate that runs the user objects. */
export async function inspect(port) {
  const list = await (await fetch(`http://127.0.0.1:${port}/json`)).json();
  const target = list.find((x) => /core:user/.test(x.title)) ?? list[0];
  const ws = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise((r, j) => (ws.once("open", r), ws.once("error", j)));
  let id = 0;
  const pending = new Map();
  ws.on("message", (d) => {
    const m = JSON.parse(d);
    if (process.env.CDP_DEBUG) console.log("cdp<", JSON.stringify(m).slice(0, 200));
    if (m.id && pending.has(m.id)) {
      pending.get(m.id)(m.result);
      pending.delete(m.id);
    }
  });
  const call = (method, params = {}) =>
    new Promise((r) => {
      const i = ++id;
      pending.set(i, r);
      ws.send(JSON.stringify({ id: i, method, params }));
    });
  return {
    call,
    /**
     * V8 heap in use after a forced full GC, in bytes. workerd serves
     * inspector commands when the isolate runs, so `poke` makes it run.
     */
    async heapAfterGc(poke) {
      const whilePoking = async (method) => {
        let done = false;
        const answer = call(method).finally(() => (done = true));
        while (!done) {
          await poke();
          await new Promise((r) => setTimeout(r, 20));
        }
        return answer;
      };
      await whilePoking("HeapProfiler.enable");
      await whilePoking("HeapProfiler.collectGarbage");
      return (await whilePoking("Runtime.getHeapUsage")).usedSize;
    },
    close: () => ws.close(),
  };
}

/** A lightweight client: counts frames, remembers errors, no buffering of text. */
export function client(url, protocols) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols, { perMessageDeflate: false });
    const c = {
      ws,
      count: 0,
      errors: 0,
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
    ws.on("message", (data) => {
      c.count++;
      if (data.length < 200 && /^error|"op":"error"/.test(data.toString())) c.errors++;
      c.onFrame?.();
    });
    ws.once("open", () => resolve(c));
    ws.once("error", reject);
  });
}
