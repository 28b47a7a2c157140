//! The platform layer (wasm only): everything that touches `worker` types.
//! It turns platform events into calls of the core and executes the results.
//!
//! - [`entry`]: the Worker entry: authenticates, then routes to objects.
//! - [`user_object`]: the per-user Durable Object, executing its mailbox.
//! - [`group_object`]: a group's Durable Object, executing its fan-out.
//! - [`sql`]: the SQL port over the object's SQLite (the log's queries are in the core).
//! - [`writer`]: a history shard's writer object, batching users' hand-offs.
//! - [`inbox_shard`]: a hot user's inbox shard, batching senders' deliveries.
//! - [`d1`]: the D1 history gateway.
//! - [`cold`]: the R2 side of cold history.
//! - [`hop`]: the fast object-to-object request.
//! - [`idp`]: identity-provider tokens: their keys fetched, RS256/ES256 checked with WebCrypto.
//! - [`webhook`]: the signed call of the push webhook.
//! - [`analytics`]: the counters written to the fleet's Analytics Engine dataset.

pub mod analytics;
pub mod cold;
pub mod d1;
pub mod entry;
pub mod group_object;
pub mod hop;
pub mod idp;
pub mod inbox_shard;
pub mod sql;
pub mod ticket;
pub mod user_object;
pub mod webhook;
pub mod writer;

use ::worker::{Env, Headers, Response};

use crate::limits::{LimitError, Limits};
use crate::logs::{Level, Line, RequestId};
use crate::push::PushConfig;

/// The Durable Object namespace binding of the per-user objects.
pub const USER_BINDING: &str = "USER";
/// The Durable Object namespace binding of the groups' objects.
pub const GROUP_BINDING: &str = "GROUP";
/// The Durable Object namespace binding of the history writers.
pub const WRITER_BINDING: &str = "WRITER";
/// The Durable Object namespace binding of hot users' inbox shards.
pub const INBOX_BINDING: &str = "INBOX";

thread_local! {
    /// Vars cannot change while an isolate lives, so they are read once.
    static LIMITS: std::cell::OnceCell<Result<Limits, LimitError>> = const { std::cell::OnceCell::new() };
    static LOG_KEY: std::cell::OnceCell<Vec<u8>> = const { std::cell::OnceCell::new() };
    static PUSH: std::cell::OnceCell<Result<Option<PushConfig>, LimitError>> = const { std::cell::OnceCell::new() };
}

/// The operator's limits from the vars, for the entry and the objects alike.
pub fn limits(env: &Env) -> Result<Limits, LimitError> {
    LIMITS.with(|l| l.get_or_init(|| Limits::from_vars(|name| env.var(name).ok().map(|v| v.to_string()))).clone())
}

/// The key of users' hashes in log lines (`LOG_KEY`, else from `API_KEY`).
pub fn log_key(env: &Env) -> Vec<u8> {
    let secret = |name: &str| env.secret(name).ok().map(|s| s.to_string());
    LOG_KEY.with(|k| {
        k.get_or_init(|| crate::logs::log_key(secret("LOG_KEY").as_deref(), &secret("API_KEY").unwrap_or_default()))
            .clone()
    })
}

/// The push webhook's settings from the vars (`None`: no push).
pub fn push_config(env: &Env) -> Result<Option<PushConfig>, LimitError> {
    PUSH.with(|p| p.get_or_init(|| PushConfig::from_vars(|name| env.var(name).ok().map(|v| v.to_string()))).clone())
}

/// Writes a log line, at its level (Workers Logs keeps the level).
pub fn log(line: Line) {
    let text = line.render();
    match line.level() {
        Level::Error => ::worker::console_error!("{text}"),
        Level::Warn => ::worker::console_warn!("{text}"),
        Level::Info => ::worker::console_log!("{text}"),
    }
}

/// The request id of one unit of work (a request, a socket message, an
/// alarm, a detached task): a Worker request's is its `cf-ray`'s.
#[derive(Clone, Copy)]
pub struct Rid(RequestId);

impl Rid {
    pub fn new() -> Rid {
        Rid(RequestId(random_u64()))
    }

    pub fn of(req: &::worker::Request) -> Rid {
        let ray = req.headers().get("cf-ray").ok().flatten();
        ray.and_then(|r| RequestId::from_ray(&r)).map_or_else(Rid::new, Rid)
    }

    /// An error line of this unit of work.
    pub fn line(self, event: &'static str) -> Line {
        Line::error(event, self.0)
    }
}

impl Default for Rid {
    fn default() -> Rid {
        Rid::new()
    }
}

pub fn now_ms() -> u64 {
    ::worker::Date::now().as_millis()
}

/// 64 random bits for message ids (uniqueness, not secrecy).
pub fn random_u64() -> u64 {
    let hi = (::worker::js_sys::Math::random() * 4_294_967_296.0) as u64;
    let lo = (::worker::js_sys::Math::random() * 4_294_967_296.0) as u64;
    (hi << 32) | lo
}

/// The decoded query parameters of a request. Taken from the URL string the
/// runtime already serialized, rather than through `Request::url()`, whose
/// full URL parser and its IDNA tables were about 70 KB of the gzipped wasm.
/// Decoded by the core's [`crate::query`], which is unit-tested and fuzzed.
pub fn query_pairs(req: &::worker::Request) -> Vec<(String, String)> {
    let url = req.inner().url();
    crate::query::parse(crate::query::of_url(&url).as_bytes())
}

/// The value of one query parameter.
pub fn query_param(pairs: &[(String, String)], name: &str) -> Option<String> {
    crate::query::param(pairs, name)
}

/// A JSON error response: `{"error": "..."}`.
pub fn json_error(status: u16, message: &str) -> ::worker::Result<Response> {
    json(status, &serde_json::json!({ "error": message }).to_string())
}

pub fn json(status: u16, body: &str) -> ::worker::Result<Response> {
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    Ok(Response::ok(body)?.with_status(status).with_headers(headers))
}

/// An error answer with its code (see [`crate::http_error`]).
pub fn json_http_error(e: &crate::http_error::HttpError) -> ::worker::Result<Response> {
    json(e.status(), &e.to_json())
}

/// Every 503 leaves with `Retry-After` ([`crate::http_error::RETRY_AFTER_S`]),
/// whoever made it (the entry, a user's or a group's object): set here, on
/// the way out, so no route can forget it. A response from an object has
/// immutable headers, so a 503 is copied.
pub async fn with_retry_after(mut res: Response) -> ::worker::Result<Response> {
    if res.status_code() != 503 || res.headers().has("retry-after")? {
        return Ok(res);
    }
    let headers = Headers::new();
    if let Some(t) = res.headers().get("content-type")? {
        headers.set("content-type", &t)?;
    }
    headers.set("retry-after", &crate::http_error::RETRY_AFTER_S.to_string())?;
    let body = res.bytes().await?;
    Ok(Response::from_bytes(body)?.with_status(503).with_headers(headers))
}
