//! The push webhook's call (platform side): a signed `POST` to
//! `PUSH_WEBHOOK_URL` through the runtime's global `fetch`, answered by its
//! status alone. What to send and when is the mailbox's ([`crate::push`]).

use wasm_bindgen::prelude::*;
use worker::js_sys::{Object, Promise, Reflect};
use worker::wasm_bindgen_futures::JsFuture;
use worker::Env;

use crate::log::PushCall;
use crate::push::{signature, PushConfig};

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(catch, js_name = fetch)]
    fn global_fetch(url: &str, init: &Object) -> Result<Promise, JsValue>;

    type WebhookResponse;
    #[wasm_bindgen(method, getter)]
    fn status(this: &WebhookResponse) -> u16;
    #[wasm_bindgen(method, getter)]
    fn body(this: &WebhookResponse) -> JsValue;
    type Body;
    #[wasm_bindgen(method, catch)]
    fn cancel(this: &Body) -> Result<Promise, JsValue>;
}

/// Where pushes go and how they are signed.
pub struct Webhook {
    pub url: String,
    secret: String,
    pub config: PushConfig,
}

impl Webhook {
    /// The webhook, when `PUSH_WEBHOOK_URL` (valid) and the secret
    /// `PUSH_WEBHOOK_SECRET` are both set; otherwise nothing is pushed.
    pub fn from_env(env: &Env) -> Option<Webhook> {
        let config = super::push_config(env).ok()??;
        let url = env.var("PUSH_WEBHOOK_URL").ok()?.to_string();
        let secret = env.secret("PUSH_WEBHOOK_SECRET").ok()?.to_string();
        (!secret.is_empty()).then_some(Webhook { url, secret, config })
    }

    /// Makes `call` once: the answer's status, or `None` when there was none.
    pub async fn send(&self, call: &PushCall, now_ms: u64) -> Option<u16> {
        let init = Object::new();
        let headers = Object::new();
        let set = |o: &Object, k: &str, v: &str| Reflect::set(o, &k.into(), &v.into()).is_ok();
        let ok = set(&headers, "content-type", "application/json")
            && set(&headers, "x-signature", &signature(self.secret.as_bytes(), now_ms / 1000, &call.body))
            && set(&headers, "x-webhook-id", &call.id)
            && set(&headers, "x-webhook-attempt", &(call.attempt + 1).to_string())
            && set(&init, "method", "POST")
            && set(&init, "body", &call.body)
            && Reflect::set(&init, &"headers".into(), &headers).is_ok();
        if !ok {
            return None;
        }
        let res: WebhookResponse = JsFuture::from(global_fetch(&self.url, &init).ok()?).await.ok()?.unchecked_into();
        // The answer's body is never read: cancel it, or it holds the connection.
        if let Some(body) = res.body().dyn_into::<Object>().ok().map(|b| b.unchecked_into::<Body>()) {
            if let Ok(p) = body.cancel() {
                let _ = JsFuture::from(p).await;
            }
        }
        Some(res.status())
    }
}
