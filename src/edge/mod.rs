//! The platform layer (wasm only): everything that touches `worker` types.
//!
//! - [`entry`]: the Worker entry: authenticates, then routes to objects.
//! - [`user_object`]: the per-user Durable Object.
//! - [`store`]: the object's SQLite log (schema and queries).
//! - [`d1`]: the D1 history gateway.
//! - [`hop`]: the fast object-to-object request.

pub mod d1;
pub mod entry;
pub mod hop;
pub mod store;
pub mod user_object;

use ::worker::{Headers, Response};

/// The Durable Object namespace binding of the per-user objects.
pub const USER_BINDING: &str = "USER";

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
pub fn query_pairs(req: &::worker::Request) -> Vec<(String, String)> {
    let url = req.inner().url();
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    ::worker::url::form_urlencoded::parse(query.as_bytes()).into_owned().collect()
}

/// The value of one query parameter.
pub fn query_param(pairs: &[(String, String)], name: &str) -> Option<String> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
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
