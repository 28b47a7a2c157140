//! Query strings (`application/x-www-form-urlencoded`), sans-IO.
//!
//! Every request parameter the Worker and the user objects read (`token`,
//! `device`, `since`, page and hop parameters) comes through [`parse`], so
//! it is plain Rust, tested and fuzzed natively. It decodes as the URL
//! standard's form-urlencoded parser does: pairs split on `&` (empty ones
//! skipped) and on the first `=`, `+` is a space, `%XX` a byte, a `%` not
//! followed by two hex digits stays as it is, and bytes that are not UTF-8
//! become U+FFFD. [`encode`] is the matching serializer.

/// The query of a URL: after the first `?`, up to a `#`; empty when it has none.
pub fn of_url(url: &str) -> &str {
    let url = url.split_once('#').map_or(url, |(u, _)| u);
    url.split_once('?').map_or("", |(_, q)| q)
}

/// The decoded `(name, value)` pairs of a query string, in order.
pub fn parse(query: &[u8]) -> Vec<(String, String)> {
    query
        .split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &[][..]),
            };
            (decode(name), decode(value))
        })
        .collect()
}

/// The value of the first parameter called `name`.
pub fn param(pairs: &[(String, String)], name: &str) -> Option<String> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

/// One name or value: `+` to space, then percent-decoding, then lossy UTF-8.
pub fn decode(part: &[u8]) -> String {
    let mut out = Vec::with_capacity(part.len());
    let mut i = 0;
    while i < part.len() {
        match part[i] {
            b'+' => out.push(b' '),
            b'%' => match (part.get(i + 1).and_then(|&b| hex(b)), part.get(i + 2).and_then(|&b| hex(b))) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A query string of `pairs` that [`parse`] reads back as they are: letters,
/// digits and `*-._` stay, a space becomes `+`, every other byte `%XX`.
pub fn encode<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (name, value) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        encode_part(&mut out, name);
        out.push('=');
        encode_part(&mut out, value);
    }
    out
}

fn encode_part(out: &mut String, part: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in part.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => out.push(b as char),
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 15) as usize] as char);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        parse(q.as_bytes())
    }

    fn owned(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn splits_on_ampersand_and_the_first_equals() {
        assert_eq!(pairs("a=1&b=2"), owned(&[("a", "1"), ("b", "2")]));
        assert_eq!(pairs("a=1=2"), owned(&[("a", "1=2")]));
        assert_eq!(pairs("flag&=v&k="), owned(&[("flag", ""), ("", "v"), ("k", "")]));
        assert_eq!(pairs("&&a=1&&"), owned(&[("a", "1")]));
        assert_eq!(pairs(""), owned(&[]));
        assert_eq!(pairs("a=1&a=2"), owned(&[("a", "1"), ("a", "2")]));
    }

    #[test]
    fn plus_and_percent_escapes() {
        assert_eq!(pairs("q=a+b%20c%2Bd"), owned(&[("q", "a b c+d")]));
        assert_eq!(pairs("k%3Dx=%26"), owned(&[("k=x", "&")]));
        assert_eq!(pairs("e=%C3%A9%e2%82%ac"), owned(&[("e", "é€")]));
        // Two escaped '+' signs stay plus signs: '+' is replaced before decoding.
        assert_eq!(pairs("p=%2B%2b"), owned(&[("p", "++")]));
    }

    #[test]
    fn invalid_escapes_stay_as_they_are() {
        assert_eq!(
            pairs("a=%&b=%4&c=%zz&d=%4g&e=100%"),
            owned(&[("a", "%"), ("b", "%4"), ("c", "%zz"), ("d", "%4g"), ("e", "100%")])
        );
        // The '%' is kept and the next characters are read afresh.
        assert_eq!(pairs("a=%%41"), owned(&[("a", "%A")]));
    }

    #[test]
    fn bytes_that_are_not_utf8_become_replacement_characters() {
        assert_eq!(pairs("a=%FF&b=%C3"), owned(&[("a", "\u{FFFD}"), ("b", "\u{FFFD}")]));
        assert_eq!(parse(b"k=\xff\xfe"), owned(&[("k", "\u{FFFD}\u{FFFD}")]));
        assert_eq!(pairs("nul=%00"), owned(&[("nul", "\0")]));
    }

    #[test]
    fn the_query_of_a_url() {
        assert_eq!(of_url("https://h/ws?token=t&device=d"), "token=t&device=d");
        assert_eq!(of_url("https://h/ws?a=1#frag"), "a=1");
        assert_eq!(of_url("https://h/ws#frag?a=1"), "");
        assert_eq!(of_url("https://h/ws"), "");
        assert_eq!(of_url("https://h/ws?"), "");
        assert_eq!(of_url("https://h/ws?a=1?b=2"), "a=1?b=2");
    }

    #[test]
    fn first_value_of_a_parameter() {
        let p = pairs("token=&token=x&since=4");
        assert_eq!(param(&p, "token"), Some(String::new()));
        assert_eq!(param(&p, "since"), Some("4".into()));
        assert_eq!(param(&p, "device"), None);
    }

    #[test]
    fn encode_then_parse_gives_the_pairs_back() {
        let cases: &[(&str, &str)] =
            &[("uid", "a.b-c_d@e"), ("", ""), ("k=&+%", "v w\u{0}é€🦀"), ("since", "42"), ("*-._", "~!'()")];
        let q = encode(cases.iter().copied());
        assert_eq!(
            q,
            "uid=a.b-c_d%40e&=&k%3D%26%2B%25=v+w%00%C3%A9%E2%82%AC%F0%9F%A6%80&since=42&*-._=%7E%21%27%28%29"
        );
        assert_eq!(parse(q.as_bytes()), owned(cases));
        assert_eq!(encode([]), "");
    }
}
