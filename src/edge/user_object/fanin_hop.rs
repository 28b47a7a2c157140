//! A user's object and hot recipients (the decisions are in
//! [`crate::fanin`]): its own rate, told to senders in `x-hot`; its sends'
//! hops through a hot peer's inbox shard; and the batches its own shards
//! hand it, applied as direct deliveries are.

use std::cell::RefCell;
use std::collections::HashMap;

use futures::future::join_all;
use worker::{Env, Headers, Response};

use super::{answer, js_error, log, now_ms, Rid, UserObject};
use crate::edge::hop::{self, RawStub};
use crate::edge::INBOX_BINDING;
use crate::fanin::{self, FaninConfig, HotPeers, Meter, Route, ANSWERS_HEADER, HOT_HEADER};
use crate::internal::{Answer, Internal, Outcome};
use crate::mailbox::Remote;
use crate::metrics::{incr, Counter};
use crate::user::UserId;

/// Shard stubs cached (one per shard keeps a sender's deliveries in order).
const MAX_SHARD_STUBS: usize = 256;

pub(super) struct Fanin {
    meter: RefCell<Meter>,
    peers: RefCell<HotPeers>,
    stubs: RefCell<HashMap<String, RawStub>>,
}

impl Fanin {
    pub(super) fn new(env: &Env) -> Fanin {
        let config = FaninConfig::from_vars(|name| env.var(name).ok().map(|v| v.to_string()));
        Fanin {
            meter: RefCell::new(Meter::new(config)),
            peers: RefCell::new(HotPeers::default()),
            stubs: RefCell::new(HashMap::new()),
        }
    }

    /// Entries from `senders` arrive for this user: the shard count to tell them.
    pub(super) fn note<'a>(&self, senders: impl IntoIterator<Item = Option<&'a UserId>>) -> Option<u32> {
        self.meter.borrow_mut().note(now_ms(), senders)
    }

    fn shard_stub(&self, env: &Env, name: &str) -> worker::Result<RawStub> {
        if let Some(s) = self.stubs.borrow().get(name) {
            return Ok(s.clone());
        }
        let stub = hop::stub(&env.durable_object(INBOX_BINDING)?, name)?;
        let mut stubs = self.stubs.borrow_mut();
        if stubs.len() >= MAX_SHARD_STUBS {
            stubs.clear();
        }
        stubs.insert(name.to_owned(), stub.clone());
        Ok(stub)
    }
}

/// A hop's answer, with `x-hot` when this user is hot.
pub(super) fn answer_hot(a: Answer, hot: Option<u32>) -> worker::Result<Response> {
    let Some(k) = hot else { return answer(a) };
    let headers = Headers::new();
    for (name, value) in a.headers() {
        headers.set(name, &value)?;
    }
    headers.set(HOT_HEADER, &k.to_string())?;
    Ok(Response::empty()?.with_status(a.status()).with_headers(headers))
}

impl UserObject {
    /// The hop of a planned send: to the recipient's object, or through
    /// the sender's inbox shard of it while it is hot. `Err`: the hop failed.
    pub(super) async fn hop_deliver(&self, remote: &Remote) -> Result<Answer, String> {
        let request = Internal::Deliver(remote.delivery.clone());
        let fanin = &self.shared.fanin;
        let route = match &remote.delivery.peer {
            Some(sender) => fanin.peers.borrow().route(sender, &remote.to, now_ms()),
            None => Route::Direct,
        };
        let stub = match &route {
            Route::Direct => self.stub(&remote.to),
            Route::Shard(name) => fanin.shard_stub(&self.env, name),
        };
        let stub = stub.map_err(|e| e.to_string())?;
        // From here until the answer, this peer's next sends take the same path.
        fanin.peers.borrow_mut().started(&remote.to, &route);
        let result = hop::deliver(&stub, &request, &remote.body).await;
        let mut peers = fanin.peers.borrow_mut();
        peers.finished(&remote.to);
        match result {
            Ok((answer, hot)) => {
                peers.answered(&remote.to, hot, now_ms());
                Ok(answer)
            }
            Err(e) => {
                drop(peers);
                if let Route::Shard(name) = &route {
                    fanin.stubs.borrow_mut().remove(name);
                }
                Err(js_error(&e))
            }
        }
    }

    /// `InboxBatch`: one of this user's inbox shards hands in what it
    /// gathered. The core decides each delivery ([`fanin::apply_batch`]);
    /// the stored ones are appended together (one group write after the
    /// first), and each gets the answer a direct hop would have.
    pub(super) async fn on_inbox_batch(&self, owner: &UserId, body: &str, rid: Rid) -> worker::Result<Response> {
        incr(Counter::InboxBatches);
        let items = match fanin::parse_batch(owner, body) {
            Ok(items) => items,
            Err(e) => {
                log(self.line(rid, "bad_inbox_batch").err(&e));
                return answer(Answer::of(Outcome::Bad));
            }
        };
        let senders = items.iter().map(|item| match item {
            fanin::BatchItem::Deliver(d, _) => d.peer.as_ref(),
            fanin::BatchItem::Bad => None,
        });
        let hot = self.shared.fanin.note(senders);
        let mut batch = self.call(|mb, io| fanin::apply_batch(mb, io, items));
        for e in std::mem::take(&mut batch.failures) {
            log(self.line(rid, "delivery_unavailable").err(&e));
        }
        let results = join_all(std::mem::take(&mut batch.entries).into_iter().map(|e| self.append(e))).await;
        let stored: Vec<_> = results
            .into_iter()
            .map(|r| r.map_err(|e| log(self.line(rid, "delivery_unavailable").err(&e))).ok())
            .collect();
        let answers = batch.answers(&stored);
        let headers = Headers::new();
        headers.set(ANSWERS_HEADER, &fanin::answers_header(&answers))?;
        if let Some(k) = hot {
            headers.set(HOT_HEADER, &k.to_string())?;
        }
        Ok(Response::empty()?.with_status(200).with_headers(headers))
    }
}
