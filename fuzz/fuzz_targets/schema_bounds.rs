//! Client JSON Schemas: `$ref` chains, cycles, shared targets and nesting built from the
//! input (or the input itself read as a schema). The bound check never panics and always ends;
//! and whatever it accepts, llguidance (the engine's compiler, the gateway's check) compiles
//! on a thread with the 2 MiB stack of the gateway's blocking threads and the engine's thread,
//! without overflowing it: an overflow aborts the fuzzer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llguidance::api::ParserLimits;
use llguidance::{GrammarBuilder, JsonCompileOptions};
use protocol::openai::schema::check_bounds;
use serde_json::{json, Map, Value};

/// A schema of definitions built from the bytes: each byte pair makes definition `i` either a
/// `$ref` to another (chains, cycles, shared targets), an object or array wrapping one
/// (nesting), an `anyOf` of two, or a leaf.
fn built(data: &[u8]) -> Value {
    let n = data.len() / 2 + 1;
    let mut defs = Map::new();
    for (i, pair) in data.chunks(2).enumerate() {
        let target = |b: u8| format!("#/$defs/d{}", b as usize % n);
        let (kind, arg) = (pair[0], *pair.get(1).unwrap_or(&0));
        let def = match kind % 5 {
            0 => json!({"$ref": target(arg)}),
            1 => json!({"type": "object", "properties": {"p": {"$ref": target(arg)}}}),
            2 => json!({"type": "array", "items": {"$ref": target(arg)}}),
            3 => json!({"anyOf": [{"$ref": target(arg)}, {"$ref": target(kind)}]}),
            _ => json!({"type": "string"}),
        };
        defs.insert(format!("d{i}"), def);
    }
    defs.entry(format!("d{}", n - 1)).or_insert(json!({"type": "integer"}));
    json!({"$defs": defs, "$ref": "#/$defs/d0"})
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let schema = if mode % 2 == 0 {
        built(rest)
    } else {
        match serde_json::from_slice::<Value>(rest) {
            Ok(v) => v,
            Err(_) => return,
        }
    };
    if check_bounds(&schema).is_err() {
        return;
    }
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let builder = GrammarBuilder::new(None, ParserLimits::default());
            let _ = JsonCompileOptions::default().json_to_llg(builder, schema);
        })
        .expect("a thread")
        .join()
        .expect("the compile");
});
