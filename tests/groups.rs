//! Group conversations in the core, natively: the real [`Group`] over its
//! real store (its SQL run by `rusqlite` through the same `Sql` port the
//! object uses), and members played by real user logs (their
//! `group_cursor`) deciding with the real [`accept`].
//!
//! - refusals, each with its typed error: sends and reads by non-members,
//!   changes by the wrong role, the member cap, the owner leaving or being
//!   removed;
//! - `cmid` idempotency: a retry answers the original and stores nothing;
//! - membership boundaries: a removed member gets the removal and nothing
//!   after, a new member nothing before their join, and reads history from
//!   it;
//! - the fan-out: in order, batched, retried with backoff after a failure,
//!   resumed by the alarm after a restart, and the rows it writes;
//! - aggregate read receipts;
//! - a property test over random interleavings of sends, membership
//!   changes, deliveries that succeed, fail, lose their answer or vanish,
//!   clock ticks and restarts: every member applies exactly the entries of
//!   their membership, in order, no duplicate, no gap.
//!
//! `PROPTEST_CASES` raises the number of cases (default 256).

mod support;

use std::collections::BTreeMap;

use edge_chat::group::store::Store;
use edge_chat::group::{
    accept, Accept, Actor, Answer, Config, Delivery, Effect, EntryKind, Group, GroupEntry, GroupError, GroupId, Op,
    ReadBy, Role,
};
use edge_chat::log::{Log, Sql, SqlValue};
use edge_chat::user::UserId;
use proptest::prelude::*;
use rusqlite::Connection;
use serde_json::{json, Map, Value};
use support::sqlite::Lite;

const T0: u64 = 1_800_000_000_000;

fn uid(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

fn gid() -> GroupId {
    GroupId::parse("gteam").unwrap()
}

fn user(u: &str) -> Actor {
    Actor::User(uid(u))
}

fn text(t: &str) -> Map<String, Value> {
    json!({ "message": t }).as_object().unwrap().clone()
}

fn open(config: Config) -> Group<Lite> {
    let store = Store::open(Lite(Connection::open_in_memory().unwrap())).unwrap();
    Group::open(store, config).unwrap()
}

/// A group created by alice (owner) with `members`.
fn group(members: &[&str], config: Config) -> Group<Lite> {
    let mut g = open(config);
    let members: Vec<UserId> = members.iter().map(|m| uid(m)).collect();
    assert_eq!(g.create(gid(), &user("alice"), uid("alice"), &members, "c1", T0), Ok(1));
    g
}

/// The same database opened again by a new instance of the object.
fn restart(g: Group<Lite>, config: Config) -> Group<Lite> {
    Group::open(Store::open(g.into_store().into_sql()).unwrap(), config).unwrap()
}

fn count(g: &Group<Lite>, sql: &str) -> i64 {
    let mut n = -1;
    g.store()
        .sql()
        .run(sql, &[], &mut |r| {
            if let SqlValue::Int(c) = r[0] {
                n = c;
            }
            false
        })
        .unwrap();
    n
}

fn deliveries(effects: &[Effect]) -> Vec<Delivery> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Deliver(d) => Some(d.clone()),
            _ => None,
        })
        .collect()
}

fn alarm(effects: &[Effect]) -> Option<u64> {
    effects.iter().rev().find_map(|e| match e {
        Effect::SetAlarm { at_ms } => Some(*at_ms),
        _ => None,
    })
}

/// A member's object as far as groups go: a real user log (its
/// `group_cursor`) and the `group_seq`s it appended, in order.
struct Member {
    log: Log<Lite>,
    applied: Vec<u64>,
}

impl Member {
    fn new() -> Member {
        Member { log: Lite::log(), applied: Vec::new() }
    }

    /// What `UserObject` would do with a delivery: decide, append, move the
    /// cursor, answer.
    fn receive(&mut self, d: &Delivery) -> Answer {
        let cursor = self.log.group_applied(&d.group).unwrap();
        let decision = accept(cursor, d);
        if let Accept::New { skip, up_to } = decision {
            self.applied.extend(d.entries[skip..].iter().map(|e| e.seq));
            self.log.set_group_applied(&d.group, up_to).unwrap();
        }
        decision.answer().expect("the group sends well-formed deliveries")
    }
}

