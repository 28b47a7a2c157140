//! The mailbox's v1 requests and the side tables behind them, natively: the
//! real `Mailbox` over the log's own SQL (run by `rusqlite`), with sockets
//! that record their frames. Conversations, unread counts, read and delivery
//! receipts, idempotent sends and deliveries.

mod support;

use edge_chat::internal::{Answer, Delivery, Outcome, Receipt};
use edge_chat::limits::Limits;
use edge_chat::mailbox::{Appended, Config, DeliverStep, Effect, Io, Mailbox, Notice, V1Step};
use edge_chat::message::Kind;
use edge_chat::protocol::v1;
use edge_chat::user::UserId;
use serde_json::{json, Value};
use support::user::User;

impl User {
    fn new(id: &str) -> User {
        User::new_with(id, Limits::default(), true)
    }

    /// A user under `limits`, with a v1 device connected or not.
    fn new_with(id: &str, limits: Limits, online: bool) -> User {
        User::start(id, Config::new(limits, 500, 1000), online, 1_000_000)
    }

    /// A chat from `peer` arrives through a hop; returns the answer's seq.
    fn receive(&mut self, peer: &str, id: &str, dedup: bool) -> (Outcome, Option<u64>, bool) {
        let d = Delivery {
            owner: self.id.clone(),
            kind: Kind::Received,
            id: id.into(),
            time_ms: self.now,
            peer: UserId::parse(peer).ok(),
            dedup,
            backend: false,
            key: None,
        };
        let io = Io { log: &self.log, sockets: &self.device, now: self.now };
        match self.mb.deliver(&io, d, json!({"message": "hi"}).to_string()).unwrap() {
            DeliverStep::Answer(a) => (a.outcome, a.seq, a.duplicate),
            DeliverStep::Append(entry) => match self.mb.append(&io, entry) {
                Appended::Now(stored) => {
                    self.mb.cooled();
                    let a = Mailbox::delivered(stored.ok());
                    (a.outcome, a.seq, a.duplicate)
                }
                Appended::Wait { .. } => panic!("the log was idle"),
            },
        }
    }

    fn frame(&mut self, text: &str) -> V1Step {
        let io = Io { log: &self.log, sockets: &self.device, now: self.now };
        self.mb.v1_frame(&io, "phone", u64::MAX, text).unwrap()
    }

    fn frames(&self, op: &str) -> Vec<Value> {
        self.device.0.borrow().iter().filter(|f| f["op"] == op).cloned().collect()
    }
}

fn id(n: u64) -> String {
    edge_chat::message::new_id(n, n)
}

#[test]
fn a_repeated_derived_id_is_stored_once_and_answered_as_before() {
    let mut bob = User::new("bob");
    let first = bob.receive("alice", &id(1), true);
    assert_eq!(first, (Outcome::Stored { pushed: true }, Some(1), false));
    assert_eq!(bob.receive("alice", &id(1), true), (Outcome::Stored { pushed: true }, Some(1), true));
    assert_eq!(bob.frames("msg").len(), 1, "the repeat reached no socket");
    assert_eq!(bob.receive("alice", &id(2), false).1, Some(2));
}

