//! A batch input file checked line by line: every problem names a line that exists.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::openai::batch::check_input;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.lines().count();
    if let Err(errors) = check_input(text, 100) {
        assert!(errors.iter().all(|e| e.line.is_none_or(|l| l >= 1 && l <= lines)));
    }
});
