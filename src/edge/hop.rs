//! The fast path to another object (a user's, a history writer, an inbox shard): a stub's JS `fetch(url, init)`
//! called through our own binding, answered by status code and headers.
//!
//! Building `Request`/`Headers` through the `worker` wrappers and reading a
//! reply body through its stream reader cost more per message than all of our
//! Rust code (measured in the toolchain notes); this keeps one hop to one
//! small JS object and two property reads.

use wasm_bindgen::prelude::*;
use worker::js_sys::{Object, Promise, Reflect};
use worker::wasm_bindgen_futures::JsFuture;
use worker::ObjectNamespace;

use crate::fanin::{self, ANSWERS_HEADER, HOT_HEADER};
use crate::internal::{Answer, Archive, Internal};

#[wasm_bindgen]
extern "C" {
    /// A Durable Object stub, seen as the plain JS object it is.
    #[derive(Clone)]
    pub type RawStub;
    #[wasm_bindgen(method, catch, js_name = fetch)]
    fn fetch(this: &RawStub, url: &str, init: &Object) -> Result<Promise, JsValue>;

    type RawResponse;
    #[wasm_bindgen(method, getter)]
    fn status(this: &RawResponse) -> u16;
    #[wasm_bindgen(method, getter)]
    fn headers(this: &RawResponse) -> RawHeaders;

    type RawHeaders;
    #[wasm_bindgen(method)]
    fn get(this: &RawHeaders, name: &str) -> Option<String>;
}

/// The stub of the object named `name`.
pub fn stub(ns: &ObjectNamespace, name: &str) -> worker::Result<RawStub> {
    Ok(ns.get_by_name(name)?.into_rpc::<RawStub>())
}

/// Sends `request` (with `body`, for those that have one) to `stub`. The
/// answering object always replies with an empty body, so there is nothing
/// to read or cancel.
pub async fn call(stub: &RawStub, request: &Internal, body: &str) -> Result<Answer, JsValue> {
    let body = request.has_body().then_some(body);
    send(stub, request.method(), &request.encode(), body).await
}

/// Hands rows to a shard's history writer.
pub async fn archive(stub: &RawStub, request: &Archive, rows: &str) -> Result<Answer, JsValue> {
    send(stub, "POST", &request.encode(), Some(rows)).await
}

async fn send(stub: &RawStub, method: &str, url: &str, body: Option<&str>) -> Result<Answer, JsValue> {
    let init = Object::new();
    Reflect::set(&init, &"method".into(), &method.into())?;
    if let Some(body) = body {
        Reflect::set(&init, &"body".into(), &body.into())?;
    }
    let res: RawResponse = JsFuture::from(stub.fetch(url, &init)?).await?.unchecked_into();
    let headers = res.headers();
    Ok(Answer::read(res.status(), |name| headers.get(name)))
}

/// A delivery (to a user's object or an inbox shard): the answer, and the
/// shard count when the recipient says it is hot.
pub async fn deliver(stub: &RawStub, request: &Internal, body: &str) -> Result<(Answer, Option<u32>), JsValue> {
    let res = raw(stub, request.method(), &request.encode(), Some(body)).await?;
    let headers = res.headers();
    let answer = Answer::read(res.status(), |name| headers.get(name));
    Ok((answer, fanin::read_hot(headers.get(HOT_HEADER).as_deref())))
}

/// An inbox shard's batch to the user's object: one answer per delivery
/// (all `Unavailable` when the batch failed as a whole), and the hot flag.
pub async fn inbox_batch(
    stub: &RawStub,
    request: &Internal,
    body: &str,
    n: usize,
) -> Result<(Vec<Answer>, Option<u32>), JsValue> {
    let res = raw(stub, request.method(), &request.encode(), Some(body)).await?;
    let headers = res.headers();
    let answers = match res.status() {
        200 => headers.get(ANSWERS_HEADER),
        _ => None,
    };
    Ok((fanin::read_answers(answers.as_deref(), n), fanin::read_hot(headers.get(HOT_HEADER).as_deref())))
}

async fn raw(stub: &RawStub, method: &str, url: &str, body: Option<&str>) -> Result<RawResponse, JsValue> {
    let init = Object::new();
    Reflect::set(&init, &"method".into(), &method.into())?;
    if let Some(body) = body {
        Reflect::set(&init, &"body".into(), &body.into())?;
    }
    Ok(JsFuture::from(stub.fetch(url, &init)?).await?.unchecked_into())
}
