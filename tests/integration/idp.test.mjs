// Tokens from an identity provider against the real runtime and a local
// JWKS server started here: RS256 and ES256 verified with WebCrypto, a key
// rotation (a new kid, or a new key under the same kid), an unknown kid,
// issuer and audience checks, alg confusion (an HS256 token signed with the
// public key), and the JWKS endpoint down
// (known keys keep working; unknown ones are refused at once).
import assert from "node:assert/strict";
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign } from "node:crypto";
import { createServer } from "node:http";
import { createHmac } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { connectV1, freePort, sleep, startWorker, token } from "../harness.mjs";

const b64url = (b) => Buffer.from(b).toString("base64url");

/** A signing key of `alg` named `kid`: its public JWK, and a token signer. */
function keyPair(alg, kid) {
  const { privateKey, publicKey } =
    alg === "RS256" ? generateKeyPairSync("rsa", { modulusLength: 2048 }) : generateKeyPairSync("ec", { namedCurve: "P-256" });
  const jwk = { ...publicKey.export({ format: "jwk" }), kid, use: "sig", alg };
  const signToken = (claims, header = {}) => {
    const h = b64url(JSON.stringify({ alg, typ: "JWT", kid, ...header }));
    const p = b64url(JSON.stringify(claims));
    // JWS ES256 signatures are r||s (IEEE P1363), not DER.
    const options = alg === "ES256" ? { key: privateKey, dsaEncoding: "ieee-p1363" } : privateKey;
    return `${h}.${p}.${b64url(sign("sha256", Buffer.from(`${h}.${p}`), options))}`;
  };
  return { jwk, sign: signToken, publicPem: publicKey.export({ format: "pem", type: "spki" }) };
}

