//! The config parsers: any text is a platform config, a model config, or an error naming the
//! problem; a platform config's keys are checked without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::config::{ModelConfig, SluiceConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = toml::from_str::<SluiceConfig>(text) {
        let _ = protocol::keys::check_keys(&c.gateway.keys, &c.endpoints);
    }
    let _ = toml::from_str::<ModelConfig>(text);
});
