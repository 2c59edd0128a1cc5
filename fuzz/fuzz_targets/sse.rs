//! The SSE parser fed a stream in pieces (split where the first byte says): the events do not
//! depend on where the stream was split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::sse::Parser;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let whole = Parser::new().feed(text);
    let mut at = (cut as usize).min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let mut p = Parser::new();
    let mut split = p.feed(&text[..at]);
    split.extend(p.feed(&text[at..]));
    assert_eq!(whole, split, "events depend on where the stream was split");
});
