//! The Worker entry: authenticates every request, then routes it. No request
//! reaches a user's object without a verified user id, and the id the object
//! sees is always the one the entry verified, never one from the client.

use futures::future::join_all;
use worker::{event, Context, Env, Method, Request, RequestInit, Response};

use super::idp::Idp;
use super::{analytics, group_object, log, Rid};
use super::{d1, hop};
use super::{json, json_error, json_http_error, limits, now_ms, push_config, query_pairs, query_param, random_u64};
use super::{with_retry_after, USER_BINDING};
use crate::api::{self, BodyError};
use crate::auth::{self, Alg, AuthError, Verified};
use crate::group::calls;
use crate::group::{Actor, GroupId};
use crate::history::{from_owner_rows, PageQuery};
use crate::http_error::{self, Code, HttpError};
use crate::idempotency;
use crate::internal::{ApiEdit, ApiSend, BlockOp, Delivery, Internal, Outcome, V1Connect, View};
use crate::limits::Limits;
use crate::message::{derived_id, new_id, system_body, Kind};
use crate::metrics::{self, incr, Counter};
use crate::protocol::v1::SUBPROTOCOL;
use crate::user::UserId;

const SECRETS: [&str; 2] = ["JWT_SECRET", "API_KEY"];
/// Lifetime of a token from `/dev/token`.
const DEV_TOKEN_TTL_S: u64 = 3600;

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    console_error_panic_hook::set_once();
    incr(Counter::WorkerRequests);
    analytics::flush(&env);
    let rid = Rid::of(&req);
    let path = req.path();
    if path == "/healthz" {
        return Response::ok("ok");
    }
    if path == "/openapi.json" && req.method() == Method::Get {
        // docs/openapi.yaml, rendered (tests/api/render.py checks it is current).
        return json(200, include_str!("../../docs/openapi.json"));
    }
    let mut secrets = Vec::with_capacity(SECRETS.len());
    for name in SECRETS {
        match env.secret(name).map(|s| s.to_string()) {
            Ok(v) if !v.is_empty() => secrets.push(v),
            // Never fall back to a default: a missing secret is a broken deploy.
            _ => return misconfigured(rid, &format!("secret {name} is not set")),
        }
    }
    let (jwt_secret, api_key) = (&secrets[0], &secrets[1]);
    let limits = match limits(&env) {
        Ok(l) => l,
        Err(e) => return misconfigured(rid, &e.to_string()),
    };
    if let Err(e) = push_config(&env) {
        return misconfigured(rid, &e.to_string());
    }
    let answer = match (req.method(), path.as_str()) {
        (Method::Get, "/ws") => connect(req, &env, jwt_secret).await,
        (Method::Post, "/v1/ws-ticket") => match client_user(&req, &env, jwt_secret).await? {
            Ok(v) => forward(&env, &Internal::Ticket { uid: v.user, exp: v.exp }).await,
            Err(e) => unauthorized(e),
        },
        (Method::Get, "/dev/token") => dev_token(&req, &env, jwt_secret),
        (Method::Get, "/ws/history") => forward_read(req, &env, jwt_secret, &limits, View::Legacy).await,
        (Method::Get, "/v1/history") => forward_read(req, &env, jwt_secret, &limits, View::V1).await,
        (Method::Get, "/v1/conversations") => forward_read(req, &env, jwt_secret, &limits, View::Conversations).await,
        (_, p) if p == "/v1/blocks" || p.starts_with("/v1/blocks/") || p.starts_with("/v1/mutes/") => {
            client_blocks(req, &env, jwt_secret, &limits).await
        }
        (Method::Get | Method::Put, "/v1/settings") => settings(req, &env, jwt_secret, &limits).await,
        (_, p) if p == "/v1/groups" || p.starts_with("/v1/groups/") => {
            client_groups(req, &env, jwt_secret, &limits).await
        }
        (_, p) if p == "/api/groups" || p.starts_with("/api/groups/") => {
            let authz = req.headers().get("authorization")?;
            if let Err(e) = auth::verify_api_key(authz.as_deref(), api_key) {
                return unauthorized(e);
            }
            groups(req, &env, &limits, Actor::Backend, "/api/groups").await
        }
        (Method::Post, "/api/sys-msg")
        | (Method::Post, "/api/blocks")
        | (Method::Post, "/api/edit")
        | (Method::Post, "/api/delete")
        | (Method::Post, "/api/usr-msg")
        | (Method::Get, "/api/metrics")
        | (Method::Post, "/api/history/upgrade") => {
            let authz = req.headers().get("authorization")?;
            if let Err(e) = auth::verify_api_key(authz.as_deref(), api_key) {
                return unauthorized(e);
            }
            match path.as_str() {
                "/api/metrics" => {
                    let mut counts = metrics::snapshot();
                    let pages = core::arch::wasm32::memory_size(0) as u64;
                    counts["wasm_memory_bytes"] = (pages * 65_536).into();
                    json(200, &counts.to_string())
                }
                "/api/history/upgrade" => upgrade_history(&req, &env, &limits, rid).await,
                "/api/blocks" => moderation_block(req, &env, &limits).await,
                "/api/edit" => moderation_edit(req, &env, &limits, false).await,
                "/api/delete" => moderation_edit(req, &env, &limits, true).await,
                p => backend(req, &env, &limits, p == "/api/sys-msg").await,
            }
        }
        _ => json_error(404, "no such route"),
    };
    with_retry_after(answer?).await
}

