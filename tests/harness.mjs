// Test harness: runs the built worker (build/index.js + wasm) in workerd via
// Miniflare, with SQLite-backed Durable Objects and a local D1 database both
// persisted to a temporary folder, so a test can stop the runtime and start
// it again on the same state. Clients talk to it over real TCP WebSockets.
import { Miniflare } from "miniflare";
import { createHmac } from "node:crypto";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const JWT_SECRET = "test-jwt-secret";
export const API_KEY = "test-api-key";
/** The history shards the tests run with (wrangler.toml binds two as well). */
export const SHARDS = ["DB_0", "DB_1"];

/**
 * The built worker's modules, as Miniflare takes them: build/index.js (the
 * entry, worker-build's bundle) and the wasm it imports.
 */
export function builtModules(dir = join(ROOT, "build")) {
  return {
    mainModule: "index.js",
    modulesRoot: dir,
    modules: {
      "index.js": { type: "esm", contents: readFileSync(join(dir, "index.js"), "utf8") },
      // A copy: Miniflare wants a Uint8Array of its own, not a view of Node's buffer pool.
      "index_bg.wasm": { type: "wasm", contents: new Uint8Array(readFileSync(join(dir, "index_bg.wasm"))) },
    },
  };
}

/**
 * Miniflare 5 options for the built worker: vars and secrets `vars`, the
 * history shards `d1` (binding -> database id), everything persisted under
 * `persistDir` (do/, d1/, r2/, the layout Miniflare 4 used as well), and the
 * demo page's files as static assets when `assets` names their folder.
 * Offline: the `Request.cf` placeholder, no dev registry, no telemetry.
 */
export function workerOptions({ persistDir, vars, d1, assets, port = 0, inspectorPort, onLog, metrics }) {
  const env = {};
  for (const [name, value] of Object.entries(vars)) env[name] = typeof value === "string" ? { type: "text", value } : { type: "json", value };
  for (const [name, id] of Object.entries(d1)) env[name] = { type: "d1", id };
  env.COLD = { type: "r2", name: "COLD" };
  env.USER = { type: "durable-object", worker: "", exportName: "UserObject" };
  env.WRITER = { type: "durable-object", worker: "", exportName: "HistoryWriter" };
  env.GROUP = { type: "durable-object", worker: "", exportName: "GroupObject" };
  env.INBOX = { type: "durable-object", worker: "", exportName: "InboxShard" };
  // The Analytics Engine dataset, when a test wants the data points: a
  // worker of ours standing in for it that keeps every point written.
  if (metrics) env.METRICS = { type: "worker", worker: CAPTURE, exportName: "Capture" };
  return {
    host: "127.0.0.1",
    port,
    ...(inspectorPort ? { inspectorPort } : {}),
    cf: false,
    enableDevRegistry: false,
    telemetry: { enabled: false },
    logRequests: false,
    resourcePersistencePath: persistDir,
    ...(onLog ? { handleStructuredLogs: onLog } : {}),
    workers: [
      {
        config: {
          name: "",
          compatibilityDate: "2026-04-20",
          manifest: builtModules(),
          env,
          exports: {
            UserObject: { type: "durable-object", storage: "sqlite" },
            HistoryWriter: { type: "durable-object", storage: "sqlite" },
            GroupObject: { type: "durable-object", storage: "sqlite" },
            InboxShard: { type: "durable-object", storage: "sqlite" },
          },
          ...(assets ? { assets: { directory: assets, hasUserWorker: true } } : {}),
        },
      },
      ...(metrics ? [captureWorker()] : []),
    ],
  };
}

const CAPTURE = "metrics-capture";

/** The stand-in for the dataset: `writeDataPoint` keeps the point; a fetch answers all of them. */
function captureWorker() {
  const contents = `
    import { WorkerEntrypoint } from "cloudflare:workers";
    const points = [];
    export class Capture extends WorkerEntrypoint {
      writeDataPoint(point) { points.push(point); }
    }
    export default { fetch() { return Response.json(points); } };
  `;
  return {
    config: {
      name: CAPTURE,
      compatibilityDate: "2026-04-20",
      manifest: { mainModule: "capture.js", modules: { "capture.js": { type: "esm", contents } } },
      exports: { Capture: { type: "worker" } },
    },
  };
}