/// Plays the platform until nothing is owed: every delivery in the air
/// arrives and is answered, and the alarm fires when that is all that is
/// left. Returns the time.
fn drain(
    g: &mut Group<Lite>,
    members: &mut BTreeMap<UserId, Member>,
    air: &mut Vec<Delivery>,
    alarm_at: &mut Option<u64>,
    mut now: u64,
) -> u64 {
    for _ in 0..10_000 {
        let effects = g.take_effects();
        if let Some(at) = alarm(&effects) {
            *alarm_at = Some(at);
        }
        air.extend(deliveries(&effects));
        if let Some(d) = air.first().cloned() {
            air.remove(0);
            let a = members.entry(d.member.clone()).or_insert_with(Member::new).receive(&d);
            g.answered(&d.member, d.flight, a, now).unwrap();
            continue;
        }
        match alarm_at.take() {
            Some(at) => {
                now = now.max(at);
                g.alarm_fired(now).unwrap();
            }
            None => return now,
        }
    }
    panic!("the fan-out never settles");
}

/// [`drain`] from what the group asks now.
fn settle(g: &mut Group<Lite>, members: &mut BTreeMap<UserId, Member>, now: u64) -> u64 {
    drain(g, members, &mut Vec::new(), &mut None, now)
}

fn applied(members: &BTreeMap<UserId, Member>, u: &str) -> Vec<u64> {
    members.get(&uid(u)).map(|m| m.applied.clone()).unwrap_or_default()
}

#[test]
fn refusals_are_typed() {
    let config = Config { max_members: 4, ..Config::default() };
    let mut g = open(config);
    assert_eq!(g.send(&uid("alice"), None, text("hi"), "m0", T0), Err(GroupError::NoSuchGroup));
    assert_eq!(
        g.create(gid(), &user("bob"), uid("alice"), &[], "c0", T0),
        Err(GroupError::NotAllowed { needs: Role::Owner }),
        "a user creates only a group they own"
    );
    let too_many: Vec<UserId> = ["b", "c", "d", "e"].iter().map(|u| uid(u)).collect();
    assert_eq!(g.create(gid(), &user("alice"), uid("alice"), &too_many, "c0", T0), Err(GroupError::Full { max: 4 }));
    assert_eq!(g.create(gid(), &user("alice"), uid("alice"), &[uid("bob"), uid("carol")], "c1", T0), Ok(1));
    assert_eq!(g.create(gid(), &user("alice"), uid("alice"), &[], "c2", T0), Err(GroupError::AlreadyExists));

    assert_eq!(g.send(&uid("mallory"), None, text("hi"), "m1", T0), Err(GroupError::NotMember));
    assert_eq!(
        g.send(&uid("bob"), None, json!({"message": ""}).as_object().unwrap().clone(), "m1", T0),
        Err(GroupError::EmptyMessage)
    );
    let add = |u: &str| Op::Add { user: uid(u), role: Role::Member };
    assert_eq!(g.change(&user("bob"), add("dave"), "x", T0), Err(GroupError::NotAllowed { needs: Role::Admin }));
    assert_eq!(g.change(&user("mallory"), add("dave"), "x", T0), Err(GroupError::NotMember));
    assert_eq!(
        g.change(&user("bob"), Op::Remove { user: uid("carol") }, "x", T0),
        Err(GroupError::NotAllowed { needs: Role::Admin })
    );
    assert_eq!(g.change(&user("alice"), Op::Remove { user: uid("dave") }, "x", T0), Err(GroupError::NoSuchMember));
    assert_eq!(g.change(&user("alice"), add("bob"), "x", T0), Err(GroupError::AlreadyMember));
    assert_eq!(
        g.change(&user("alice"), Op::Add { user: uid("dave"), role: Role::Owner }, "x", T0),
        Err(GroupError::InvalidRole)
    );
    assert_eq!(g.change(&user("alice"), Op::Leave, "x", T0), Err(GroupError::OwnerMustHandOver));
    assert_eq!(
        g.change(&Actor::Backend, Op::Remove { user: uid("alice") }, "x", T0),
        Err(GroupError::CannotRemoveOwner)
    );
    assert_eq!(
        g.change(&user("alice"), Op::SetRole { user: uid("alice"), role: Role::Member }, "x", T0),
        Err(GroupError::OwnerMustHandOver)
    );
    assert_eq!(g.page(&user("mallory"), None, 10), Err(GroupError::NotMember));
    assert_eq!(g.head(), 1, "no refusal stored anything");
    assert_eq!(count(&g, "SELECT COUNT(*) FROM entries"), 1);

    // An admin adds and removes members, but not admins; the cap holds.
    assert_eq!(g.change(&user("alice"), Op::SetRole { user: uid("bob"), role: Role::Admin }, "r", T0), Ok(2));
    assert_eq!(g.change(&user("bob"), add("dave"), "a1", T0), Ok(3));
    let full = g.change(&user("bob"), add("erin"), "a2", T0);
    assert_eq!(full, Err(GroupError::Full { max: 4 }));
    assert!(full.unwrap_err().to_string().contains("GROUP_MAX_MEMBERS"), "the error names the limit");
    assert_eq!(
        g.change(&user("bob"), Op::Add { user: uid("erin"), role: Role::Admin }, "x", T0),
        Err(GroupError::NotAllowed { needs: Role::Owner }),
        "checked before the cap: only the owner makes admins"
    );
    assert_eq!(g.change(&user("bob"), Op::Remove { user: uid("dave") }, "rm", T0), Ok(4));
    assert_eq!(g.change(&user("bob"), add("erin"), "a3", T0), Ok(5), "room again after a removal");
    assert_eq!(g.change(&user("alice"), Op::SetRole { user: uid("carol"), role: Role::Admin }, "r2", T0), Ok(6));
    assert_eq!(
        g.change(&user("bob"), Op::Remove { user: uid("carol") }, "x", T0),
        Err(GroupError::NotAllowed { needs: Role::Owner }),
        "an admin does not remove another admin"
    );

    // The owner leaves after handing over; the backend moderates.
    assert_eq!(g.change(&user("alice"), Op::HandOver { to: uid("carol") }, "h", T0), Ok(7));
    assert_eq!(g.change(&user("alice"), Op::Leave, "l", T0), Ok(8));
    assert_eq!(g.change(&user("carol"), Op::Leave, "x", T0), Err(GroupError::OwnerMustHandOver));
    assert_eq!(g.change(&Actor::Backend, Op::Remove { user: uid("bob") }, "b", T0), Ok(9));
    assert_eq!(g.change(&Actor::Backend, Op::Leave, "x", T0), Err(GroupError::NotMember));
    let roles: Vec<(String, Role)> = g.members().unwrap().into_iter().map(|m| (m.user.to_string(), m.role)).collect();
    assert_eq!(roles, vec![("carol".into(), Role::Owner), ("erin".into(), Role::Member)]);
    assert_eq!(g.send(&uid("alice"), None, text("hi"), "m2", T0), Err(GroupError::NotMember), "alice left");
}

