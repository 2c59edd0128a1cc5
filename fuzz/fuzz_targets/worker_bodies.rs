//! The worker protocol's bodies: `job-done` (decoded to a report) and `job-stream` (one chunk
//! or a list of them).
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::job::{stream_chunks, JobDoneBody};

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Ok(done) = serde_json::from_value::<JobDoneBody>(body.clone()) {
            let _ = done.report();
        }
        let _ = stream_chunks(body);
    }
});