/** Options shared by every test runtime; `bindings` may override secrets and vars. */
function options(persistDir, { bindings, omit, port, assets, inspectorPort, metrics }, onOutput) {
  const all = {
    JWT_SECRET,
    API_KEY,
    ARCHIVE_DELAY_MS: "50",
    ARCHIVE_RETRY_MS: "100",
    HISTORY_FLUSH_MS: "50",
    // Tests send in bursts; the rate limit has its own test.
    SEND_RATE: "100000",
    SEND_BURST: "100000",
    READ_RATE: "100000",
    READ_BURST: "100000",
    // Tests put strangers in groups; consent to be added (the production
    // default, contacts) has its own tests: group-consent.test.mjs omits this.
    GROUP_ADDS_DEFAULT: "everyone",
    ...bindings,
  };
  for (const name of omit) delete all[name];
  return workerOptions({
    persistDir,
    vars: all,
    d1: Object.fromEntries(SHARDS.map((name, k) => [name, `edge-chat-test-${k}`])),
    assets,
    port,
    inspectorPort,
    metrics,
    // Everything the runtime prints (console output of the worker and its
    // objects included) is kept, so tests can check what reaches the logs.
    onLog({ level, message }) {
      const line = `${level}: ${message}\n`;
      onOutput(line);
      if (process.env.TEST_RUNTIME_LOGS) process.stderr.write(line);
    },
  });
}

/**
 * Applies migrations/*.sql to every history shard, in file-name order, but
 * for those in `applied` (as `wrangler d1 migrations apply` skips the ones a
 * database already has).
 */
export async function migrate(mf, shards = SHARDS, applied = []) {
  const dir = join(ROOT, "migrations");
  for (const name of shards) {
    const db = await mf.getD1Database(name);
    for (const file of readdirSync(dir).filter((f) => f.endsWith(".sql") && !applied.includes(f)).sort()) {
      const sql = readFileSync(join(dir, file), "utf8").replace(/--.*$/gm, "");
      for (const stmt of sql.split(";").map((s) => s.trim()).filter(Boolean)) {
        await db.prepare(stmt).run();
      }
    }
  }
}

/**
 * A running worker. `restart()` stops workerd and starts a new one on the same
 * persisted state (the "hot update" case); `close()` stops it and deletes the state.
 * `port` (default: any free one), `assets` (a folder served as static assets)
 * and `inspectorPort` (V8 inspector) go to Miniflare.
 */
export async function startWorker({ bindings = {}, omit = [], port = 0, assets, inspectorPort, metrics = false } = {}) {
  const persistDir = mkdtempSync(join(tmpdir(), "edge-chat-test-"));
  const w = {
    persistDir,
    mf: null,
    url: null,
    /** What the runtime printed since the first start (TEST_RUNTIME_LOGS=1 echoes it). */
    output: "",
    async start() {
      this.mf = new Miniflare(options(persistDir, { bindings, omit, port, assets, inspectorPort, metrics }, (text) => (this.output += text)));
      this.url = (await this.mf.ready).toString().replace(/\/$/, "");
    },
    async restart() {
      await this.mf.dispose();
      await this.start();
    },
    async close() {
      await this.mf?.dispose();
      rmSync(persistDir, { recursive: true, force: true });
    },
    /** A history shard's database (`DB_0` unless told). */
    db(name = SHARDS[0]) {
      return this.mf.getD1Database(name);
    },
    /** Every history shard's database. */
    shards() {
      return Promise.all(SHARDS.map((name) => this.mf.getD1Database(name)));
    },
    /** Makes history unwritable and unreadable: every shard's tables renamed away. */
    async d1Outage() {
      for (const db of await this.shards()) {
        const { results } = await db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND (name = 'partitions' OR name LIKE 'history\\_%' ESCAPE '\\')").all();
        for (const { name } of results) await db.prepare(`ALTER TABLE ${name} RENAME TO ${name}_down`).run();
      }
    },
    /**
     * Ends what `d1Outage` began. A writer may have created a partition
     * table again meanwhile (its statement that lists it failed): its rows
     * join the original's.
     */
    async d1Restore() {
      for (const db of await this.shards()) {
        const { results } = await db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '%\\_down' ESCAPE '\\'").all();
        for (const { name } of results) {
          const original = name.replace(/_down$/, "");
          // A writer may create the table again at any moment, even between
          // the drop and the rename: merge and try again until the rename wins.
          for (let attempt = 0; ; attempt++) {
            const again = await db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1").bind(original).first();
            if (again) {
              await db.prepare(`INSERT OR IGNORE INTO ${name} SELECT * FROM ${original}`).run();
              await db.prepare(`DROP TABLE ${original}`).run();
            }
            try {
              await db.prepare(`ALTER TABLE ${name} RENAME TO ${original}`).run();
              break;
            } catch (e) {
              if (attempt >= 10 || !/already another table/.test(String(e))) throw e;
            }
          }
        }
      }
    },
    /** The history rows of every shard, partition by partition. */
    async historyRows(where = "1 = 1") {
      const rows = [];
      for (const db of await this.shards()) {
        const { results } = await db.prepare("SELECT tbl FROM partitions").all();
        for (const { tbl } of results) rows.push(...(await db.prepare(`SELECT * FROM ${tbl} WHERE ${where}`).all()).results);
      }
      return rows;
    },
    wsUrl(path = "/ws") {
      return this.url.replace(/^http/, "ws") + path;
    },
    /** A fetch against the running worker. */
    fetch(path, init) {
      return fetch(this.url + path, init);
    },
    api(path, body, key = API_KEY) {
      return this.fetch(path, {
        method: "POST",
        headers: { "content-type": "application/json", ...(key ? { authorization: `Bearer ${key}` } : {}) },
        body: typeof body === "string" ? body : JSON.stringify(body),
      });
    },
    /** The data points written to the Analytics Engine dataset (`metrics: true`). */
    async dataPoints() {
      return (await (await this.mf.getWorker(CAPTURE)).fetch("http://capture/")).json();
    },
    /** The counters of `/api/metrics`. */
    async metrics() {
      return (await this.fetch("/api/metrics", { headers: { authorization: `Bearer ${API_KEY}` } })).json();
    },
    history(uid, params = {}) {
      const q = new URLSearchParams(params).toString();
      return this.fetch(`/ws/history${q ? "?" + q : ""}`, { headers: { authorization: `Bearer ${token(uid)}` } });
    },
    /** Opens a client socket as `uid`; resolves once it is open. */
    connect(uid, { tokenValue, protocols, origin } = {}) {
      const url = this.wsUrl(`/ws?token=${encodeURIComponent(tokenValue ?? token(uid))}`);
      return openClient(url, protocols, origin ? { origin } : undefined);
    },
  };
  await w.start();
  await migrate(w.mf);
  return w;
}