#[test]
fn a_repeated_cmid_answers_the_original_and_stores_nothing() {
    let mut g = group(&["bob"], Config::default());
    let first = g.send(&uid("bob"), Some("c-1"), text("hi"), "m1", T0).unwrap();
    assert_eq!((first.seq, first.id.as_str(), first.duplicate), (2, "m1", false));
    g.take_effects();
    let again = g.send(&uid("bob"), Some("c-1"), text("hi again"), "m9", T0 + 1000).unwrap();
    assert_eq!((again.seq, again.id.as_str(), again.duplicate), (2, "m1", true));
    assert!(deliveries(&g.take_effects()).is_empty(), "a retry fans nothing out");
    assert_eq!(count(&g, "SELECT COUNT(*) FROM entries"), 2);
    // Another sender's cmid is theirs.
    assert_eq!(g.send(&uid("alice"), Some("c-1"), text("mine"), "m2", T0).unwrap().seq, 3);
    // After 24 h the id is forgotten (and expired by the alarm).
    let later = T0 + 24 * 3600 * 1000 + 1;
    g.alarm_fired(later).unwrap();
    assert_eq!(count(&g, "SELECT COUNT(*) FROM cmids"), 0);
    let new = g.send(&uid("bob"), Some("c-1"), text("new"), "m3", later).unwrap();
    assert_eq!((new.seq, new.duplicate), (4, false));
}