/// `GET /dev/token?user=<id>`: a client token for any user, so the demo page
/// can sign in. Only when the `DEV_TOKENS` var is `1` (`npm run dev` sets it);
/// otherwise the route does not exist.
fn dev_token(req: &Request, env: &Env, secret: &str) -> worker::Result<Response> {
    if !env.var("DEV_TOKENS").is_ok_and(|v| v.to_string() == "1") {
        return json_error(404, "no such route");
    }
    let user = query_param(&query_pairs(req), "user").unwrap_or_default();
    let Ok(user) = UserId::parse(&user) else {
        return json_http_error(&HttpError::field("user", "user must be 1 to 64 of letters, digits, _ - . @"));
    };
    let exp = now_ms() / 1000 + DEV_TOKEN_TTL_S;
    let token = auth::sign_jwt(user.as_str(), exp, secret.as_bytes());
    json(200, &serde_json::json!({ "token": token, "user": user.as_str(), "exp": exp }).to_string())
}

/// `POST /api/history/upgrade?owner=&seq=&limit=`: copies the next `limit`
/// rows (default and most 500) of the per-owner history table that
/// deployments before history by conversation wrote, after `(owner, seq)`,
/// into today's layout; answers how many and where to go on from (`next`,
/// `null` when done). Idempotent: a call repeated or cut short copies
/// nothing twice. `scripts/upgrade-history.mjs` runs it to the end.
async fn upgrade_history(req: &Request, env: &Env, limits: &Limits, rid: Rid) -> worker::Result<Response> {
    let pairs = query_pairs(req);
    let owner = query_param(&pairs, "owner").unwrap_or_default();
    let seq = query_param(&pairs, "seq").map(|s| s.parse::<u64>());
    let limit = query_param(&pairs, "limit").map(|s| s.parse::<u32>());
    let (seq, limit) = match (seq, limit) {
        (Some(Err(_)), _) => return json_http_error(&HttpError::field("seq", "seq must be a sequence number")),
        (_, Some(Err(_))) | (_, Some(Ok(0))) => {
            return json_http_error(&HttpError::field("limit", "limit must be a positive integer"))
        }
        (seq, limit) => (seq.and_then(Result::ok).unwrap_or(0), limit.and_then(Result::ok).unwrap_or(500).min(500)),
    };
    let result = async {
        let rows = d1::owner_rows(env, (&owner, seq), limit).await?;
        let handoffs = from_owner_rows(&rows, d1::shards(env), &limits.partitioning);
        for h in &handoffs {
            let part = limits.partitioning.of(h.first_day * 86_400_000);
            d1::open_partition(env, h.shard, &part, &limits.partitioning, now_ms()).await?;
            d1::write(env, h.shard, &part.table(), &h.rows).await?;
        }
        // Owners are user ids (letters, digits, `_ - . @`): nothing to escape.
        let next = match rows.last().filter(|_| rows.len() == limit as usize) {
            Some(r) => format!(r#"{{"owner":"{}","seq":{}}}"#, r.owner, r.seq),
            None => "null".to_string(),
        };
        Ok::<_, worker::Error>(format!(r#"{{"copied":{},"next":{next}}}"#, rows.len()))
    }
    .await;
    match result {
        Ok(body) => json(200, &body),
        Err(e) => {
            log(rid.line("history_upgrade_failed").err(&e));
            json_error(503, "history is temporarily unavailable; retry")
        }
    }
}

/// 500 for a broken deploy (a missing secret, an invalid var), logged: the
/// operator is the one who can fix it.
fn misconfigured(rid: Rid, what: &str) -> worker::Result<Response> {
    log(rid.line("misconfigured").err(&what));
    json_error(500, &format!("server misconfigured: {what}"))
}

fn unauthorized(e: AuthError) -> worker::Result<Response> {
    json_error(401, e.message())
}

/// The verified user of a client request, from `?token=` or `Authorization`:
/// an HS256 token of ours, or an RS256/ES256 one of the identity provider
/// (`JWT_JWKS_URL`).
async fn client_user(req: &Request, env: &Env, secret: &str) -> worker::Result<Result<Verified, AuthError>> {
    let query_token = query_param(&query_pairs(req), "token");
    let authz = req.headers().get("authorization")?;
    let jwt = match auth::client_token(query_token.as_deref(), authz.as_deref()).and_then(auth::decode) {
        Ok(jwt) => jwt,
        Err(e) => return Ok(Err(e)),
    };
    let now = now_ms();
    if jwt.alg == Alg::Hs256 {
        return Ok(auth::verify_hs256(&jwt, secret.as_bytes(), now / 1000));
    }
    Ok(match Idp::from_env(env) {
        Some(idp) => idp.verify(&jwt, now).await,
        None => Err(AuthError::Algorithm),
    })
}

/// `GET /ws`: the upgrade goes to the user's own object. A client that offers
/// the `chat.v1` subprotocol gets v1 and must name its device; any other
/// client gets the legacy protocol. `?ticket=` (from `POST /v1/ws-ticket`)
/// stands for the token: checked here, used up by the user's object.
async fn connect(req: Request, env: &Env, secret: &str) -> worker::Result<Response> {
    let (v, ticket) = match query_param(&query_pairs(&req), "ticket") {
        Some(text) => match crate::ticket::verify(&text, now_ms(), secret.as_bytes()) {
            Ok(t) => (Verified { user: t.user, exp: t.exp }, Some(t.nonce)),
            Err(e) => return json_error(401, e.message()),
        },
        None => match client_user(&req, env, secret).await? {
            Ok(v) => (v, None),
            Err(e) => return unauthorized(e),
        },
    };
    let upgrade = req.headers().get("upgrade")?.unwrap_or_default();
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return json_error(426, "expected a WebSocket upgrade");
    }
    let allowed = env.var("ALLOWED_ORIGINS").map(|v| v.to_string()).unwrap_or_default();
    if !auth::origin_allowed(&allowed, req.headers().get("origin")?.as_deref()) {
        incr(Counter::RefusedOrigin);
        return json_error(403, "origin not allowed");
    }
    let offered = req.headers().get("sec-websocket-protocol")?.unwrap_or_default();
    let v1 = offered.split(',').any(|p| p.trim() == SUBPROTOCOL);
    let mut device = None;
    if v1 {
        let pairs = query_pairs(&req);
        let param = |name: &str| query_param(&pairs, name);
        let Some(name) = param("device").filter(|d| UserId::parse(d).is_ok()) else {
            let e = HttpError::field("device", "chat.v1 needs device=<id>: 1 to 64 of letters, digits, _ - . @");
            return json_http_error(&e);
        };
        let since = match param("since").map(|s| s.parse::<u64>()) {
            None => None,
            Some(Ok(since)) => Some(since),
            Some(Err(_)) => return json_http_error(&HttpError::field("since", "since must be a sequence number")),
        };
        device = Some(V1Connect { device: name, since });
    }
    let request = Internal::Connect { uid: v.user.clone(), exp: v.exp, v1: device, ticket };
    let mut init = RequestInit::new();
    // The object answers the upgrade, so it needs the client's headers.
    init.with_method(Method::Get).with_headers(req.headers().clone());
    let inner = Request::new_with_init(&request.encode(), &init)?;
    env.durable_object(USER_BINDING)?.get_by_name(v.user.as_str())?.fetch_with_request(inner).await
}

/// `GET /ws/history`, `/v1/history`, `/v1/conversations`: the page checked
/// here, then served by the user's object (which archives what is pending
/// before it reads D1).
async fn forward_read(req: Request, env: &Env, secret: &str, limits: &Limits, view: View) -> worker::Result<Response> {
    let v = match client_user(&req, env, secret).await? {
        Ok(v) => v,
        Err(e) => return unauthorized(e),
    };
    let pairs = query_pairs(&req);
    if let (View::V1, Some(group)) = (view, query_param(&pairs, "group")) {
        return group_history(&pairs, &group, v.user, env, limits).await;
    }
    let page = match PageQuery::parse_within(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())), limits.history_page) {
        Ok(page) => page,
        Err(bad) => {
            if bad.param == "limit" {
                incr(Counter::RefusedPage);
            }
            return json_http_error(&HttpError::field(bad.param, format!("{}: {}", bad.param, bad.problem)));
        }
    };
    forward(env, &Internal::Read { uid: v.user, view, page }).await
}

