// Runs a command (go test) with two built workers in workerd, through the
// test harness: EDGE_CHAT_URL with the default limits, EDGE_CHAT_TIGHT_URL
// with small ones for the 413 and 507 tests. Exits with the command's code
// once both workers are closed (their state deleted).
//   node clients/go/workers.mjs go test -count=1 -v ./...
import { spawn } from "node:child_process";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { startWorker } from "../../tests/harness.mjs";

const tight = { BODY_MAX_BYTES: "2048", API_MAX_BATCH: "3", QUEUE_MAX: "2", QUEUE_TTL_S: "3" };
const workers = await Promise.all([startWorker(), startWorker({ bindings: tight })]);
const [url, tightUrl] = workers.map((w) => w.url);
console.log(`EDGE_CHAT_URL=${url} EDGE_CHAT_TIGHT_URL=${tightUrl}`);
const [cmd, ...args] = process.argv.slice(2);
const child = spawn(cmd, args, {
  cwd: dirname(fileURLToPath(import.meta.url)),
  env: { ...process.env, EDGE_CHAT_URL: url, EDGE_CHAT_TIGHT_URL: tightUrl },
  stdio: "inherit",
});
const code = await new Promise((resolve) => {
  child.on("error", (e) => (console.error(`${cmd}: ${e.message}`), resolve(1)));
  child.on("exit", (c, signal) => resolve(c ?? (signal ? 1 : 0)));
});
await Promise.all(workers.map((w) => w.close()));
process.exit(code);