#[test]
fn members_get_exactly_their_membership_and_read_from_their_join() {
    let mut g = group(&["bob"], Config::default());
    let mut members = BTreeMap::new();
    g.send(&uid("alice"), None, text("one"), "m2", T0).unwrap(); // 2
    let add = g.change(&user("alice"), Op::Add { user: uid("carol"), role: Role::Member }, "a3", T0).unwrap();
    assert_eq!(add, 3);
    g.send(&uid("carol"), None, text("hello"), "m4", T0).unwrap(); // 4
    assert_eq!(g.change(&user("alice"), Op::Remove { user: uid("bob") }, "r5", T0), Ok(5));
    g.send(&uid("alice"), None, text("after"), "m6", T0).unwrap(); // 6
    settle(&mut g, &mut members, T0);
    assert_eq!(applied(&members, "alice"), vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(applied(&members, "bob"), vec![1, 2, 3, 4, 5], "the removal, nothing after");
    assert_eq!(applied(&members, "carol"), vec![3, 4, 5, 6], "the add notice on, nothing before");

    // History: carol from her join, bob nothing any more.
    let page: Vec<u64> = g.page(&user("carol"), None, 10).unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(page, vec![6, 5, 4, 3]);
    let older: Vec<u64> = g.page(&user("carol"), Some(4), 10).unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(older, vec![3]);
    assert_eq!(g.page(&user("bob"), None, 10), Err(GroupError::NotMember));
    assert_eq!(g.page(&Actor::Backend, None, 100).unwrap().len(), 6);

    // A removed member added again gets a new stretch, from the new add.
    assert_eq!(g.change(&user("alice"), Op::Add { user: uid("bob"), role: Role::Member }, "a7", T0), Ok(7));
    g.send(&uid("bob"), None, text("back"), "m8", T0).unwrap();
    settle(&mut g, &mut members, T0);
    assert_eq!(applied(&members, "bob"), vec![1, 2, 3, 4, 5, 7, 8]);
    assert_eq!(g.readable_from(&user("bob")), Ok(7));

    // The bodies: a message and a system entry.
    let entries = g.page(&Actor::Backend, Some(6), 2).unwrap();
    let msg: Value = serde_json::from_str(&g.page(&Actor::Backend, Some(7), 1).unwrap()[0].body).unwrap();
    assert_eq!(
        (msg["group"].as_str(), msg["group_seq"].as_u64(), msg["message"].as_str()),
        (Some("g:team"), Some(6), Some("after")),
        "written in the namespaced form"
    );
    let removal = entries.iter().find(|e| e.seq == 5).unwrap();
    assert_eq!(removal.kind, EntryKind::Change);
    let v: Value = serde_json::from_str(&removal.body).unwrap();
    assert_eq!(
        (v["type"].as_str(), v["change"].as_str(), &v["user"], &v["by"]),
        (Some("group"), Some("removed"), &json!("bob"), &json!("alice"))
    );
}

#[test]
fn a_failed_delivery_is_retried_with_backoff_and_resumed_after_a_restart() {
    let config = Config::default();
    let mut g = group(&["bob"], config);
    let mut members = BTreeMap::new();
    settle(&mut g, &mut members, T0);
    g.send(&uid("alice"), None, text("one"), "m2", T0).unwrap();
    let effects = g.take_effects();
    let ds = deliveries(&effects);
    assert_eq!(ds.len(), 2, "one delivery per member: {ds:?}");
    assert_eq!(alarm(&effects), Some(T0 + config.ack_timeout_ms), "the alarm covers answers that never come");
    let to_bob = ds.iter().find(|d| d.member == uid("bob")).unwrap().clone();
    assert_eq!((to_bob.since, to_bob.entries.iter().map(|e| e.seq).collect::<Vec<_>>()), (1, vec![2]));
    let to_alice = ds.iter().find(|d| d.member == uid("alice")).unwrap();
    let a = members.get_mut(&uid("alice")).unwrap().receive(to_alice);
    g.answered(&uid("alice"), to_alice.flight, a, T0).unwrap();

    // Bob's hop fails: nothing is sent again before the backoff.
    g.failed(&uid("bob"), to_bob.flight, T0).unwrap();
    let effects = g.take_effects();
    assert!(deliveries(&effects).is_empty());
    assert_eq!(alarm(&effects), Some(T0 + config.retry_base_ms));
    // A message meanwhile waits for the same retry, and then goes with it.
    g.send(&uid("alice"), None, text("two"), "m3", T0 + 10).unwrap();
    assert!(!deliveries(&g.take_effects()).iter().any(|d| d.member == uid("bob")));
    g.failed(&uid("bob"), to_bob.flight, T0 + 20).unwrap();
    assert!(g.take_effects().is_empty(), "a stale failure changes nothing");

    // The object is evicted; the alarm fires on a new instance.
    let mut g = restart(g, config);
    g.alarm_fired(T0 + config.retry_base_ms).unwrap();
    let retry = deliveries(&g.take_effects());
    let to_bob = retry.iter().find(|d| d.member == uid("bob")).unwrap();
    assert_eq!(to_bob.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 3], "one batch, in order");
    // The member applies it but the answer is lost: the same batch again,
    // applied once.
    let bob = members.get_mut(&uid("bob")).unwrap();
    bob.receive(to_bob);
    assert_eq!(bob.receive(to_bob), Answer::Applied(3));
    g.failed(&uid("bob"), to_bob.flight, T0 + 600).unwrap();
    settle(&mut g, &mut members, T0 + 600);
    assert_eq!(applied(&members, "bob"), vec![1, 2, 3]);
    assert_eq!(applied(&members, "alice"), vec![1, 2, 3]);
}

