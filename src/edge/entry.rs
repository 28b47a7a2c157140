//! The Worker entry: authenticates every request, then routes it. No request
//! reaches a user's object without a verified user id, and the id the object
//! sees is always the one the entry verified, never one from the client.

use futures::future::join_all;
use worker::{event, Context, Env, Method, Request, RequestInit, Response};

use super::hop;
use super::{json, json_error, now_ms, query_pairs, query_param, random_u64, USER_BINDING};
use crate::api::{self, BodyError, MAX_BODY_BYTES};
use crate::auth::{self, AuthError, Verified};
use crate::message::{derived_id, new_id, system_body, Kind};
use crate::metrics::{self, incr, Counter};
use crate::protocol::v1::SUBPROTOCOL;
use crate::relay::{Delivery, STATUS_PUSHED, STATUS_QUEUED};
use crate::user::UserId;

const SECRETS: [&str; 2] = ["JWT_SECRET", "API_KEY"];

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    console_error_panic_hook::set_once();
    incr(Counter::WorkerRequests);
    let path = req.path();
    if path == "/healthz" {
        return Response::ok("ok");
    }
    let mut secrets = Vec::with_capacity(SECRETS.len());
    for name in SECRETS {
        match env.secret(name).map(|s| s.to_string()) {
            Ok(v) if !v.is_empty() => secrets.push(v),
            // Never fall back to a default: a missing secret is a broken deploy.
            _ => return json_error(500, &format!("server misconfigured: secret {name} is not set")),
        }
    }
    let (jwt_secret, api_key) = (&secrets[0], &secrets[1]);
    match (req.method(), path.as_str()) {
        (Method::Get, "/ws") => connect(req, &env, jwt_secret).await,
        (Method::Get, "/ws/history") => forward_read(req, &env, jwt_secret, "/history").await,
        (Method::Get, "/v1/history") => forward_read(req, &env, jwt_secret, "/v1/history").await,
        (Method::Get, "/v1/conversations") => forward_read(req, &env, jwt_secret, "/conversations").await,
        (Method::Post, "/api/sys-msg") | (Method::Post, "/api/usr-msg") | (Method::Get, "/api/metrics") => {
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
                p => backend(req, &env, p == "/api/sys-msg").await,
            }
        }
        _ => json_error(404, "no such route"),
    }
}

fn unauthorized(e: AuthError) -> worker::Result<Response> {
    json_error(401, e.message())
}

/// The verified user of a client request, from `?token=` or `Authorization`.
fn client_user(req: &Request, secret: &str) -> worker::Result<Result<Verified, AuthError>> {
    let query_token = query_param(&query_pairs(req), "token");
    let authz = req.headers().get("authorization")?;
    Ok(auth::client_token(query_token.as_deref(), authz.as_deref())
        .and_then(|t| auth::verify_jwt(t, secret.as_bytes(), now_ms() / 1000)))
}

/// `GET /ws`: the upgrade goes to the user's own object. A client that offers
/// the `chat.v1` subprotocol gets v1 and must name its device; any other
/// client gets the legacy protocol.
async fn connect(req: Request, env: &Env, secret: &str) -> worker::Result<Response> {
    let v = match client_user(&req, secret)? {
        Ok(v) => v,
        Err(e) => return unauthorized(e),
    };
    let upgrade = req.headers().get("upgrade")?.unwrap_or_default();
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return json_error(426, "expected a WebSocket upgrade");
    }
    let offered = req.headers().get("sec-websocket-protocol")?.unwrap_or_default();
    let v1 = offered.split(',').any(|p| p.trim() == SUBPROTOCOL);
    let mut inner = worker::url::form_urlencoded::Serializer::new(String::new());
    inner.append_pair("uid", v.user.as_str());
    if v1 {
        let pairs = query_pairs(&req);
        let param = |name: &str| query_param(&pairs, name);
        let Some(device) = param("device").filter(|d| UserId::parse(d).is_ok()) else {
            return json_error(400, "chat.v1 needs device=<id>: 1 to 64 of letters, digits, _ - . @");
        };
        inner.append_pair("device", &device);
        inner.append_pair("exp", &v.exp.to_string());
        if let Some(since) = param("since") {
            if since.parse::<u64>().is_err() {
                return json_error(400, "since must be a sequence number");
            }
            inner.append_pair("since", &since);
        }
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Get).with_headers(req.headers().clone());
    let inner = Request::new_with_init(&format!("https://user/connect?{}", inner.finish()), &init)?;
    env.durable_object(USER_BINDING)?.get_by_name(v.user.as_str())?.fetch_with_request(inner).await
}