/// `/v1/groups…`: a user's group requests, on their own behalf.
async fn client_groups(req: Request, env: &Env, secret: &str, limits: &Limits) -> worker::Result<Response> {
    let v = match client_user(&req, env, secret).await? {
        Ok(v) => v,
        Err(e) => return unauthorized(e),
    };
    groups(req, env, limits, Actor::User(v.user), "/v1/groups").await
}

/// A group request (see [`calls::from_http`]), answered by the group's
/// object as it is.
async fn groups(mut req: Request, env: &Env, limits: &Limits, by: Actor, prefix: &str) -> worker::Result<Response> {
    let max = if by == Actor::Backend { limits.body_bytes } else { limits.frame_bytes };
    let Some(body) = read_body(&mut req, max).await? else {
        incr(Counter::RefusedBody);
        let var = if by == Actor::Backend { "BODY_MAX_BYTES" } else { "FRAME_MAX_BYTES" };
        return json_http_error(&HttpError::body_too_large(max, var));
    };
    let body = String::from_utf8_lossy(&body);
    let path = req.path();
    if by == Actor::Backend && req.method() == Method::Get {
        let pairs = query_pairs(&req);
        let (before, limit) = (query_param(&pairs, "before"), query_param(&pairs, "limit"));
        match calls::backend_history(&path[prefix.len()..], before.as_deref(), limit.as_deref()) {
            Some(Ok(call)) => return to_group(env, &call).await,
            Some(Err(e)) => return json_http_error(&e),
            None => {}
        }
    }
    let fresh = GroupId::fresh(random_u64());
    let method = req.method();
    // The backend's group sends (as a user it names) are not held to that
    // user's rate, as its `/api/usr-msg` chats are not.
    let client = by != Actor::Backend;
    match calls::from_http(method.as_ref(), &path[prefix.len()..], &body, by, fresh) {
        // A user's read goes through their own object, which keeps its cursor.
        Ok(calls::Request { group, by: Actor::User(owner), call: calls::Call::Read { up_to, .. } }) => {
            forward(env, &Internal::GroupRead { owner, group, up_to }).await
        }
        // A user's send goes through their own object too: their send rate.
        Ok(call) if client && matches!(call.call, calls::Call::Send { .. }) => through_own_object(env, &call).await,
        Ok(call) => to_group(env, &call).await,
        Err(e) => json_http_error(&e),
    }
}