#[test]
fn backoff_doubles_per_failure_up_to_the_cap() {
    let config = Config { retry_base_ms: 1000, retry_cap_ms: 4000, ..Config::default() };
    let mut g = group(&["bob"], config);
    let mut now = T0;
    let mut waits = Vec::new();
    for _ in 0..5 {
        g.alarm_fired(now).unwrap();
        let effects = g.take_effects();
        let d = deliveries(&effects).into_iter().find(|d| d.member == uid("bob")).expect("bob's delivery is due");
        g.failed(&uid("bob"), d.flight, now).unwrap();
        let at = alarm(&g.take_effects()).expect("an alarm for the retry");
        waits.push(at - now);
        now = at;
    }
    assert_eq!(waits, vec![1000, 2000, 4000, 4000, 4000]);
}

#[test]
fn rows_written_per_message_are_the_entry_and_one_cursor_per_member_per_alarm() {
    let mut g = group(&["bob", "carol"], Config::default());
    let mut members = BTreeMap::new();
    let now = settle(&mut g, &mut members, T0);
    let changes = |g: &Group<Lite>| g.store().sql().0.total_changes();
    let before = changes(&g);
    g.send(&uid("bob"), None, text("hi"), "m2", now).unwrap();
    assert_eq!(changes(&g) - before, 1, "stored: the entry alone");
    settle(&mut g, &mut members, now);
    g.alarm_fired(now).unwrap();
    assert_eq!(changes(&g) - before, 1 + 3, "acknowledged, then the alarm: a cursor per member");

    // Ten messages while the deliveries are in flight: one batch each.
    let before = changes(&g);
    g.send(&uid("bob"), Some("k"), text("first"), "m3", now).unwrap();
    let first = deliveries(&g.take_effects());
    for i in 0..9 {
        g.send(&uid("bob"), None, text("more"), &format!("n{i}"), now).unwrap();
    }
    for d in first {
        let a = members.get_mut(&d.member).unwrap().receive(&d);
        g.answered(&d.member, d.flight, a, now).unwrap();
    }
    let batches = deliveries(&g.take_effects());
    assert!(batches.iter().all(|d| d.entries.len() == 9), "{batches:?}");
    for d in batches {
        let a = members.get_mut(&d.member).unwrap().receive(&d);
        g.answered(&d.member, d.flight, a, now).unwrap();
    }
    assert_eq!(changes(&g) - before, 10 + 1, "answers move cursors in memory only");
    g.alarm_fired(now).unwrap();
    assert_eq!(changes(&g) - before, 10 + 1 + 3, "10 entries, a cmid, and at the alarm one cursor per member");
    g.alarm_fired(now).unwrap();
    assert_eq!(changes(&g) - before, 10 + 1 + 3, "nothing moved since: nothing stored");
    assert_eq!(applied(&members, "carol"), (1..=12).collect::<Vec<_>>());
}

#[test]
fn read_receipts_are_aggregate() {
    let mut g = group(&["bob", "carol", "dave"], Config::default());
    let seq = g.send(&uid("alice"), None, text("hi"), "m2", T0).unwrap().seq;
    assert_eq!(g.read_by(&user("bob"), seq), Ok(ReadBy { read: 0, of: 3 }), "the sender is not counted");
    assert_eq!(g.read(&uid("alice"), seq), Ok(2));
    assert_eq!(g.read_by(&user("bob"), seq), Ok(ReadBy { read: 0, of: 3 }), "nor is their own read");
    assert_eq!(g.read(&uid("bob"), seq), Ok(2));
    assert_eq!(g.read(&uid("bob"), 1), Ok(2), "a read cursor never goes back");
    assert_eq!(g.read(&uid("carol"), 99), Ok(2), "nor past the head");
    assert_eq!(g.read_by(&Actor::Backend, seq), Ok(ReadBy { read: 2, of: 3 }));
    // Members who join later are not counted; those removed by then still are.
    g.change(&user("alice"), Op::Add { user: uid("erin"), role: Role::Member }, "a", T0).unwrap();
    g.read(&uid("erin"), 3).unwrap();
    let rm = g.change(&user("alice"), Op::Remove { user: uid("bob") }, "r", T0).unwrap();
    assert_eq!(g.read_by(&user("carol"), seq), Ok(ReadBy { read: 2, of: 3 }));
    assert_eq!(
        g.read_by(&user("carol"), rm),
        Ok(ReadBy { read: 0, of: 3 }),
        "the removed one is not counted at his removal"
    );
    assert_eq!(g.read_by(&user("erin"), seq), Err(GroupError::NotMember), "before erin's join");
    assert_eq!(g.read(&uid("mallory"), 1), Err(GroupError::NotMember));
    assert_eq!(g.read_by(&Actor::Backend, 42), Err(GroupError::NoSuchEntry));
    // Kept across a restart.
    let g = restart(g, Config::default());
    assert_eq!(g.read_by(&Actor::Backend, seq), Ok(ReadBy { read: 2, of: 3 }));
}

