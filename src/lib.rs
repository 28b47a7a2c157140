//! Real-time messaging at the edge: a Cloudflare Worker with one Durable
//! Object per user.
//!
//! The core is plain Rust with no platform types, tested natively:
//!
//! - [`user`]: what a valid user id is and how the legacy wire writes one.
//! - [`auth`]: client JWTs (HS256; RS256, ES256 from an identity provider)
//!   and the backend API key.
//! - [`jwks`]: an identity provider's keys, and when to fetch them again.
//! - [`ticket`]: one-time socket tickets (so no token goes in a URL): their
//!   format, their check, and the one use a user's object allows.
//! - [`blocks`]: a user's block and mute lists.
//! - [`consent`]: who may put a user in a group (their `group_adds`
//!   setting, blocks and contacts).
//! - [`edits`]: edits and deletes of messages: who may, the new body or
//!   tombstone, and the op entry that carries it.
//! - [`presence`]: what one user may see of another's presence.
//! - [`mailbox`]: the per-user state machine: every decision of a user's
//!   object (group commit, replay, delivery, the send flow, acks, the archive
//!   and prune schedule), events in, effects out.
//! - [`group`]: group conversations (one object per group): members and
//!   roles, the group log and its `group_seq`, the fan-out outbox (a cursor
//!   per member, retried with backoff), the member side's idempotency,
//!   aggregate read receipts; events in, effects out. [`group::store`] is
//!   the group object's SQLite.
//! - [`inbox`]: the delivery arithmetic of a user's log: sequence numbers,
//!   the offline queue, what a connect replays, the archive cursor.
//! - [`log`]: the user's log in SQLite (its schema and every query), over a
//!   synchronous port: DO SQLite on the platform, `rusqlite` in tests.
//! - [`protocol`]: wire text to frames and back, one module per wire mode
//!   ([`protocol::legacy`], [`protocol::v1`]).
//! - [`message`]: chats and their validation, message ids, kinds,
//!   conversation ids, delivered bodies, why a send is refused.
//! - [`internal`]: what the entry and the objects ask of each other (one
//!   request type, encoded and parsed here only) and what a hop answers.
//! - [`fanin`]: hot recipients: when a user's object is hot, which inbox
//!   shard a sender goes through, what a shard batches and when it flushes.
//! - [`archive`]: the path from users' logs to D1: history shards, time
//!   partitions, hand-offs, and when a shard's writer flushes.
//! - [`cold`]: cold history: old partitions exported to R2, and pages read
//!   back from there.
//! - [`history`]: history in D1, one row per message by conversation: the
//!   writers' statements and history pages (all of the D1 SQL).
//! - [`api`]: backend API request bodies.
//! - [`http_error`]: the HTTP API's error answers: a status, a stable code.
//! - [`idempotency`]: the backend's `Idempotency-Key`, bound to its request.
//! - [`metrics`]: counters of billable operations and refusals, for the
//!   cost model, `/api/metrics` and the fleet's Analytics Engine dataset.
//! - [`logs`]: log lines as JSON objects, with no body, token or user id in clear.
//! - [`push`]: the push webhook: what is due, the call's body, its
//!   signature, and its retries.
//! - [`ratelimit`]: the per-user send rate (token bucket).
//! - [`limits`]: operator-set limits (`wrangler.toml` vars) and their defaults.
//! - [`query`]: query strings (form-urlencoded), decoded and encoded.
//! - [`time`]: RFC 3339 timestamps.
//!
//! [`edge`] (wasm only) is the platform layer: it turns platform events into
//! calls of the core and executes what comes back (the Worker entry, the
//! per-user Durable Object, the SQL port, the D1 gateway, the fast hop).

pub mod api;
pub mod archive;
pub mod auth;
pub mod blocks;
pub mod cold;
pub mod consent;
pub mod edits;
pub mod fanin;
pub mod group;
pub mod history;
pub mod http_error;
pub mod idempotency;
pub mod inbox;
pub mod internal;
pub mod jwks;
pub mod limits;
pub mod log;
pub mod logs;
pub mod mailbox;
pub mod message;
pub mod metrics;
pub mod presence;
pub mod protocol;
pub mod push;
pub mod query;
pub mod ratelimit;
pub mod ticket;
pub mod time;
pub mod user;

#[cfg(target_arch = "wasm32")]
pub mod edge;