/// `GET /v1/history?group=…`: a page of the group's history.
async fn group_history(
    pairs: &[(String, String)],
    group: &str,
    user: UserId,
    env: &Env,
    limits: &Limits,
) -> worker::Result<Response> {
    let number = |k: &str| query_param(pairs, k).map(|v| v.parse::<u64>());
    let before = match number("before") {
        Some(Err(_)) => return json_http_error(&HttpError::field("before", "before: must be a group_seq")),
        b => b.and_then(Result::ok),
    };
    let limit = match number("limit") {
        None => 50,
        Some(Ok(n)) if (1..=u64::from(limits.history_page)).contains(&n) => n as u32,
        Some(_) => {
            incr(Counter::RefusedPage);
            let problem = format!("limit: must be 1 to {} (HISTORY_PAGE_MAX)", limits.history_page);
            return json_http_error(&HttpError::field("limit", problem));
        }
    };
    match calls::history_request(user, group, before, limit) {
        // Through the user's own object: their read rate.
        Ok(call) => through_own_object(env, &call).await,
        Err(e) => json_http_error(&e),
    }
}

/// Sends a request to its group's object and passes the answer on.
async fn to_group(env: &Env, call: &calls::Request) -> worker::Result<Response> {
    let (status, body) = group_object::call(env, call).await?;
    if body.is_empty() {
        return Ok(Response::empty()?.with_status(status));
    }
    json(status, &body)
}

