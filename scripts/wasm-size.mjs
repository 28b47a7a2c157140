// The wasm budget: the deploy build's wasm, gzipped, must stay under
// WASM_BUDGET_KIB. A tripwire for accidental bloat (a URL parser with its
// IDNA tables was 70 KB once), not a latency target: V8 compiles the whole
// module lazily in about 2-3 ms (measured at 300 KiB gzipped, docs/design.md),
// and the platform takes up to 3 MB compressed on the free plan, 10 MB paid.
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";

export const WASM_BUDGET_KIB = 410;

const file = new URL("../build/index_bg.wasm", import.meta.url);
const kib = gzipSync(readFileSync(file)).length / 1024;
const ok = kib <= WASM_BUDGET_KIB;
console.log(`wasm ${kib.toFixed(1)} KiB gzipped, budget ${WASM_BUDGET_KIB} KiB: ${ok ? "ok" : "OVER"}`);
process.exit(ok ? 0 : 1);
