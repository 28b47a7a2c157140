//! A delete "for me" wins over later edits on the deleter's side (issue 24,
//! item 12), natively: the real `Mailbox` over the log's SQL, with a v1
//! device that records its frames. The edit is stored with the shared body
//! (history takes it), while the deleter's devices get it, live and in a
//! replay, carrying their tombstone.

mod support;

use edge_chat::edits::EditOp;
use edge_chat::internal::Delivery;
use edge_chat::limits::Limits;
use edge_chat::log::Log;
use edge_chat::mailbox::{Appended, Config, DeliverStep, Io, Mailbox, SendPlan};
use edge_chat::message::Kind;
use serde_json::{json, Value};
use support::device::Device;
use support::sqlite::Lite;
use support::uid;

struct Bob {
    log: Log<Lite>,
    mb: Mailbox,
    device: Device,
    now: u64,
}

impl Bob {
    fn new() -> Bob {
        let mut b = Bob {
            log: Lite::log(),
            mb: Mailbox::new(Config::new(Limits::default(), 500, 1000)),
            device: Device::online(),
            now: 1_000_000,
        };
        let io = Io { log: &b.log, sockets: &b.device, now: b.now };
        b.mb.load(&io, &uid("bob")).unwrap();
        b.mb.connect_v1(&io, &(), "phone", None).unwrap();
        b
    }

    fn append(&mut self, entry: edge_chat::log::NewEntry) {
        let io = Io { log: &self.log, sockets: &self.device, now: self.now };
        assert!(matches!(self.mb.append(&io, entry), Appended::Now(Ok(_))));
        self.mb.cooled();
    }

    /// Alice's object delivers an entry (a chat, or an op on one).
    fn alice_delivers(&mut self, kind: Kind, id: &str, body: Value) {
        self.now += 1000;
        let d = Delivery {
            owner: uid("bob"),
            kind,
            id: id.into(),
            time_ms: self.now,
            peer: Some(uid("alice")),
            dedup: false,
            backend: false,
            key: None,
        };
        let io = Io { log: &self.log, sockets: &self.device, now: self.now };
        let DeliverStep::Append(entry) = self.mb.deliver(&io, d, body.to_string()).unwrap() else { panic!("stored") };
        self.append(entry);
    }

    /// Bob deletes `mid` for himself.
    fn delete_for_me(&mut self, mid: &str, op_id: &str) {
        self.now += 1000;
        let io = Io { log: &self.log, sockets: &self.device, now: self.now };
        let op = EditOp::Delete { everyone: false };
        let Ok(SendPlan::Local(entry)) = self.mb.plan_edit(&io, mid, op, op_id, Some("c1"), false) else {
            panic!("a delete for me stays in this log")
        };
        self.append(entry);
    }

    /// The `msg` frames of `kind` the device got, live or replayed.
    fn msgs(&self, kind: &str) -> Vec<Value> {
        self.device.0.borrow().iter().filter(|f| f["op"] == "msg" && f["kind"] == kind).cloned().collect()
    }
}

fn id(n: u64) -> String {
    edge_chat::message::new_id(n, n)
}

#[test]
fn an_edit_after_a_delete_for_me_reaches_the_deleters_devices_as_their_tombstone() {
    let mut bob = Bob::new();
    let m = id(1);
    bob.alice_delivers(
        Kind::Received,
        &m,
        json!({"fromUser": "alice", "toUser": "bob", "message": "secret", "id": m, "time": "t0"}),
    );
    bob.delete_for_me(&m, &id(2));
    let edited = json!({"fromUser": "alice", "toUser": "bob", "message": "revived", "id": m, "time": "t0",
                        "edit_version": 1, "edited_at": "t1"});
    bob.alice_delivers(Kind::EditIn, &id(3), json!({"target": m, "body": edited}));

    let live = bob.msgs("edit");
    assert_eq!(live.len(), 1);
    let body = &live[0]["body"];
    assert_eq!(body["target"], json!(m));
    assert!(body["body"].get("message").is_none(), "no text comes back: {body}");
    assert!(body["body"]["deleted_at"].is_string(), "the deleter's tombstone: {body}");

    // A replay of the whole log shows it the same way.
    bob.device.0.borrow_mut().clear();
    let io = Io { log: &bob.log, sockets: &bob.device, now: bob.now };
    bob.mb.connect_v1(&io, &(), "laptop", Some(0)).unwrap();
    let replayed = bob.msgs("edit");
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0]["body"], *body, "live and replayed alike");

    // The stored op keeps the shared body: history (and Alice) take the edit.
    let stored = bob.log.find(&m).unwrap().unwrap().body;
    assert_eq!(serde_json::from_str::<Value>(&stored).unwrap()["message"], "revived");
}

#[test]
fn an_edit_of_a_message_nobody_hid_shows_its_new_text() {
    let mut bob = Bob::new();
    let m = id(1);
    bob.alice_delivers(
        Kind::Received,
        &m,
        json!({"fromUser": "alice", "toUser": "bob", "message": "hi", "id": m, "time": "t0"}),
    );
    let edited = json!({"fromUser": "alice", "message": "hello", "id": m, "edit_version": 1});
    bob.alice_delivers(Kind::EditIn, &id(2), json!({"target": m, "body": edited}));
    assert_eq!(bob.msgs("edit")[0]["body"]["body"]["message"], "hello");
}