#[test]
fn typing_goes_to_the_other_members_only() {
    let mut g = group(&["bob", "carol"], Config::default());
    g.take_effects();
    g.typing(&uid("bob"), true).unwrap();
    assert_eq!(
        g.take_effects(),
        vec![Effect::Typing { from: uid("bob"), to: vec![uid("alice"), uid("carol")], typing: true }]
    );
    assert_eq!(g.typing(&uid("mallory"), true), Err(GroupError::NotMember));
    assert_eq!(count(&g, "SELECT COUNT(*) FROM entries"), 1, "typing is never stored");
}

fn delivery(since: u64, seqs: &[u64]) -> Delivery {
    Delivery {
        group: gid(),
        member: uid("bob"),
        flight: 1,
        since,
        entries: seqs
            .iter()
            .map(|&seq| GroupEntry {
                seq,
                id: format!("m{seq}"),
                kind: EntryKind::Message,
                sender: None,
                time_ms: 0,
                body: "{}".into(),
            })
            .collect(),
    }
}

#[test]
fn the_member_applies_only_what_is_new_and_in_order() {
    assert_eq!(accept(0, &delivery(0, &[1, 2])), Accept::New { skip: 0, up_to: 2 });
    assert_eq!(accept(2, &delivery(0, &[1, 2, 3])), Accept::New { skip: 2, up_to: 3 });
    assert_eq!(accept(3, &delivery(1, &[2, 3])), Accept::Already { applied: 3 });
    assert_eq!(
        accept(5, &delivery(5, &[9, 10])),
        Accept::New { skip: 0, up_to: 10 },
        "a new stretch after a gap in membership"
    );
    assert_eq!(accept(1, &delivery(3, &[4])), Accept::Gap { applied: 1 });
    assert_eq!(accept(1, &delivery(3, &[4])).answer(), Some(Answer::Gap(1)));
    assert_eq!(accept(0, &delivery(0, &[])), Accept::Malformed);
    assert_eq!(accept(0, &delivery(0, &[2, 2])), Accept::Malformed);
    assert_eq!(accept(0, &delivery(3, &[3])), Accept::Malformed);

    // The cursor lives in the user's log, per group.
    let log = Lite::log();
    let other = GroupId::parse("gother").unwrap();
    assert_eq!(log.group_applied(&gid()).unwrap(), 0);
    log.set_group_applied(&gid(), 7).unwrap();
    assert_eq!((log.group_applied(&gid()).unwrap(), log.group_applied(&other).unwrap()), (7, 0));
}

/// The users of the property test: `u0` creates the group with `u1`, `u2`.
const USERS: usize = 5;

#[derive(Clone, Debug)]
enum Step {
    Send(usize),
    Add(usize, usize),
    Remove(usize, usize),
    Leave(usize),
    /// The owner makes `.0` an admin, or a member again.
    ToggleAdmin(usize),
    HandOver(usize),
    /// One of the deliveries in the air arrives, or not.
    Deliver(prop::sample::Index, Fate),
    Tick(u64),
    Restart,
    /// `.0` reads the group up to `.1` entries below the head.
    Read(usize, u64),
}

#[derive(Clone, Copy, Debug)]
enum Fate {
    /// Applied and answered.
    Ok,
    /// Never reached the member; the hop reports a failure.
    Fail,
    /// Applied, but the answer is lost and the hop reports a failure.
    LostAnswer,
    /// Nothing ever comes back (the timeout must notice).
    Vanish,
}