describe("identity provider tokens (JWT_JWKS_URL)", () => {
  let w, server, url;
  const jwks = { keys: [], mode: "up", hits: 0 };
  const rsa = keyPair("RS256", "rsa-1");
  const ec = keyPair("ES256", "ec-1");
  const later = keyPair("RS256", "rsa-2");
  const claims = (sub, extra = {}) => ({ sub, exp: Math.floor(Date.now() / 1000) + 600, iss: "https://id.test", aud: ["chat", "other"], ...extra });

  before(async () => {
    const port = await freePort();
    server = createServer((req, res) => {
      jwks.hits++;
      if (jwks.mode === "down") return res.writeHead(503).end();
      if (jwks.mode === "hang") return; // never answers
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ keys: jwks.keys }));
    });
    await new Promise((ok) => server.listen(port, "127.0.0.1", ok));
    url = `http://127.0.0.1:${port}/.well-known/jwks.json`;
    jwks.keys = [rsa.jwk, ec.jwk];
    // A fetch for an unknown kid at most every 2 s here (a minute by default).
    const bindings = { JWT_JWKS_URL: url, JWT_ISSUER: "https://id.test", JWT_AUDIENCE: "chat", JWT_JWKS_REFETCH_S: "2" };
    w = await startWorker({ bindings });
  });
  after(async () => {
    await w.close();
    server.closeAllConnections();
    server.close();
  });

  const history = (t) => w.fetch("/v1/history", { headers: { authorization: `Bearer ${t}` } });
  const status = async (t) => (await history(t)).status;
  const error = async (t) => (await (await history(t)).json()).error;

  test("RS256 and ES256 tokens of the provider are accepted, over HTTP and for a socket", async () => {
    assert.equal(await status(rsa.sign(claims("idp1"))), 200);
    assert.equal(await status(ec.sign(claims("idp2"))), 200);
    const c = await connectV1(w, "idp1", { tokenValue: rsa.sign(claims("idp1")) });
    assert.equal(c.welcome.user, "idp1");
    await c.close();
    // Our own HS256 tokens keep working beside them.
    assert.equal(await status(token("idp3")), 200);
  });

  test("a wrong signature, issuer, audience or expiry is refused with its reason", async () => {
    const t = rsa.sign(claims("idp4"));
    const [h, p] = t.split(".");
    const forged = `${h}.${b64url(JSON.stringify(claims("someone-else")))}.${t.split(".")[2]}`;
    assert.equal(await status(forged), 401);
    assert.match(await error(forged), /signature/);
    assert.match(await error(rsa.sign(claims("idp4", { iss: "https://evil.test" }))), /iss/);
    assert.match(await error(rsa.sign(claims("idp4", { aud: "web" }))), /aud/);
    assert.match(await error(rsa.sign(claims("idp4", { exp: 1 }))), /expired/);
    assert.equal(await status(`${h}.${p}.`), 401, "no signature");
  });

  test("alg confusion: an HS256 token keyed with the provider's public key is refused", async () => {
    const h = b64url(JSON.stringify({ alg: "HS256", typ: "JWT", kid: "rsa-1" }));
    const p = b64url(JSON.stringify(claims("idp5")));
    const mac = createHmac("sha256", rsa.publicPem).update(`${h}.${p}`).digest("base64url");
    assert.equal(await status(`${h}.${p}.${mac}`), 401);
    const none = `${b64url(JSON.stringify({ alg: "none", kid: "rsa-1" }))}.${p}.`;
    assert.equal(await status(none), 401);
    // An RS256 header over an EC key's signature: the key of the other kind is not used.
    const swapped = ec.sign(claims("idp5"), { alg: "RS256", kid: "ec-1" });
    assert.equal(await status(swapped), 401);
  });

  test("a rotation is picked up; an unknown kid fetches at most once per interval; the endpoint down keeps known keys", async () => {
    // A key the provider publishes only now: the first token naming it fetches the set again.
    jwks.keys = [rsa.jwk, ec.jwk, later.jwk];
    await sleep(2100);
    const hits = jwks.hits;
    assert.equal(await status(later.sign(claims("idp6"))), 200);
    assert.equal(jwks.hits - hits, 1, "one fetch for the new kid");
    // Made-up kids: refused, and within the interval no more fetches.
    for (let i = 0; i < 5; i++) assert.equal(await status(rsa.sign(claims("idp7"), { kid: `nope-${i}` })), 401);
    assert.equal(jwks.hits - hits, 1, "no fetch per unknown kid");
    assert.match(await error(rsa.sign(claims("idp7"), { kid: "nope" })), /unknown key/);
    // A key the provider dropped is refused once the set is fetched again.
    jwks.keys = [ec.jwk, later.jwk];
    await sleep(2100);
    assert.equal(await status(rsa.sign(claims("idp7"), { kid: "nope-5" })), 401, "fetches the set again");
    assert.equal(await status(rsa.sign(claims("idp7"))), 401, "rsa-1 is gone");
    // The endpoint down, then hanging: known keys keep working at once,
    // and a token with an unknown key is refused, not held.
    for (const mode of ["down", "hang"]) {
      jwks.mode = mode;
      await sleep(2100);
      const t0 = Date.now();
      assert.equal(await status(rsa.sign(claims("idp8"), { kid: `new-${mode}` })), 401);
      assert.ok(Date.now() - t0 < 6000, `${mode}: refused within the fetch timeout (${Date.now() - t0} ms)`);
      const t1 = Date.now();
      assert.equal(await status(ec.sign(claims("idp8"))), 200, `${mode}: a known key`);
      assert.ok(Date.now() - t1 < 1000, `${mode}: nothing waited on the provider`);
    }
    jwks.mode = "up";
  });

  test("a key rotated under the same kid is fetched on a bad signature, at most once per interval (issue 24, item 7)", async () => {
    const rotated = keyPair("RS256", "rsa-2"); // the kid of `later`, a new key
    assert.equal(await status(later.sign(claims("idp9"))), 200, "the key known now");
    jwks.keys = [ec.jwk, rotated.jwk];
    await sleep(2100);
    const hits = jwks.hits;
    assert.equal(await status(rotated.sign(claims("idp9"))), 200, "the signature failed with the old key: the set is fetched again");
    assert.equal(jwks.hits - hits, 1, "one fetch");
    // The replaced key is refused, and bad signatures within the interval fetch nothing.
    for (let i = 0; i < 3; i++) assert.equal(await status(later.sign(claims("idp9"))), 401);
    assert.match(await error(later.sign(claims("idp9"))), /signature/);
    assert.equal(jwks.hits - hits, 1, "no fetch per bad signature");
  });
});

describe("without an identity provider", () => {
  let w;
  before(async () => (w = await startWorker()));
  after(() => w.close());

  test("RS256 tokens are refused and HS256 ones work", async () => {
    const rsa = keyPair("RS256", "k");
    const r = await w.fetch("/v1/history", { headers: { authorization: `Bearer ${rsa.sign({ sub: "u", exp: Math.floor(Date.now() / 1000) + 60 })}` } });
    assert.equal(r.status, 401);
    assert.match((await r.json()).error, /algorithm/);
    assert.equal((await w.fetch("/v1/history", { headers: { authorization: `Bearer ${token("u")}` } })).status, 200);
  });
});
