//! The SDK's wire types, `client/src/wire.ts`, rendered from the frame
//! structs of `v1.rs` so the two cannot drift: the test fails when the
//! checked-in file differs from the rendering. `UPDATE_FRAMES=1 cargo test
//! --lib wire_ts` rewrites the file instead.

use ts_rs::{Config, Dummy, TS};

use super::*;

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/client/src/wire.ts");
const REGENERATE: &str = "UPDATE_FRAMES=1 cargo test --lib wire_ts";

/// `export type …` with its doc comment, laid out for reading.
fn export<T: TS + ?Sized>(cfg: &Config) -> String {
    format!("{}export {}\n", T::docs().map(|d| tidy_doc(&d, "")).unwrap_or_default(), layout(&T::decl(cfg)))
}

/// ts-rs writes an object type on one line, `type X = { a: A, /** … */ b: B, };`:
/// this puts each field on a line of its own. Commas inside nested types,
/// strings and comments are not field separators.
fn layout(decl: &str) -> String {
    let Some(body) = decl.split_once(" = { ").and_then(|(_, b)| b.strip_suffix(" };")) else {
        return decl.to_string();
    };
    let head = &decl[..decl.len() - body.len() - " };".len()];
    let (mut fields, mut field, mut depth, mut rest) = (Vec::new(), String::new(), 0, body);
    while let Some(c) = rest.chars().next() {
        let skip = match c {
            '"' => rest[1..].find('"').map_or(rest.len(), |i| i + 2),
            '/' if rest.starts_with("/*") => rest.find("*/").map_or(rest.len(), |i| i + 2),
            _ => c.len_utf8(),
        };
        match c {
            '{' | '[' | '(' | '<' => depth += 1,
            '}' | ']' | ')' | '>' => depth -= 1,
            ',' if depth == 0 => fields.push(std::mem::take(&mut field)),
            _ => {}
        }
        if !(c == ',' && depth == 0) {
            field.push_str(&rest[..skip]);
        }
        rest = &rest[skip..];
    }
    let mut out = format!("{}\n", head.trim_end());
    for f in fields.iter().map(|f| f.trim()).filter(|f| !f.is_empty()) {
        match f.split_once("*/") {
            Some((doc, field)) => out += &format!("{}  {};\n", tidy_doc(&format!("{doc}*/"), "  "), field.trim()),
            None => out += &format!("  {f};\n"),
        }
    }
    out + "};"
}

/// A doc comment as `/** … */` on one line when it is one line, indented.
fn tidy_doc(doc: &str, indent: &str) -> String {
    let lines: Vec<&str> = doc
        .lines()
        .map(|l| l.trim())
        .filter(|l| *l != "/**" && *l != "*/")
        .map(|l| l.strip_prefix('*').unwrap_or(l).trim())
        .collect();
    match lines.as_slice() {
        [one] => format!("{indent}/** {one} */\n"),
        _ => format!(
            "{indent}/**\n{}{indent} */\n",
            lines.iter().map(|l| format!("{indent} * {l}\n")).collect::<String>()
        ),
    }
}

fn render() -> String {
    // Seqs and counts are plain numbers in the SDK (safe integers), not bigint.
    let cfg = Config::new().with_large_int("number");
    let decls = [
        export::<WelcomeFrame>(&cfg),
        export::<WelcomeLimits>(&cfg),
        export::<MsgFrame>(&cfg),
        export::<EntryKind>(&cfg),
        export::<SentFrame>(&cfg),
        export::<OkFrame>(&cfg),
        export::<UnreadFrame>(&cfg),
        export::<ReceiptFrame>(&cfg),
        export::<ReceiptKind>(&cfg),
        export::<TypingFrame>(&cfg),
        export::<GroupReadFrame>(&cfg),
        export::<GroupFrame>(&cfg),
        export::<BlocksFrame>(&cfg),
        export::<BlockLists>(&cfg),
        export::<Muted>(&cfg),
        export::<SettingsFrame>(&cfg),
        export::<Settings>(&cfg),
        export::<PresenceFrame>(&cfg),
        export::<Presence>(&cfg),
        export::<HistoryFrame>(&cfg),
        export::<ErrorFrame>(&cfg),
        export::<Page<Dummy>>(&cfg),
        export::<ConversationItem>(&cfg),
    ];
    format!(
        "// The server's chat.v1 frames, generated from the Rust types of src/protocol/v1.rs\n\
         // by `cargo test` (src/protocol/v1/wire_ts.rs): do not edit. Regenerate with\n\
         // `{REGENERATE}`.\n\n{}",
        decls.join("\n")
    )
}

#[test]
fn sdk_wire_types_match_the_rust_frames() {
    let want = render();
    if std::env::var("UPDATE_FRAMES").is_ok_and(|v| v == "1") {
        std::fs::write(PATH, &want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(PATH).unwrap_or_default();
    if have != want {
        let line = have
            .lines()
            .zip(want.lines())
            .position(|(h, w)| h != w)
            .unwrap_or(have.lines().count().min(want.lines().count()));
        panic!(
            "client/src/wire.ts is not what the Rust frames render (first difference at line {}):\n  file:     {}\n  rendered: {}\nRegenerate it with `{REGENERATE}`.",
            line + 1,
            have.lines().nth(line).unwrap_or("(end of file)"),
            want.lines().nth(line).unwrap_or("(end of file)"),
        );
    }
}