fn step() -> impl Strategy<Value = Step> {
    let u = || 0..USERS;
    let fate =
        prop_oneof![4 => Just(Fate::Ok), 1 => Just(Fate::Fail), 1 => Just(Fate::LostAnswer), 1 => Just(Fate::Vanish)];
    prop_oneof![
        4 => u().prop_map(Step::Send),
        2 => (u(), u()).prop_map(|(a, b)| Step::Add(a, b)),
        1 => (u(), u()).prop_map(|(a, b)| Step::Remove(a, b)),
        1 => u().prop_map(Step::Leave),
        1 => u().prop_map(Step::ToggleAdmin),
        1 => u().prop_map(Step::HandOver),
        6 => (any::<prop::sample::Index>(), fate).prop_map(|(i, f)| Step::Deliver(i, f)),
        2 => (0..70_000u64).prop_map(Step::Tick),
        1 => Just(Step::Restart),
        2 => (u(), 0..3u64).prop_map(|(a, back)| Step::Read(a, back)),
    ]
}

/// What the test expects: roles, and each user's stream of `group_seq`s.
struct Model {
    roles: BTreeMap<usize, Role>,
    expected: BTreeMap<usize, Vec<u64>>,
    max: usize,
}

impl Model {
    /// Records entry `seq`, owed to the members now (after the change).
    fn owe(&mut self, seq: u64, also: Option<usize>) {
        for u in self.roles.keys().copied().chain(also) {
            self.expected.entry(u).or_default().push(seq);
        }
    }

    fn manages(&self, a: usize) -> bool {
        matches!(self.roles.get(&a), Some(Role::Owner | Role::Admin))
    }

    fn owner(&self) -> usize {
        *self.roles.iter().find(|(_, r)| **r == Role::Owner).unwrap().0
    }
}