/// A user's group request, passed on by their own object once it is
/// within their rates ([`Internal::GroupCall`]); its answer is the client's.
async fn through_own_object(env: &Env, call: &calls::Request) -> worker::Result<Response> {
    let Some(owner) = call.by.user() else { return to_group(env, call).await };
    let request = Internal::GroupCall { owner: owner.clone() };
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(call.encode().into()));
    let stub = env.durable_object(USER_BINDING)?.get_by_name(owner.as_str())?;
    stub.fetch_with_request(Request::new_with_init(&request.encode(), &init)?).await
}

/// The block and mute routes of a client: served by the user's own object.
async fn client_blocks(mut req: Request, env: &Env, secret: &str, limits: &Limits) -> worker::Result<Response> {
    let v = match client_user(&req, env, secret).await? {
        Ok(v) => v,
        Err(e) => return unauthorized(e),
    };
    let Some(body) = read_body(&mut req, limits.frame_bytes).await? else {
        incr(Counter::RefusedBody);
        return json_http_error(&HttpError::body_too_large(limits.frame_bytes, "FRAME_MAX_BYTES"));
    };
    let op = match api::block_route(req.method().as_ref(), &req.path(), &body) {
        None => return json_error(404, "no such route"),
        Some(Err(e)) => return json(400, &e.to_json()),
        Some(Ok(op)) => op,
    };
    let request = Internal::Blocks { uid: v.user, op };
    forward(env, &request).await
}

/// `GET|PUT /v1/settings`: the user's settings, served by their object.
async fn settings(mut req: Request, env: &Env, secret: &str, limits: &Limits) -> worker::Result<Response> {
    let v = match client_user(&req, env, secret).await? {
        Ok(v) => v,
        Err(e) => return unauthorized(e),
    };
    let change = match req.method() {
        Method::Put => {
            let Some(body) = read_body(&mut req, limits.frame_bytes).await? else {
                incr(Counter::RefusedBody);
                return json_http_error(&HttpError::body_too_large(limits.frame_bytes, "FRAME_MAX_BYTES"));
            };
            match api::parse_settings(&body) {
                Ok(change) => change,
                Err(e) => return json(400, &e.to_json()),
            }
        }
        _ => Default::default(),
    };
    let request =
        Internal::Settings { uid: v.user, hide_presence: change.hide_presence, group_adds: change.group_adds };
    forward(env, &request).await
}

