//! Large groups in the core (issue 25, part 1): a group of 10,000 members
//! is created, sent to and fanned out natively, over the real store, and
//! the fan-out's bookkeeping per answer does not grow with the membership
//! (counted by [`Group::fanout_visits`], never timed), nor does a count of
//! "read by N of M" ([`Group::read_by_visits`]).
//!
//! `large_group_send_time` prints the time per message at 100, 1,000 and
//! 10,000 members (`cargo test --release --test large_groups -- --nocapture`);
//! it asserts delivery, not time.

mod support;

use std::time::Instant;

use edge_chat::group::store::Store;
use edge_chat::group::{
    accept, Accept, Actor, Answer, Config, Delivery, Effect, Group, GroupId, ReadBy, CREATED_LISTS,
};
use edge_chat::limits::Limits;
use edge_chat::user::UserId;
use rusqlite::Connection;
use serde_json::{json, Map, Value};
use support::sqlite::Lite;

const T0: u64 = 1_800_000_000_000;

fn uid(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

fn text(t: &str) -> Map<String, Value> {
    json!({ "message": t }).as_object().unwrap().clone()
}

fn deliveries(effects: Vec<Effect>) -> Vec<Delivery> {
    effects
        .into_iter()
        .filter_map(|e| match e {
            Effect::Deliver(d) => Some(d),
            _ => None,
        })
        .collect()
}

/// A group of `n` members (`m0` the owner) under a `GROUP_MAX_MEMBERS` of `n`.
fn big_group(n: usize) -> Group<Lite> {
    let config = Config { max_members: n as u32, ..Config::default() };
    let store = Store::open(Lite(Connection::open_in_memory().unwrap())).unwrap();
    let mut g = Group::open(store, config).unwrap();
    let others: Vec<UserId> = (1..n).map(|i| uid(&format!("m{i}"))).collect();
    let id = GroupId::parse("gbig").unwrap();
    assert_eq!(g.create(id, &Actor::User(uid("m0")), uid("m0"), &others, "c1", T0), Ok(1));
    g
}

/// Every delivery is applied by its member (who answers how far it got),
/// until none is left. Returns the deliveries made.
fn answer_all(g: &mut Group<Lite>, mut air: Vec<Delivery>, now: u64) -> usize {
    let mut made = 0;
    while let Some(d) = air.pop() {
        made += 1;
        let up_to = d.entries.last().map_or(d.since, |e| e.seq);
        g.answered(&d.member, d.flight, Answer::Applied(up_to), now).unwrap();
        air.extend(deliveries(g.take_effects()));
    }
    made
}

#[test]
fn the_ceiling_of_group_max_members_is_ten_thousand() {
    let at = |v: &str| Limits::from_vars(|k| (k == "GROUP_MAX_MEMBERS").then(|| v.to_owned()));
    assert_eq!(at("10000").map(|l| l.group_max_members), Ok(10_000));
    assert_eq!(at("10001").map_err(|e| e.max), Err(10_000));
}

#[test]
fn the_created_notice_of_a_large_group_names_a_bounded_few() {
    let mut g = big_group(10_000);
    let notice = &deliveries(g.take_effects())[0].entries[0];
    assert!(notice.body.len() < 4096, "the created notice every member gets is {} bytes", notice.body.len());
    let body: Value = serde_json::from_str(&notice.body).unwrap();
    assert_eq!(body["members"].as_array().map(Vec::len), Some(CREATED_LISTS));
    assert_eq!(body["member_count"], 9_999, "the members besides the owner");
    // A group within the list names everyone, as before.
    let mut small = big_group(CREATED_LISTS + 1);
    let body: Value = serde_json::from_str(&deliveries(small.take_effects())[0].entries[0].body).unwrap();
    assert_eq!(body["members"].as_array().map(Vec::len), Some(CREATED_LISTS));
    assert!(body.get("member_count").is_none());
}

#[test]
fn an_answer_costs_the_same_bookkeeping_whatever_the_membership() {
    let n = 10_000;
    let mut g = big_group(n);
    let first = deliveries(g.take_effects());
    assert_eq!(first.len(), n, "the creation notice goes to every member");
    // Every member has a delivery in flight: another message waits for
    // their answers, and looks at none of them.
    let before = g.fanout_visits();
    g.send(&uid("m0"), None, text("hello"), "m2", T0).unwrap();
    assert!(deliveries(g.take_effects()).is_empty(), "one delivery in flight per member");
    assert!(g.fanout_visits() - before <= 2, "a send with everyone in flight visited {}", g.fanout_visits() - before);
    // One member's object (a real log) applies the notice and answers: its
    // next delivery goes out, and no other member is looked at.
    let d = first[17].clone();
    let log = Lite::log();
    let decision = accept(log.group_applied(&d.group).unwrap(), &d);
    assert_eq!(decision, Accept::New { skip: 0, up_to: 1 });
    log.set_group_applied(&d.group, 1).unwrap();
    let before = g.fanout_visits();
    g.answered(&d.member, d.flight, decision.answer().unwrap(), T0 + 5).unwrap();
    let next = deliveries(g.take_effects());
    assert_eq!(next.len(), 1);
    assert_eq!((next[0].member.clone(), next[0].since, next[0].entries[0].seq), (d.member.clone(), 1, 2));
    let visits = g.fanout_visits() - before;
    assert!(visits <= 4, "one answer visited {visits} of {n} members");
    // The rest of the fan-out: every member gets both entries, once.
    let rest: Vec<Delivery> = first.into_iter().filter(|x| x.member != d.member).chain(next).collect();
    let before = g.fanout_visits();
    let made = answer_all(&mut g, rest, T0 + 10);
    assert_eq!(made, 2 * n - 1, "the notice to each of the others, then the message to each");
    let per_answer = (g.fanout_visits() - before) as f64 / made as f64;
    assert!(per_answer <= 4.0, "{per_answer} members visited per answer");
}

#[test]
fn read_by_n_of_m_looks_at_the_entries_since_not_the_members() {
    let n = 10_000;
    let mut g = big_group(n);
    let seq = g.send(&uid("m0"), None, text("read me"), "m2", T0).unwrap().seq;
    for i in 0..n / 2 {
        g.read(&uid(&format!("m{i}")), seq).unwrap();
    }
    for k in 0..3 {
        g.send(&uid("m1"), None, text("later"), &format!("l{k}"), T0).unwrap();
    }
    let before = g.read_by_visits();
    let counts = g.read_by(&Actor::Backend, seq).unwrap();
    assert_eq!(counts, ReadBy { read: (n / 2 - 1) as u32, of: (n - 1) as u32 }, "the sender not counted");
    let visits = g.read_by_visits() - before;
    assert!(visits <= 12, "one count looked at {visits} positions for {n} members");
}

#[test]
fn large_group_send_time() {
    for n in [100, 1_000, 10_000] {
        let t = Instant::now();
        let mut g = big_group(n);
        let air = deliveries(g.take_effects());
        let made = answer_all(&mut g, air, T0);
        assert_eq!(made, n);
        let created = t.elapsed();
        // Unbatched: each message is fanned out to every member before the next.
        let messages = if n >= 10_000 { 5 } else { 20 };
        let t = Instant::now();
        for k in 0..messages {
            let now = T0 + 1 + k;
            g.send(&uid("m1"), None, text("hi"), &format!("x{k}"), now).unwrap();
            let air = deliveries(g.take_effects());
            let made = answer_all(&mut g, air, now);
            assert_eq!(made, n, "message {k} reached every member once");
        }
        let per = t.elapsed().as_secs_f64() * 1000.0 / messages as f64;
        println!(
            "{n} members: create and first fan-out {:.1} ms; per message (send + {n} answers) {per:.2} ms, {:.2} µs per member",
            created.as_secs_f64() * 1000.0,
            per * 1000.0 / n as f64
        );
    }
}