fn name(i: usize) -> UserId {
    uid(&format!("u{i}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_member_applies_exactly_their_membership_in_order(steps in prop::collection::vec(step(), 1..80)) {
        let config = Config { max_members: 4, retry_base_ms: 1000, retry_cap_ms: 8000, ack_timeout_ms: 30_000, batch_entries: 3, ..Config::default() };
        let mut g = open(config);
        let mut now = T0;
        g.create(gid(), &Actor::User(name(0)), name(0), &[name(1), name(2)], "c", now).unwrap();
        let mut model = Model { roles: BTreeMap::new(), expected: BTreeMap::new(), max: 4 };
        model.roles.insert(0, Role::Owner);
        model.roles.insert(1, Role::Member);
        model.roles.insert(2, Role::Member);
        model.owe(1, None);
        let mut members: BTreeMap<UserId, Member> = BTreeMap::new();
        let effects = g.take_effects();
        let mut air: Vec<Delivery> = deliveries(&effects);
        let mut alarm_at: Option<u64> = alarm(&effects);
        let mut n = 0u32;

        for s in steps {
            n += 1;
            let id = format!("e{n}");
            match s {
                Step::Send(u) => {
                    let r = g.send(&name(u), None, text("x"), &id, now);
                    prop_assert_eq!(r.is_ok(), model.roles.contains_key(&u), "send by u{}: {:?}", u, r);
                    if let Ok(sent) = r { model.owe(sent.seq, None) }
                }
                Step::Add(a, u) => {
                    let ok = model.manages(a) && !model.roles.contains_key(&u) && model.roles.len() < model.max;
                    let r = g.change(&Actor::User(name(a)), Op::Add { user: name(u), role: Role::Member }, &id, now);
                    prop_assert_eq!(r.is_ok(), ok, "u{} adds u{}: {:?}", a, u, r);
                    if let Ok(seq) = r { model.roles.insert(u, Role::Member); model.owe(seq, None) }
                }
                Step::Remove(a, u) => {
                    let ok = model.manages(a) && match model.roles.get(&u) {
                        Some(Role::Member) => true,
                        Some(Role::Admin) => model.roles.get(&a) == Some(&Role::Owner),
                        _ => false,
                    };
                    let r = g.change(&Actor::User(name(a)), Op::Remove { user: name(u) }, &id, now);
                    prop_assert_eq!(r.is_ok(), ok, "u{} removes u{}: {:?}", a, u, r);
                    if let Ok(seq) = r { model.roles.remove(&u); model.owe(seq, Some(u)) }
                }
                Step::Leave(u) => {
                    let ok = matches!(model.roles.get(&u), Some(Role::Member | Role::Admin));
                    let r = g.change(&Actor::User(name(u)), Op::Leave, &id, now);
                    prop_assert_eq!(r.is_ok(), ok, "u{} leaves: {:?}", u, r);
                    if let Ok(seq) = r { model.roles.remove(&u); model.owe(seq, Some(u)) }
                }
                Step::ToggleAdmin(u) => {
                    let owner = model.owner();
                    let role = match model.roles.get(&u) { Some(Role::Admin) => Role::Member, _ => Role::Admin };
                    let ok = matches!(model.roles.get(&u), Some(Role::Member | Role::Admin));
                    let r = g.change(&Actor::User(name(owner)), Op::SetRole { user: name(u), role }, &id, now);
                    prop_assert_eq!(r.is_ok(), ok, "role of u{}: {:?}", u, r);
                    if let Ok(seq) = r { model.roles.insert(u, role); model.owe(seq, None) }
                }
                Step::HandOver(u) => {
                    let owner = model.owner();
                    let ok = matches!(model.roles.get(&u), Some(Role::Member | Role::Admin));
                    let r = g.change(&Actor::User(name(owner)), Op::HandOver { to: name(u) }, &id, now);
                    prop_assert_eq!(r.is_ok(), ok, "u{} hands over to u{}: {:?}", owner, u, r);
                    if let Ok(seq) = r {
                        model.roles.insert(owner, Role::Admin);
                        model.roles.insert(u, Role::Owner);
                        model.owe(seq, None);
                    }
                }
                Step::Deliver(i, fate) => {
                    if !air.is_empty() {
                        let d = air.remove(i.index(air.len()));
                        match fate {
                            Fate::Ok => {
                                let a = members.entry(d.member.clone()).or_insert_with(Member::new).receive(&d);
                                g.answered(&d.member, d.flight, a, now).unwrap();
                            }
                            Fate::Fail => g.failed(&d.member, d.flight, now).unwrap(),
                            Fate::LostAnswer => {
                                members.entry(d.member.clone()).or_insert_with(Member::new).receive(&d);
                                g.failed(&d.member, d.flight, now).unwrap();
                            }
                            Fate::Vanish => {}
                        }
                    }
                }
                Step::Tick(ms) => {
                    now += ms;
                    if alarm_at.is_some_and(|at| at <= now) {
                        alarm_at = None;
                        g.alarm_fired(now).unwrap();
                    }
                }
                Step::Restart => {
                    // Hops in the air stay in the air; the alarm is durable.
                    g = restart(g, config);
                }
                Step::Read(u, back) => {
                    let r = g.read(&name(u), g.head().saturating_sub(back));
                    prop_assert_eq!(r.is_ok(), model.roles.contains_key(&u), "u{} reads: {:?}", u, r);
                }
            }
            let effects = g.take_effects();
            if let Some(at) = alarm(&effects) { alarm_at = Some(at) }
            air.extend(deliveries(&effects));
            // The fan-out's index files every member where a walk of them all would.
            prop_assert_eq!(g.schedule_mismatch(), None, "after {:?}", s);
            // "Read by N of M" counts what a walk of every member would.
            prop_assert_eq!(g.read_by_mismatch(), None, "after {:?}", s);
            // At every step: what each member applied is a prefix of what it is owed.
            for (u, want) in &model.expected {
                let got = applied(&members, &format!("u{u}"));
                prop_assert!(want.starts_with(&got), "u{}: applied {:?}, owed {:?}", u, got, want);
            }
        }

        // Let the platform catch up: everything in the air arrives, then the
        // alarm fires until nothing is owed.
        drain(&mut g, &mut members, &mut air, &mut alarm_at, now);
        for u in 0..USERS {
            let want = model.expected.get(&u).cloned().unwrap_or_default();
            prop_assert_eq!(applied(&members, &format!("u{u}")), want, "u{}", u);
        }
    }
}

#[test]
fn a_member_whose_log_lost_the_group_gets_it_again_from_where_it_is() {
    let mut g = group(&["bob"], Config::default());
    let mut members = BTreeMap::new();
    g.send(&uid("alice"), None, text("one"), "m2", T0).unwrap();
    let now = settle(&mut g, &mut members, T0);
    assert_eq!(applied(&members, "bob"), vec![1, 2]);
    // Bob's log is new (its cursor says 0); the next delivery says since 2.
    members.insert(uid("bob"), Member::new());
    g.send(&uid("alice"), None, text("two"), "m3", now).unwrap();
    let to_bob = deliveries(&g.take_effects()).into_iter().find(|d| d.member == uid("bob")).unwrap();
    assert_eq!(to_bob.since, 2);
    let answer = members.get_mut(&uid("bob")).unwrap().receive(&to_bob);
    assert_eq!(answer, Answer::Gap(0), "nothing applied out of order");
    g.answered(&uid("bob"), to_bob.flight, answer, now).unwrap();
    settle(&mut g, &mut members, now);
    assert_eq!(applied(&members, "bob"), vec![1, 2, 3], "everything again, in order");
}
