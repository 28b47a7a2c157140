//! Real-time messaging at the edge: a Cloudflare Worker with one Durable
//! Object per user.
//!
//! The core is plain Rust with no platform types, tested natively:
//!
//! - [`user`]: what a valid user id is and how the legacy wire writes one.
//! - [`auth`]: client JWTs (HS256) and the backend API key.
//! - [`protocol`]: the frame type between wire text and the core; one
//!   parser/encoder per wire mode ([`protocol::legacy`] today).
//! - [`message`]: message ids, kinds, conversation ids, delivered bodies.
//! - [`inbox`]: the delivery state machine of a user's log: sequence numbers,
//!   the offline queue, what a connect replays, the archive cursor.
//! - [`relay`]: the object-to-object delivery hop, its parameters and answers.
//! - [`history`]: D1 archive batches and history pages (all of the D1 SQL).
//! - [`api`]: backend API request bodies.
//! - [`metrics`]: counters of billable operations, for the cost model.
//! - [`ratelimit`]: the per-user send rate (token bucket).
//! - [`limits`]: operator-set limits (`wrangler.toml` vars) and their defaults.
//! - [`query`]: query strings (form-urlencoded), decoded and encoded.
//! - [`time`]: RFC 3339 timestamps.
//!
//! [`edge`] (wasm only) is the thin platform layer: the Worker entry, the
//! per-user Durable Object, its SQLite store, the D1 gateway, the fast hop.

pub mod api;
pub mod auth;
pub mod history;
pub mod inbox;
pub mod limits;
pub mod message;
pub mod metrics;
pub mod protocol;
pub mod query;
pub mod ratelimit;
pub mod relay;
pub mod time;
pub mod user;

#[cfg(target_arch = "wasm32")]
pub mod edge;