const b64url = (s) => Buffer.from(s).toString("base64url");

/** An HS256 JWT for `sub`, valid for an hour unless `exp` says otherwise. */
export function token(sub, { exp = Math.floor(Date.now() / 1000) + 3600, secret = JWT_SECRET, header = { alg: "HS256", typ: "JWT" }, claims } = {}) {
  const h = b64url(JSON.stringify(header));
  const p = b64url(JSON.stringify(claims ?? { sub: String(sub), exp }));
  const sig = createHmac("sha256", secret).update(`${h}.${p}`).digest("base64url");
  return `${h}.${p}.${sig}`;
}

/**
 * A socket that survives runtime restarts: `open()` retries until the
 * upgrade succeeds (the runtime's URL may change), frames go to `onFrame`.
 */
export function resilient(w, path, protocols, onFrame) {
  const s = {
    ws: null,
    async open() {
      for (;;) {
        try {
          s.ws = await new Promise((resolve, reject) => {
            const ws = new WebSocket(w.wsUrl(path()), protocols);
            ws.once("open", () => resolve(ws));
            ws.once("error", reject);
            ws.once("unexpected-response", () => reject(new Error("refused")));
          });
          s.ws.on("message", (d) => onFrame(d.toString()));
          s.ws.on("error", () => {});
          return;
        } catch {
          await sleep(50);
        }
      }
    },
    get up() {
      return s.ws?.readyState === WebSocket.OPEN;
    },
  };
  return s;
}

/**
 * An HTTP call with a JSON body (if any) and a JSON answer: as `uid` (their
 * token), or as the backend (`uid` null: the API key); `headers` added.
 * Resolves with the status and the parsed body (null when empty).
 */
