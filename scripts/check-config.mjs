#!/usr/bin/env node
// Warns about settings that are fine locally and unsafe in production.
// `npm run deploy:check` runs it before the dry run; it never fails the
// check, it tells. Reads wrangler.toml (or the file given).
//
//   node scripts/check-config.mjs [path/to/wrangler.toml]
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(fileURLToPath(import.meta.url), "..", "..");
const path = process.argv[2] ?? join(root, "wrangler.toml");
const toml = readFileSync(path, "utf8");
const varOf = (name) => toml.match(new RegExp(`^${name}\\s*=\\s*"([^"]*)"`, "m"))?.[1];

const warnings = [];
const origins = varOf("ALLOWED_ORIGINS");
if (origins === undefined || origins.trim() === "") {
  warnings.push(
    "ALLOWED_ORIGINS is empty: any web page may open sockets to this worker with a user's token. " +
      'Set it to your front end\'s origins, comma-separated (ALLOWED_ORIGINS = "https://app.example.com").',
  );
}
if (varOf("DEV_TOKENS") === "1") {
  warnings.push("DEV_TOKENS is 1: /dev/token mints a token for any user. Never deploy it.");
}
for (const w of warnings) console.warn(`warning: ${w}`);
if (warnings.length === 0) console.log("config check: no warnings");
