//! Query strings (`application/x-www-form-urlencoded`).
//!
//! Invariants: nothing panics; the decoder agrees with the `form_urlencoded`
//! crate (the URL standard's parser) on every input; encoding the decoded
//! pairs and decoding again gives the same pairs, and the encoder agrees with
//! that crate's serializer; a URL's query is what follows its first `?`
//! before any `#`.
#![no_main]

use edge_chat::query;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let pairs = query::parse(data);
    let reference: Vec<(String, String)> = form_urlencoded::parse(data).into_owned().collect();
    assert_eq!(pairs, reference);

    let encoded = query::encode(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    assert_eq!(query::parse(encoded.as_bytes()), pairs);
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    serializer.extend_pairs(pairs.iter());
    assert_eq!(encoded, serializer.finish());

    if let Some((name, value)) = pairs.first() {
        assert_eq!(query::param(&pairs, name).as_ref(), Some(value));
    }

    let url = String::from_utf8_lossy(data);
    let q = query::of_url(&url);
    assert!(!q.contains('#'));
    if !q.is_empty() {
        let before_fragment = url.split('#').next().unwrap_or_default();
        assert!(before_fragment.ends_with(q));
        assert_eq!(before_fragment.find('?').map(|i| i + 1), Some(before_fragment.len() - q.len()));
    }
});