/// `POST /api/edit` and `POST /api/delete`: the backend edits or deletes a
/// chat for everyone (moderation: no time window), through the sender's object.
async fn moderation_edit(mut req: Request, env: &Env, limits: &Limits, delete: bool) -> worker::Result<Response> {
    let Some(body) = read_body(&mut req, limits.body_bytes).await? else {
        incr(Counter::RefusedBody);
        return json_http_error(&HttpError::body_too_large(limits.body_bytes, "BODY_MAX_BYTES"));
    };
    let key = match idempotency_key(&req)? {
        Ok(key) => key,
        Err(e) => return json_http_error(&e),
    };
    let scope = if delete { "api-delete" } else { "api-edit" };
    match api::parse_group_edit(&body, delete) {
        Some(Ok(m)) => return moderation_group_edit(env, m, key.as_deref(), scope).await,
        Some(Err(e)) => return json(400, &e.to_json()),
        None => {}
    }
    let e = match api::parse_edit(&body, delete) {
        Ok(e) => e,
        Err(e) => return json(400, &e.to_json()),
    };
    let cmid = key.map(|k| api::backend_cmid(&format!("{scope}#{k}")));
    let id = match &cmid {
        Some(cmid) => derived_id(scope, e.uid.as_str(), cmid),
        None => new_id(now_ms(), random_u64()),
    };
    // Remembered bound to this request: the key with another one is refused.
    let route = if delete { "/api/delete" } else { "/api/edit" };
    let cmid = cmid.map(|c| idempotency::bind(&c, &idempotency::fingerprint(route, &body)));
    let request = Internal::Edit(ApiEdit { uid: e.uid, target: e.mid, id: id.clone(), cmid, delete });
    // The fast hop: the object answers with a status alone.
    let stub = hop::stub(&env.durable_object(USER_BINDING)?, request.owner().as_str())?;
    let outcome = hop::call(&stub, &request, &e.body).await.map_or(Outcome::Unavailable, |a| a.outcome);
    match outcome {
        Outcome::Stored { .. } => json(200, &serde_json::json!({ "id": id }).to_string()),
        Outcome::NotFound => json_error(404, "no such chat of this user's (unknown, or older than the log keeps)"),
        Outcome::Conflict => json_error(409, "the message was deleted; nothing changed"),
        Outcome::Full => json_error(507, "the recipient's store is full; nothing changed"),
        Outcome::Bad => {
            json_http_error(&HttpError::field("body", "body: must be an object with a non-empty string `message`"))
        }
        Outcome::KeyReused => json_http_error(&HttpError::new(Code::IdempotencyKeyReused, http_error::KEY_REUSED)),
        Outcome::Done | Outcome::Unavailable => json_error(503, "temporarily unavailable; nothing changed, retry"),
    }
}

/// The call's `Idempotency-Key`, if any; an unusable one is refused, never
/// ignored (ignoring it would store a retry twice).
fn idempotency_key(req: &Request) -> worker::Result<Result<Option<String>, HttpError>> {
    Ok(match req.headers().get("idempotency-key")? {
        None => Ok(None),
        Some(k) if api::idempotency_key_ok(&k) => Ok(Some(k)),
        Some(_) => Err(HttpError::field("Idempotency-Key", api::IDEMPOTENCY_KEY_RULE)),
    })
}