export async function callJson(w, uid, method, path, body, headers = {}) {
  const authorization = `Bearer ${uid === null ? API_KEY : token(uid)}`;
  const res = await w.fetch(path, {
    method,
    headers: { authorization, "content-type": "application/json", ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

/**
 * A WebSocket client that buffers what it receives: `next()` waits for the
 * next text frame, `expectSilence()` checks nothing more arrives.
 */
export function openClient(url, protocols, options) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols, options);
    const inbox = [];
    const waiters = [];
    const client = {
      ws,
      received: inbox,
      closed: null,
      send(data) {
        ws.send(typeof data === "string" ? data : JSON.stringify(data));
      },
      next(timeoutMs = 5000) {
        if (inbox.length > 0) return Promise.resolve(inbox.shift());
        return new Promise((res, rej) => {
          const waiter = (m) => {
            clearTimeout(t);
            res(m);
          };
          const t = setTimeout(() => {
            // A timed-out wait must not take a frame that arrives later.
            waiters.splice(waiters.indexOf(waiter), 1);
            rej(new Error(`no frame within ${timeoutMs} ms`));
          }, timeoutMs);
          waiters.push(waiter);
        });
      },
      async nextJson(timeoutMs) {
        const text = await client.next(timeoutMs);
        try {
          return JSON.parse(text);
        } catch {
          throw new Error(`expected JSON, got ${JSON.stringify(text)}`);
        }
      },
      /** Waits `ms` and asserts that nothing arrived meanwhile. */
      async expectSilence(ms = 200) {
        await new Promise((r) => setTimeout(r, ms));
        if (inbox.length > 0) throw new Error(`unexpected frames: ${JSON.stringify(inbox)}`);
      },
      close() {
        ws.close();
        return new Promise((r) => (ws.readyState === WebSocket.CLOSED ? r() : ws.once("close", r)));
      },
      /** Drops the TCP connection without a close frame. */
      kill() {
        ws.terminate();
      },
    };
    ws.on("message", (data, isBinary) => {
      const text = isBinary ? data : data.toString();
      const w = waiters.shift();
      if (w) w(text);
      else inbox.push(text);
    });
    ws.once("open", () => resolve(client));
    ws.once("unexpected-response", (_req, res) => {
      let body = "";
      res.on("data", (c) => (body += c));
      res.on("end", () => reject(Object.assign(new Error(`upgrade refused: ${res.statusCode} ${body}`), { status: res.statusCode, body })));
    });
    ws.once("error", reject);
    ws.once("close", (code) => (client.closed = code));
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A TCP port nobody listens on now (for a runtime that must keep its URL across restarts). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Polls `fn` until it returns a truthy value or `timeoutMs` passes. */
export async function eventually(fn, timeoutMs = 5000, stepMs = 50) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await sleep(stepMs);
  }
  throw new Error(`condition not met within ${timeoutMs} ms (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
}

/**
 * A `chat.v1` client: frames are parsed JSON; `take(pred)` returns the first
 * buffered or future frame matching `pred` (others stay buffered, in order);
 * `request(frame)` gives the frame an id and resolves with its reply.
 */
export async function connectV1(w, uid, { device = "d1", since, tokenValue, origin } = {}) {
  const q = new URLSearchParams({ token: tokenValue ?? token(uid), device });
  if (since !== undefined) q.set("since", String(since));
  const raw = await openClient(w.wsUrl(`/ws?${q}`), ["chat.v1"], origin ? { origin } : undefined);
  const parse = (text) => (text === "heartbeat" ? { op: "heartbeat" } : JSON.parse(text));
  // Frames that arrived with the upgrade were buffered by openClient.
  const frames = raw.received.splice(0).map(parse);
  let waiters = [];
  raw.ws.removeAllListeners("message");
  raw.ws.on("message", (data) => {
    frames.push(parse(data.toString()));
    const ws = waiters;
    waiters = [];
    ws.forEach((f) => f());
  });
  let nextId = 0;
  const c = {
    raw,
    ws: raw.ws,
    frames,
    take(pred = () => true, timeoutMs = 5000) {
      return new Promise((resolve, reject) => {
        let done = false;
        const t = setTimeout(() => {
          // A timed-out wait must not take a frame that arrives later.
          done = true;
          reject(new Error(`no matching frame within ${timeoutMs} ms; buffered: ${JSON.stringify(frames).slice(0, 500)}`));
        }, timeoutMs);
        const look = () => {
          if (done) return;
          const i = frames.findIndex(pred);
          if (i >= 0) {
            done = true;
            clearTimeout(t);
            resolve(frames.splice(i, 1)[0]);
          } else waiters.push(look);
        };
        look();
      });
    },
    /** The next `msg` frame. */
    msg(timeoutMs) {
      return c.take((f) => f.op === "msg", timeoutMs);
    },
    send(frame) {
      raw.ws.send(typeof frame === "string" ? frame : JSON.stringify(frame));
    },
    request(frame, timeoutMs) {
      const id = `r${++nextId}`;
      c.send({ ...frame, id });
      return c.take((f) => f.re === id, timeoutMs);
    },
    /** Waits `ms` and asserts that no frame matching `pred` arrived. */
    async expectNone(pred = () => true, ms = 200) {
      await new Promise((r) => setTimeout(r, ms));
      const hit = frames.find(pred);
      if (hit) throw new Error(`unexpected frame: ${JSON.stringify(hit)}`);
    },
    close: () => raw.close(),
    kill: () => raw.kill(),
  };
  c.welcome = await c.take((f) => f.op === "welcome");
  return c;
}
