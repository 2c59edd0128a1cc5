//! The `/run` and `/runsync` body check: any JSON is a job or a message, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::job::RunBody;

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = RunBody::parse(body, 600_000);
    }
});