/// `POST /api/edit` and `POST /api/delete` naming a `group`: the group's
/// object edits or deletes its message for everyone and tells every member.
/// With an idempotency key the op's id derives from it, so a retry changes
/// nothing and answers the same id.
async fn moderation_group_edit(
    env: &Env,
    m: api::GroupModeration,
    key: Option<&str>,
    scope: &str,
) -> worker::Result<Response> {
    let id = key.map(|k| derived_id(scope, m.group.as_str(), &api::backend_cmid(&format!("{scope}#{k}"))));
    let call = calls::Call::Moderate { mid: m.mid, sender: m.sender, edit: m.fields, id };
    to_group(env, &calls::Request { group: m.group, by: Actor::Backend, call }).await
}

/// `POST /api/blocks`: the backend blocks or unblocks on a user's behalf.
async fn moderation_block(mut req: Request, env: &Env, limits: &Limits) -> worker::Result<Response> {
    let Some(body) = read_body(&mut req, limits.body_bytes).await? else {
        incr(Counter::RefusedBody);
        return json_http_error(&HttpError::body_too_large(limits.body_bytes, "BODY_MAX_BYTES"));
    };
    let (uid, change) = match api::parse_block(&body) {
        Ok(parsed) => parsed,
        Err(e) => return json(400, &e.to_json()),
    };
    let peer = change.peer().clone();
    let mut answer = forward(env, &Internal::Blocks { uid: uid.clone(), op: BlockOp::Change(change) }).await?;
    if answer.status_code() != 200 {
        return Ok(answer);
    }
    // The object answers as a client's own route does (`user`: the peer);
    // here `user` is whose list changed.
    let text = answer.text().await?;
    match api::moderation_block_answer(&uid, &peer, &text) {
        Some(body) => json(200, &body),
        None => json_error(503, "temporarily unavailable; retry"),
    }
}

/// A request with no body to the object that serves it; its answer is the client's.
async fn forward(env: &Env, request: &Internal) -> worker::Result<Response> {
    let stub = env.durable_object(USER_BINDING)?.get_by_name(request.owner().as_str())?;
    stub.fetch_with_str(&request.encode()).await
}

/// Reads a request body, refusing more than `max` bytes.
async fn read_body(req: &mut Request, max: usize) -> worker::Result<Option<Vec<u8>>> {
    let declared = req.headers().get("content-length")?.and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        return Ok(None);
    }
    let body = req.bytes().await?;
    Ok((body.len() <= max).then_some(body))
}

/// One message of a backend call, ready to go to the object that stores it.
struct Outgoing {
    /// The object the request goes to: the recipient (system) or the sender (chat).
    object: UserId,
    request: Internal,
    body: String,
    id: String,
}

