//! Request parameters read from decoded query strings: history pages
//! (`limit`, `before`, `after`, `peer`) and the object-to-object hops
//! (deliveries, receipts, typing).
//!
//! Invariants: nothing panics; an accepted page has a limit of at least one
//! and within the page bound, and a valid peer; an accepted hop request has valid ids, and writing it
//! back as a query (`to_query`) and reading that again gives the same request.
#![no_main]

use edge_chat::history::PageQuery;
use edge_chat::message::is_id;
use edge_chat::query;
use edge_chat::relay::{Delivery, Receipt, Typing};
use edge_chat::user::UserId;
use libfuzzer_sys::fuzz_target;

fn pairs_of(q: &str) -> Vec<(String, String)> {
    query::parse(q.as_bytes())
}

fn borrowed(p: &[(String, String)]) -> impl Iterator<Item = (&str, &str)> {
    p.iter().map(|(k, v)| (k.as_str(), v.as_str()))
}

fuzz_target!(|data: &[u8]| {
    let pairs = query::parse(data);

    let page = PageQuery::parse(borrowed(&pairs));
    if let Ok(q) = &page {
        assert!(q.limit >= 1);
        if let Some(p) = &q.peer {
            assert!(UserId::parse(p.as_str()).is_ok());
        }
    }
    for max in [1, 7, 200] {
        if let Ok(q) = PageQuery::parse_within(borrowed(&pairs), max) {
            assert!(q.limit >= 1 && q.limit <= max);
            // Within a bound, the same page as unbounded, but for the default size.
            let unbounded = page.as_ref().expect("accepted within a bound, so accepted without");
            assert_eq!((&q.before, &q.after, &q.peer), (&unbounded.before, &unbounded.after, &unbounded.peer));
        }
    }

    if let Some(d) = Delivery::from_query(borrowed(&pairs)) {
        assert!(is_id(&d.id));
        assert_eq!(Delivery::from_query(borrowed(&pairs_of(&d.to_query()))), Some(d));
    }
    if let Some(r) = Receipt::from_query(borrowed(&pairs)) {
        assert_eq!(Receipt::from_query(borrowed(&pairs_of(&r.to_query()))), Some(r));
    }
    if let Some(t) = Typing::from_query(borrowed(&pairs)) {
        assert_eq!(Typing::from_query(borrowed(&pairs_of(&t.to_query()))), Some(t));
    }
});