/// `GET /ws/history`, `/v1/history`, `/v1/conversations`: served by the
/// user's object (which archives what is pending before it reads D1), with
/// the verified user and the page parameters only.
async fn forward_read(req: Request, env: &Env, secret: &str, path: &str) -> worker::Result<Response> {
    let v = match client_user(&req, secret)? {
        Ok(v) => v,
        Err(e) => return unauthorized(e),
    };
    let mut inner = worker::url::form_urlencoded::Serializer::new(String::new());
    inner.append_pair("uid", v.user.as_str());
    for (k, val) in query_pairs(&req) {
        if matches!(k.as_str(), "limit" | "before" | "after" | "peer") {
            inner.append_pair(&k, &val);
        }
    }
    let inner_url = format!("https://user{path}?{}", inner.finish());
    env.durable_object(USER_BINDING)?.get_by_name(v.user.as_str())?.fetch_with_str(&inner_url).await
}

/// Reads a request body, refusing more than [`MAX_BODY_BYTES`].
async fn read_body(req: &mut Request) -> worker::Result<Option<Vec<u8>>> {
    let declared = req.headers().get("content-length")?.and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Ok(None);
    }
    let body = req.bytes().await?;
    Ok((body.len() <= MAX_BODY_BYTES).then_some(body))
}

/// One message of a backend call, ready to go to the object that stores it.
struct Outgoing {
    /// The object the request goes to: the recipient (system) or the sender (chat).
    object: UserId,
    url: String,
    body: String,
    id: String,
}

/// `POST /api/sys-msg` and `POST /api/usr-msg`.
async fn backend(mut req: Request, env: &Env, system: bool) -> worker::Result<Response> {
    let Some(body) = read_body(&mut req).await? else {
        return json_error(413, &format!("request body over {MAX_BODY_BYTES} bytes"));
    };
    let is_array = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    // With an idempotency key, every item's id is derived from it: a retried
    // call stores nothing new and answers the same ids.
    let key = req.headers().get("idempotency-key")?.filter(|k| !k.is_empty() && k.len() <= 128);
    let item_key = |i: usize| key.as_ref().map(|k| format!("{k}#{i}"));
    let now = now_ms();
    let outgoing: Result<Vec<Outgoing>, BodyError> = if system {
        api::parse_system(&body).map(|msgs| {
            msgs.into_iter()
                .enumerate()
                .map(|(i, m)| {
                    let k = item_key(i);
                    let id = k
                        .as_deref()
                        .map_or_else(|| new_id(now, random_u64()), |k| derived_id("api-sys", m.uid.as_str(), k));
                    let d = Delivery {
                        owner: m.uid.clone(),
                        kind: Kind::System,
                        id: id.clone(),
                        time_ms: now,
                        peer: None,
                        dedup: k.is_some(),
                    };
                    Outgoing {
                        object: m.uid,
                        url: format!("https://user/deliver?{}", d.to_query()),
                        body: system_body(m.fields, &id, now),
                        id,
                    }
                })
                .collect()
        })
    } else {
        api::parse_user(&body).map(|chats| {
            chats
                .into_iter()
                .enumerate()
                .map(|(i, c)| {
                    let mut url = worker::url::form_urlencoded::Serializer::new(String::new());
                    url.append_pair("uid", c.from.as_str()).append_pair("time", &now.to_string());
                    let id = match item_key(i) {
                        Some(k) => {
                            let cmid = format!("api:{k}");
                            url.append_pair("cmid", &cmid);
                            derived_id("send", c.from.as_str(), &cmid)
                        }
                        None => new_id(now, random_u64()),
                    };
                    url.append_pair("id", &id);
                    let url = format!("https://user/send?{}", url.finish());
                    let body = serde_json::Value::Object(c.fields).to_string();
                    Outgoing { object: c.from, url, body, id }
                })
                .collect()
        })
    };
    let outgoing = match outgoing {
        Ok(o) => o,
        Err(e) => return json(400, &e.to_json()),
    };
    let stored = deliver_all(env, &outgoing).await?;
    let ids: Vec<Option<&str>> = outgoing.iter().zip(&stored).map(|(o, ok)| ok.then_some(o.id.as_str())).collect();
    if stored.iter().all(|ok| *ok) {
        let doc = if is_array { serde_json::json!({ "ids": ids }) } else { serde_json::json!({ "id": ids[0] }) };
        return json(200, &doc.to_string());
    }
    // Partial failure: say exactly which items were stored, so a retry can
    // send only the others.
    let doc =
        serde_json::json!({ "error": "some messages could not be stored; retry those with a null id", "ids": ids });
    json(503, &doc.to_string())
}

/// Sends each message to its object: one after another per object (so a
/// user's queue keeps the call's order), objects in parallel.
async fn deliver_all(env: &Env, outgoing: &[Outgoing]) -> worker::Result<Vec<bool>> {
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
            for (i, o) in outgoing.iter().enumerate().filter(|(_, o)| o.object == *object) {
                let ok = match &stub {
                    Ok(stub) => matches!(hop::post(stub, &o.url, &o.body).await, Ok(a) if a.status == STATUS_PUSHED || a.status == STATUS_QUEUED),
                    Err(_) => false,
                };
                results.push((i, ok));
            }
            results
        }
    });
    let mut stored = vec![false; outgoing.len()];
    for (i, ok) in join_all(chains).await.into_iter().flatten() {
        stored[i] = ok;
    }
    Ok(stored)
}