/// `POST /api/sys-msg` and `POST /api/usr-msg`.
async fn backend(mut req: Request, env: &Env, limits: &Limits, system: bool) -> worker::Result<Response> {
    let Some(body) = read_body(&mut req, limits.body_bytes).await? else {
        incr(Counter::RefusedBody);
        return json_http_error(&HttpError::body_too_large(limits.body_bytes, "BODY_MAX_BYTES"));
    };
    let is_array = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    // With an idempotency key, every item's id is derived from it: a retried
    // call stores nothing new and answers the same ids. Each item is
    // remembered bound to the whole request, so the key with another
    // request is refused rather than answered with these ids.
    let key = match idempotency_key(&req)? {
        Ok(key) => key,
        Err(e) => return json_http_error(&e),
    };
    let route = if system { "/api/sys-msg" } else { "/api/usr-msg" };
    let fingerprint = key.as_ref().map(|_| idempotency::fingerprint(route, &body));
    let item_key = |i: usize| key.as_ref().map(|k| format!("{k}#{i}"));
    let bound = |cmid: &str| fingerprint.as_deref().map(|f| idempotency::bind(cmid, f));
    let now = now_ms();
    let outgoing: Result<Vec<Outgoing>, BodyError> = if system {
        api::parse_system_within(&body, limits.api_batch).map(|msgs| {
            msgs.into_iter()
                .enumerate()
                .map(|(i, m)| {
                    let k = item_key(i);
                    let id = k
                        .as_deref()
                        .map_or_else(|| new_id(now, random_u64()), |k| derived_id("api-sys", m.uid.as_str(), k));
                    let request = Internal::Deliver(Delivery {
                        owner: m.uid.clone(),
                        kind: Kind::System,
                        id: id.clone(),
                        time_ms: now,
                        peer: None,
                        dedup: k.is_some(),
                        backend: true,
                        key: k.as_deref().and_then(|k| bound(&api::backend_cmid(k))),
                    });
                    Outgoing { object: m.uid, request, body: system_body(m.fields, &id, now), id }
                })
                .collect()
        })
    } else {
        api::parse_user_within(&body, limits.api_batch).map(|chats| {
            chats
                .into_iter()
                .enumerate()
                .map(|(i, c)| {
                    let cmid = item_key(i).map(|k| api::backend_cmid(&k));
                    let id = match &cmid {
                        Some(cmid) => derived_id("send", c.from.as_str(), cmid),
                        None => new_id(now, random_u64()),
                    };
                    let cmid = cmid.and_then(|c| bound(&c));
                    let request = Internal::Send(ApiSend { uid: c.from.clone(), id: id.clone(), time_ms: now, cmid });
                    let body = serde_json::Value::Object(c.fields).to_string();
                    Outgoing { object: c.from, request, body, id }
                })
                .collect()
        })
    };
    let outgoing = match outgoing {
        Ok(o) => o,
        Err(e) if e.too_many => {
            incr(Counter::RefusedBatch);
            return json_http_error(&HttpError::batch_too_large(limits.api_batch.min(crate::limits::MAX_BATCH)));
        }
        Err(e) => return json(400, &e.to_json()),
    };
    let outcomes = deliver_all(env, &outgoing).await?;
    let stored = |r: &Outcome| matches!(r, Outcome::Stored { .. });
    let ids: Vec<Option<&str>> =
        outgoing.iter().zip(&outcomes).map(|(o, r)| stored(r).then_some(o.id.as_str())).collect();
    if outcomes.iter().all(stored) {
        let doc = if is_array { serde_json::json!({ "ids": ids }) } else { serde_json::json!({ "id": ids[0] }) };
        return json(200, &doc.to_string());
    }
    // Partial failure: say exactly which items were stored and why the others
    // were not, so a retry can send only those that may succeed.
    let (status, doc) = http_error::send_refused(&outcomes, &ids, is_array);
    json(status, &doc)
}

/// Sends each message to its object: one after another per object (so a
/// user's queue keeps the call's order), objects in parallel.
async fn deliver_all(env: &Env, outgoing: &[Outgoing]) -> worker::Result<Vec<Outcome>> {
    let ns = env.durable_object(USER_BINDING)?;
    let mut order: Vec<&UserId> = Vec::new();
    for o in outgoing {
        if !order.contains(&&o.object) {
            order.push(&o.object);
        }
    }
    let chains = order.into_iter().map(|object| {
        let ns = &ns;
        async move {
            let mut results = Vec::new();
            let stub = hop::stub(ns, object.as_str());
            let mut reused = false;
            for (i, o) in outgoing.iter().enumerate().filter(|(_, o)| o.object == *object) {
                let outcome = match &stub {
                    // A reused key: the rest of this object's items are not sent.
                    _ if reused => Outcome::KeyReused,
                    Ok(stub) => hop::call(stub, &o.request, &o.body).await.map_or(Outcome::Unavailable, |a| a.outcome),
                    Err(_) => Outcome::Unavailable,
                };
                reused = outcome == Outcome::KeyReused;
                results.push((i, outcome));
            }
            results
        }
    });
    let mut outcomes = vec![Outcome::Unavailable; outgoing.len()];
    for (i, outcome) in join_all(chains).await.into_iter().flatten() {
        outcomes[i] = outcome;
    }
    Ok(outcomes)
}