#[test]
fn acks_earn_delivery_receipts_and_reads_lower_unread() {
    let mut bob = User::new("bob");
    bob.receive("alice", &id(1), false);
    bob.receive("carol", &id(2), false);
    bob.receive("alice", &id(3), false);
    let io = Io { log: &bob.log, sockets: &bob.device, now: bob.now };
    let rows = bob
        .mb
        .conversations(
            &io,
            &UserId::parse("bob").unwrap(),
            &edge_chat::history::PageQuery { limit: 10, before: None, after: None, peer: None },
        )
        .unwrap();
    let convs: Value = serde_json::from_str(&v1::conversations(&rows, 10, |_| Default::default())).unwrap();
    let unread: Vec<(String, u64)> = convs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["peer"].as_str().unwrap().to_owned(), c["unread"].as_u64().unwrap()))
        .collect();
    assert_eq!(unread, [("alice".to_owned(), 2), ("carol".to_owned(), 1)], "newest activity first");
    bob.mb.take_effects();

    assert_eq!(bob.frame(r#"{"op":"ack","up_to":3}"#), V1Step::Done);
    let mut receipts: Vec<Receipt> = bob
        .mb
        .take_effects()
        .into_iter()
        .filter_map(|e| match e {
            Effect::Notify(Notice::Receipt(r)) => Some(r),
            _ => None,
        })
        .collect();
    receipts.sort_by(|a, b| a.owner.as_str().cmp(b.owner.as_str()));
    assert_eq!(
        receipts.iter().map(|r| (r.owner.as_str(), r.up_to, r.read)).collect::<Vec<_>>(),
        [("alice", 3, false), ("carol", 2, false)]
    );
    assert_eq!(bob.frame(r#"{"op":"ack","up_to":3}"#), V1Step::Done);
    assert!(bob.mb.take_effects().iter().all(|e| !matches!(e, Effect::Notify(_))), "an ack repeated earns nothing");

    let V1Step::Reply(ok) = bob.frame(r#"{"op":"read","id":7,"peer":"alice","up_to":1}"#) else {
        panic!("read answers")
    };
    assert_eq!(serde_json::from_str::<Value>(&ok).unwrap(), json!({"op":"ok","re":7}));
    assert_eq!(bob.frames("unread").last().unwrap(), &json!({"op":"unread","peer":"alice","count":1,"read_up_to":1}));
    let V1Step::Reply(err) = bob.frame(r#"{"op":"read","id":8,"peer":"dave","up_to":1}"#) else { panic!() };
    assert_eq!(serde_json::from_str::<Value>(&err).unwrap()["code"], "bad_field", "no conversation with dave");
}

#[test]
fn a_peer_receipt_maps_to_this_log_and_reaches_the_devices() {
    let mut alice = User::new("alice");
    // Alice's own chats to bob, stored at bob's seqs 4 and 9.
    for (n, peer_seq) in [(1, 4), (2, 9)] {
        let chat = edge_chat::message::Chat {
            from: alice.id.clone(),
            to: UserId::parse("bob").unwrap(),
            fields: json!({"message":"m"}).as_object().unwrap().clone(),
        };
        let io = Io { log: &alice.log, sockets: &alice.device, now: alice.now };
        let Ok(edge_chat::mailbox::SendPlan::Remote(remote)) =
            alice.mb.plan_send(&io, chat, &id(n), alice.now, Some(&format!("c{n}")), false)
        else {
            panic!()
        };
        let entry = alice
            .mb
            .hop_answered(remote, Some(Answer { seq: Some(peer_seq), ..Answer::of(Outcome::Stored { pushed: false }) }))
            .unwrap();
        let io = Io { log: &alice.log, sockets: &alice.device, now: alice.now };
        assert!(matches!(alice.mb.append(&io, entry), Appended::Now(Ok(_))));
        alice.mb.cooled();
    }
    // A send repeated with the same cmid is answered from the record.
    let V1Step::Reply(again) = alice.frame(r#"{"op":"send","id":1,"to":"bob","cmid":"c2","body":{"message":"m"}}"#)
    else {
        panic!()
    };
    let again: Value = serde_json::from_str(&again).unwrap();
    assert_eq!(
        (again["op"].as_str(), again["seq"].as_u64(), again["duplicate"].as_bool()),
        (Some("sent"), Some(2), Some(true))
    );

    let r = Receipt { owner: alice.id.clone(), from: UserId::parse("bob").unwrap(), read: true, up_to: 5 };
    let io = Io { log: &alice.log, sockets: &alice.device, now: alice.now };
    alice.mb.receipt(&io, &r).unwrap();
    assert_eq!(
        alice.frames("receipt"),
        [json!({"op":"receipt","peer":"bob","type":"read","up_to":1})],
        "bob's seq 5 covers alice's seq 1 only"
    );
}

/// The rows of an archive pass's hand-offs (`history::ROW` arrays).
fn rows(handoffs: &[edge_chat::archive::Handoff]) -> Vec<Value> {
    handoffs.iter().flat_map(|h| serde_json::from_str::<Vec<Value>>(&h.rows).unwrap()).collect()
}

#[test]
fn a_received_chat_is_its_senders_to_write_except_when_a_reader_waits() {
    let mut bob = User::new("bob");
    bob.receive("alice", &id(1), false);
    let io = Io { log: &bob.log, sockets: &bob.device, now: bob.now };
    // A pass skips it (alice's pass writes the row) and moves past it.
    let batch = bob.mb.archive_next(&io, false).unwrap().expect("a batch");
    assert!(rows(&batch.handoffs).is_empty(), "nothing handed in");
    assert!(bob.mb.archived(&io, batch).unwrap());
    assert!(bob.mb.archive_next(&io, false).unwrap().is_none());
    // A reader's pass hands in what bob received recently, below the cursor
    // too: alice's pass may not have run yet.
    let recent = rows(&bob.mb.recent_received(&io).unwrap());
    assert_eq!(recent.len(), 1);
    // [conv, id, sender, recipient, kind, time, body, is_send, sseq, rseq]
    assert_eq!(recent[0][0], "u:alice|bob");
    assert_eq!(
        (&recent[0][2], &recent[0][3], &recent[0][8], &recent[0][9]),
        (&json!("alice"), &json!("bob"), &Value::Null, &json!(1))
    );
    // Long after, it is no longer recent.
    let later = Io { log: &bob.log, sockets: &bob.device, now: bob.now + 3_600_000 };
    assert!(bob.mb.recent_received(&later).unwrap().is_empty());
}

#[test]
fn typing_goes_only_to_a_conversation_and_a_few_per_second() {
    let mut bob = User::new("bob");
    let io = Io { log: &bob.log, sockets: &bob.device, now: bob.now };
    let amy = UserId::parse("amy").unwrap();
    assert!(!bob.mb.typing_allowed(&io, &amy).unwrap(), "no conversation with amy");
    bob.receive("amy", &id(1), false);
    let io = Io { log: &bob.log, sockets: &bob.device, now: bob.now };
    let allowed = (0..20).filter(|_| bob.mb.typing_allowed(&io, &amy).unwrap()).count();
    assert_eq!(allowed, 3, "a burst of 20 lets 3 through");
    let later = Io { log: &bob.log, sockets: &bob.device, now: bob.now + 1000 };
    assert_eq!((0..20).filter(|_| bob.mb.typing_allowed(&later, &amy).unwrap()).count(), 3, "3 per second");
}

#[test]
fn one_sender_cannot_take_the_whole_queue() {
    let limits = Limits { queue_per_sender: 3, ..Limits::default() };
    let mut bob = User::new_with("bob", limits, false);
    let outcomes: Vec<Outcome> = (1..=5).map(|n| bob.receive("mallory", &id(n), false).0).collect();
    let full = outcomes.iter().filter(|o| **o == Outcome::Full).count();
    assert_eq!((outcomes.len() - full, full), (3, 2), "{outcomes:?}");
    assert_eq!(bob.receive("alice", &id(10), false).0, Outcome::Stored { pushed: false }, "others still get in");
}

#[test]
fn a_legacy_frame_after_the_token_expired_closes_the_socket() {
    use edge_chat::mailbox::LegacyStep;
    let mut bob = User::new("bob");
    let chat = r#"{"fromUser":"bob","toUser":"amy","message":"hi"}"#;
    let owner = bob.id.clone();
    let exp = bob.now / 1000 + 1;
    assert!(matches!(bob.mb.legacy_frame(&owner, exp, chat, bob.now), LegacyStep::Send(_)));
    assert_eq!(bob.mb.legacy_frame(&owner, exp, chat, (exp) * 1000), LegacyStep::Close(4001, "token expired"));
    assert_eq!(bob.mb.legacy_frame(&owner, exp, "heartbeat", exp * 1000), LegacyStep::Close(4001, "token expired"));
    assert!(
        matches!(bob.mb.legacy_frame(&owner, 0, chat, u64::MAX / 2), LegacyStep::Send(_)),
        "0: accepted before sockets carried it"
    );
}

/// The mailbox's reply to a frame, as JSON.
fn reply(step: V1Step) -> Value {
    match step {
        V1Step::Reply(r) => serde_json::from_str(&r).unwrap(),
        other => panic!("expected a reply, got {other:?}"),
    }
}

#[test]
fn a_blocked_senders_chat_is_answered_as_stored_and_kept_nowhere() {
    let mut bob = User::new("bob");
    bob.receive("mallory", &id(1), false);
    assert_eq!(reply(bob.frame(r#"{"op":"block","id":1,"user":"mallory"}"#)), json!({"op":"ok","re":1}));
    let lists = bob.frames("blocks");
    assert_eq!(lists, [json!({"op":"blocks","lists":{"blocked":["mallory"],"muted":[]}})], "every device learns it");
    let head = bob.mb.head();
    // The same answer a stored chat gets when no socket took it, with no seq.
    assert_eq!(bob.receive("mallory", &id(2), false), (Outcome::Stored { pushed: false }, None, false));
    assert_eq!(bob.receive("mallory", &id(3), true), (Outcome::Stored { pushed: false }, None, false));
    assert_eq!(bob.mb.head(), head, "nothing stored");
    assert_eq!(bob.frames("msg").len(), 1, "nothing shown");
    // Others still get through, and so does the backend on mallory's behalf.
    assert_eq!(bob.receive("carol", &id(4), false).1, Some(head + 1));
    let d = Delivery {
        owner: bob.id.clone(),
        kind: Kind::Received,
        id: id(5),
        time_ms: bob.now,
        peer: UserId::parse("mallory").ok(),
        dedup: false,
        backend: true,
        key: None,
    };
    let io = Io { log: &bob.log, sockets: &bob.device, now: bob.now };
    assert!(matches!(bob.mb.deliver(&io, d, "{}".into()).unwrap(), DeliverStep::Append(_)), "backend sends pass");
    // Unblocking delivers nothing sent meanwhile; new chats arrive again.
    assert_eq!(reply(bob.frame(r#"{"op":"unblock","id":2,"user":"mallory"}"#))["op"], "ok");
    assert_eq!(bob.frames("blocks").last().unwrap()["lists"]["blocked"], json!([]));
    assert_eq!(bob.receive("mallory", &id(6), false).1, Some(head + 2));
}

#[test]
fn a_blocker_cannot_send_to_whom_they_blocked_and_no_hints_cross() {
    let mut bob = User::new("bob");
    bob.receive("mallory", &id(1), false);
    bob.frame(r#"{"op":"block","id":1,"user":"mallory"}"#);
    bob.mb.take_effects();
    let V1Step::Send { re, chat, mid, cmid } =
        bob.frame(r#"{"op":"send","id":2,"to":"mallory","cmid":"c1","body":{"message":"hi"}}"#)
    else {
        panic!("a send")
    };
    let io = Io { log: &bob.log, sockets: &bob.device, now: bob.now };
    let planned = bob.mb.plan_send(&io, chat.clone(), &mid, bob.now, Some(&cmid), false);
    assert_eq!(planned, Err(edge_chat::message::Refusal::Blocked));
    let send: Value = serde_json::from_str(&bob.mb.v1_sent(&re, &mid, &cmid, Err(v1::V1Error::Blocked))).unwrap();
    assert_eq!((send["code"].as_str(), send["retry"].as_bool()), (Some("blocked"), Some(false)));
    let io = Io { log: &bob.log, sockets: &bob.device, now: bob.now };
    assert!(bob.mb.plan_send(&io, chat, &mid, bob.now, Some(&cmid), true).is_ok(), "the backend may");
    // No receipt and no typing to mallory, none from mallory shown.
    bob.frame(r#"{"op":"ack","up_to":1}"#);
    bob.frame(r#"{"op":"read","id":3,"peer":"mallory","up_to":1}"#);
    bob.frame(r#"{"op":"typing","to":"mallory","active":true}"#);
    assert!(bob.mb.take_effects().iter().all(|e| !matches!(e, Effect::Notify(_))), "no hint reaches mallory");
    let mallory = UserId::parse("mallory").unwrap();
    let io = Io { log: &bob.log, sockets: &bob.device, now: bob.now };
    bob.mb.receipt(&io, &Receipt { owner: bob.id.clone(), from: mallory.clone(), read: true, up_to: 1 }).unwrap();
    let t = edge_chat::internal::Typing { owner: bob.id.clone(), from: mallory, active: true };
    bob.mb.typing(&io, &t).unwrap();
    assert!(bob.frames("receipt").is_empty() && bob.frames("typing").is_empty());
}

#[test]
fn the_lists_survive_a_wake_and_a_repeat_writes_nothing() {
    let mut bob = User::new_with("bob", Limits { blocks_max: 2, ..Limits::default() }, true);
    let ok = |v: Value| assert_eq!(v["op"], "ok", "{v}");
    ok(reply(bob.frame(r#"{"op":"block","id":1,"user":"x"}"#)));
    ok(reply(bob.frame(r#"{"op":"mute","id":2,"peer":"y","until":2000000}"#)));
    let full = reply(bob.frame(r#"{"op":"block","id":3,"user":"z"}"#));
    assert_eq!(full["code"], "blocks_full");
    assert_eq!(reply(bob.frame(r#"{"op":"block","id":4,"user":"bob"}"#))["field"], "user", "not yourself");
    let shown = bob.frames("blocks").len();
    ok(reply(bob.frame(r#"{"op":"block","id":5,"user":"x"}"#)));
    assert_eq!(bob.frames("blocks").len(), shown, "a repeat changes nothing");
    // A new object (an eviction) reads them back.
    let mut again = Mailbox::new(Config::new(Limits::default(), 500, 1000));
    let io = Io { log: &bob.log, sockets: &bob.device, now: bob.now };
    again.load(&io, &bob.id).unwrap();
    let x = UserId::parse("x").unwrap();
    let y = UserId::parse("y").unwrap();
    assert!(again.blocked(&x) && !again.blocked(&y));
    assert!(again.muted(&y, bob.now) && !again.muted(&y, 2_000_000));
    let (status, body) = again.blocks_request(&io, &bob.id, edge_chat::internal::BlockOp::List).unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"blocked":["x"],"muted":[{"peer":"y","until":2000000}]})
    );
}

/// A mailbox that pushes (30 s delay, 1 h TTL).
fn push_mailbox() -> Mailbox {
    let mut config = Config::new(Limits::default(), 500, 1000);
    config.push = Some(edge_chat::push::PushConfig { delay_ms: 30_000, ttl_ms: 3_600_000, preview_chars: 0 });
    Mailbox::new(config)
}

/// A user whose mailbox pushes, with or without a device online.
fn pushing(id: &str, online: bool) -> User {
    let mut u = User::new_with(id, Limits::default(), online);
    u.mb = push_mailbox();
    let io = Io { log: &u.log, sockets: &u.device, now: u.now };
    u.mb.load(&io, &u.id).unwrap();
    u
}

impl User {
    /// The alarm fires now: the push calls it makes, each answered `status`.
    fn push_round(&mut self, status: Option<u16>) -> Vec<Value> {
        let io = Io { log: &self.log, sockets: &self.device, now: self.now };
        let due = self.mb.alarm_fired(self.now);
        let mut calls = Vec::new();
        if due.push {
            while let Some(call) = self.mb.push_next(&io).unwrap() {
                let mut body: Value = serde_json::from_str(&call.body).unwrap();
                body["x_id"] = call.id.clone().into();
                body["x_attempt"] = call.attempt.into();
                calls.push(body);
                if !self.mb.push_done(&io, status, 0.5).unwrap() {
                    break;
                }
            }
        }
        self.mb.alarm_done(self.now);
        calls
    }

    /// The alarms set since the last look, and whether a push was started at once.
    fn alarms(&mut self) -> (Vec<u64>, bool) {
        let effects = self.mb.take_effects();
        let push_now = effects.contains(&Effect::Push);
        let alarms = effects
            .into_iter()
            .filter_map(|e| match e {
                Effect::SetAlarm { delay_ms } => Some(delay_ms),
                _ => None,
            })
            .collect();
        (alarms, push_now)
    }
}

#[test]
fn a_message_for_a_user_with_no_socket_is_pushed_at_once_coalesced() {
    let mut bob = pushing("bob", false);
    bob.receive("alice", &id(1), false);
    assert_eq!(bob.alarms(), (vec![500], true), "the push starts at once; the alarm is the archive pass's");
    bob.receive("alice", &id(2), false);
    bob.receive("carol", &id(3), false);
    let calls = bob.push_round(Some(200));
    assert_eq!(calls.len(), 1, "one call for the burst: {calls:?}");
    let convs = &calls[0]["conversations"];
    assert_eq!((convs[0]["peer"].as_str(), convs[0]["waiting"].as_u64()), (Some("alice"), Some(2)));
    assert_eq!((convs[1]["peer"].as_str(), convs[1]["newest"]["seq"].as_u64()), (Some("carol"), Some(3)));
    assert_eq!(calls[0]["unread"], 3);
    assert!(bob.push_round(Some(200)).is_empty(), "nothing twice");
}

#[test]
fn a_device_that_acks_within_the_delay_gets_no_push_one_that_does_not_does() {
    let mut bob = pushing("bob", true);
    bob.receive("alice", &id(1), false);
    assert_eq!(bob.alarms(), (vec![500], false), "the archive pass first; the push falls due later");
    bob.frame(r#"{"op":"ack","up_to":1}"#);
    bob.now += 30_000;
    assert!(bob.push_round(Some(200)).is_empty(), "acked in time");
    bob.receive("alice", &id(2), false);
    bob.now += 29_999;
    assert!(bob.push_round(Some(200)).is_empty(), "not yet");
    bob.now += 1;
    let calls = bob.push_round(Some(200));
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["conversations"][0]["newest"]["seq"], 2);
}

#[test]
fn a_failed_call_is_retried_with_the_same_id_even_after_an_eviction() {
    let mut bob = pushing("bob", false);
    bob.receive("alice", &id(1), false);
    let first = bob.push_round(Some(500));
    assert_eq!(first.len(), 1);
    let (alarms, _) = bob.alarms();
    assert!(alarms.iter().any(|&d| (500..=1000).contains(&d)), "a retry after backoff: {alarms:?}");
    // The object is evicted: a new mailbox over the same storage.
    bob.mb = push_mailbox();
    let io = Io { log: &bob.log, sockets: &bob.device, now: bob.now };
    bob.mb.load(&io, &bob.id).unwrap();
    bob.now += 1000;
    let again = bob.push_round(Some(204));
    assert_eq!(again.len(), 1);
    assert_eq!((again[0]["x_id"].clone(), again[0]["x_attempt"].as_u64()), (first[0]["x_id"].clone(), Some(1)));
    assert!(bob.push_round(Some(200)).is_empty(), "acknowledged: never again");
}

#[test]
fn muted_peers_and_a_read_conversation_push_nothing_and_a_read_is_told() {
    let mut bob = pushing("bob", false);
    bob.frame(r#"{"op":"mute","id":1,"peer":"alice"}"#);
    bob.receive("alice", &id(1), false);
    assert!(bob.push_round(Some(200)).is_empty(), "muted");
    bob.receive("carol", &id(2), false);
    bob.frame(r#"{"op":"read","id":2,"peer":"carol","up_to":2}"#);
    let calls = bob.push_round(Some(200));
    let types: Vec<_> = calls.iter().map(|c| c["type"].as_str().unwrap().to_owned()).collect();
    assert_eq!(types, ["read"], "read before the push was due: only the silent read");
    assert_eq!(calls[0]["conversations"][0], json!({"peer":"carol","unread":0}));
}

#[test]
fn a_call_cut_short_by_an_eviction_is_made_again_with_the_same_id() {
    let mut bob = pushing("bob", false);
    bob.receive("alice", &id(1), false);
    let io = Io { log: &bob.log, sockets: &bob.device, now: bob.now };
    bob.mb.alarm_fired(bob.now);
    let first = bob.mb.push_next(&io).unwrap().expect("a call");
    // Evicted while the call was out: no answer was recorded.
    bob.mb = push_mailbox();
    let io = Io { log: &bob.log, sockets: &bob.device, now: bob.now };
    bob.mb.load(&io, &bob.id).unwrap();
    let again = bob.push_round(Some(200));
    assert_eq!(again.len(), 1);
    assert_eq!(again[0]["x_id"], first.id.as_str(), "the receiver can drop the repeat by its id");
}

/// A group's delivery of entries `from..=to` (kind message), as its object sends it.
fn group_delivery(member: &UserId, since: u64, from: u64, to: u64) -> edge_chat::group::Delivery {
    use edge_chat::group::{Delivery, EntryKind, GroupEntry, GroupId};
    let group = GroupId::parse("gteam").unwrap();
    let entries = (from..=to)
        .map(|s| GroupEntry {
            seq: s,
            id: format!("g{s}"),
            kind: EntryKind::Message,
            sender: UserId::parse("alice").ok(),
            time_ms: 5,
            body: json!({"group": "gteam", "group_seq": s, "fromUser": "alice", "message": format!("m{s}")})
                .to_string(),
        })
        .collect();
    Delivery { group, member: member.clone(), flight: 1, since, entries }
}

/// The group entries of a log, by their group_seq.
fn group_seqs(u: &User) -> Vec<u64> {
    let io = Io { log: &u.log, sockets: &u.device, now: u.now };
    let mut out = Vec::new();
    io.log
        .entries_after(0, |e| {
            if e.kind == Kind::Group {
                out.push(serde_json::from_str::<Value>(&e.body).unwrap()["group_seq"].as_u64().unwrap());
            }
            true
        })
        .unwrap();
    out
}

#[test]
fn a_group_delivery_applies_once_across_wakes_with_its_cursor_written_only_with_the_archive_cursor() {
    use edge_chat::group::Answer;
    let mut bob = User::new("bob");
    let io = Io { log: &bob.log, sockets: &bob.device, now: bob.now };
    let changes = |u: &User| u.log.sql().0.total_changes();
    let query = |u: &User, q: &str| u.log.sql().0.query_row(q, [], |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!(bob.mb.group_delivery(&io, &group_delivery(&bob.id, 0, 1, 3)).unwrap(), Some(Answer::Applied(3)));
    let after_first = changes(&bob);
    assert_eq!(bob.mb.group_delivery(&io, &group_delivery(&bob.id, 0, 1, 3)).unwrap(), Some(Answer::Applied(3)));
    assert_eq!(bob.mb.group_delivery(&io, &group_delivery(&bob.id, 3, 4, 5)).unwrap(), Some(Answer::Applied(5)));
    assert!(changes(&bob) - after_first >= 2, "entries 4 and 5 written");
    assert_eq!(group_seqs(&bob), vec![1, 2, 3, 4, 5]);
    assert_eq!(query(&bob, "SELECT COUNT(*) FROM group_cursor"), 0, "no cursor row per delivery");
    // A wake (eviction) before any archive pass: the entries say how far it got.
    let mut again = Mailbox::new(Config::new(Limits::default(), 500, 1000));
    again.load(&io, &bob.id).unwrap();
    assert_eq!(again.group_delivery(&io, &group_delivery(&bob.id, 0, 1, 5)).unwrap(), Some(Answer::Applied(5)));
    assert_eq!(group_seqs(&bob), vec![1, 2, 3, 4, 5], "a repeat after a wake stores nothing");
    // An archive pass passes them: the cursor is stored with the archive cursor.
    let batch = again.archive_next(&io, false).unwrap().expect("a batch");
    assert!(rows(&batch.handoffs).is_empty(), "group entries never go to D1 from a member");
    assert!(again.archived(&io, batch).unwrap());
    assert_eq!(query(&bob, "SELECT applied FROM group_cursor WHERE grp = 'gteam'"), 5);
    // Another wake: the stored cursor holds, nothing is applied twice, and
    // a delivery from further on is a gap if something is missing.
    let mut third = Mailbox::new(Config::new(Limits::default(), 500, 1000));
    third.load(&io, &bob.id).unwrap();
    assert_eq!(third.group_delivery(&io, &group_delivery(&bob.id, 2, 3, 5)).unwrap(), Some(Answer::Applied(5)));
    assert_eq!(third.group_delivery(&io, &group_delivery(&bob.id, 7, 8, 8)).unwrap(), Some(Answer::Gap(5)));
    assert_eq!(third.group_delivery(&io, &group_delivery(&bob.id, 5, 6, 7)).unwrap(), Some(Answer::Applied(7)));
    assert_eq!(group_seqs(&bob), vec![1, 2, 3, 4, 5, 6, 7]);
    // A wake after which the archive cursor passes entries 6 and 7 with no
    // delivery of the group in between: their cursor is stored all the same.
    let mut fourth = Mailbox::new(Config::new(Limits::default(), 500, 1000));
    fourth.load(&io, &bob.id).unwrap();
    let batch = fourth.archive_next(&io, false).unwrap().expect("a batch");
    assert!(fourth.archived(&io, batch).unwrap());
    let mut fifth = Mailbox::new(Config::new(Limits::default(), 500, 1000));
    fifth.load(&io, &bob.id).unwrap();
    assert_eq!(fifth.group_delivery(&io, &group_delivery(&bob.id, 5, 6, 7)).unwrap(), Some(Answer::Applied(7)));
    assert_eq!(group_seqs(&bob), vec![1, 2, 3, 4, 5, 6, 7], "nothing applied twice");
}

/// Item 16 of issue 24: a backend `Idempotency-Key` is bound to its request.
/// The same request again is answered as the first time; the key with
/// another request is refused (`KeyReused`) and stores nothing.
#[test]
fn a_backend_key_reused_for_another_request_is_refused_and_stores_nothing() {
    use edge_chat::api::backend_cmid;
    use edge_chat::idempotency::{bind, fingerprint};
    use edge_chat::mailbox::{ApiStep, SendPlan};
    let mut bob = User::new("bob");
    let first = fingerprint("/api/sys-msg", br#"{"uid":"bob","type":"a"}"#);
    let other = fingerprint("/api/sys-msg", br#"{"uid":"bob","type":"b"}"#);
    let system = |bob: &mut User, fp: &str| {
        let d = Delivery {
            owner: bob.id.clone(),
            kind: Kind::System,
            id: edge_chat::message::derived_id("api-sys", "bob", "k#0"),
            time_ms: bob.now,
            peer: None,
            dedup: true,
            backend: true,
            key: Some(bind(&backend_cmid("k#0"), fp)),
        };
        let io = Io { log: &bob.log, sockets: &bob.device, now: bob.now };
        match bob.mb.deliver(&io, d, json!({"type": "a"}).to_string()).unwrap() {
            DeliverStep::Answer(a) => (a.outcome, a.seq, a.duplicate),
            DeliverStep::Append(entry) => match bob.mb.append(&io, entry) {
                Appended::Now(stored) => {
                    bob.mb.cooled();
                    let a = Mailbox::delivered(stored.ok());
                    (a.outcome, a.seq, a.duplicate)
                }
                Appended::Wait { .. } => panic!("the log was idle"),
            },
        }
    };
    assert_eq!(system(&mut bob, &first), (Outcome::Stored { pushed: true }, Some(1), false));
    assert_eq!(system(&mut bob, &first), (Outcome::Stored { pushed: true }, Some(1), true), "a retry");
    assert_eq!(system(&mut bob, &other), (Outcome::KeyReused, None, false), "another request");
    assert_eq!(bob.mb.head(), 1, "stored once");

    // A chat on bob's behalf (to himself: stored here alone), keyed the same way.
    let chat = r#"{"fromUser":"bob","toUser":"bob","message":"hi"}"#;
    let (one, two) = (fingerprint("/api/usr-msg", chat.as_bytes()), fingerprint("/api/usr-msg", b"[]"));
    let send = |bob: &mut User, fp: &str| {
        let cmid = bind(&backend_cmid("c#0"), fp);
        let io = Io { log: &bob.log, sockets: &bob.device, now: bob.now };
        let uid = bob.id.clone();
        match bob.mb.api_send(&io, &uid, Some(&cmid), chat).unwrap() {
            ApiStep::Answer(outcome) => outcome,
            ApiStep::Send(c) => {
                let Ok(SendPlan::Local(entry)) = bob.mb.plan_send(&io, c, &id(9), bob.now, Some(&cmid), true) else {
                    panic!("a chat to oneself is stored here")
                };
                let Appended::Now(Ok(_)) = bob.mb.append(&io, entry) else { panic!("stored") };
                bob.mb.cooled();
                Outcome::Stored { pushed: true }
            }
        }
    };
    assert_eq!(send(&mut bob, &one), Outcome::Stored { pushed: true });
    assert_eq!(bob.mb.head(), 2);
    assert_eq!(send(&mut bob, &one), Outcome::Stored { pushed: true }, "a retry");
    assert_eq!(send(&mut bob, &two), Outcome::KeyReused, "another request");
    assert_eq!(bob.mb.head(), 2, "nothing more stored");
    // A row from before keys were bound holds the item key alone: as before.
    let io = Io { log: &bob.log, sockets: &bob.device, now: bob.now };
    let old = backend_cmid("old#0");
    let entry = edge_chat::log::NewEntry {
        id: id(10),
        kind: Kind::Received,
        peer: Some(bob.id.clone()),
        time_ms: bob.now,
        body: json!({"message": "x"}).to_string(),
        peer_state: None,
        cmid: Some(old.clone()),
        dedup: false,
        rewrite: None,
    };
    let Appended::Now(Ok(_)) = bob.mb.append(&io, entry) else { panic!("stored") };
    bob.mb.cooled();
    let uid = bob.id.clone();
    let again = bob.mb.api_send(&io, &uid, Some(&bind(&old, &one)), chat).unwrap();
    assert_eq!(again, ApiStep::Answer(Outcome::Stored { pushed: true }));
}
