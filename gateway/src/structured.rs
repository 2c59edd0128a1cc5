//! Structured outputs checked before enqueue: a JSON Schema the engine's constrained decoding
//! cannot enforce is refused with a 400 that names the part, instead of failing as a job.
//! The check compiles the schema with llguidance, the library (and lock-file version) mistral.rs
//! compiles it with, without a tokenizer: the same schema features are refused.

use crate::error::GatewayError;
use llguidance::api::ParserLimits;
use llguidance::{GrammarBuilder, JsonCompileOptions};
use serde_json::Value;

/// `Ok` when the engine can enforce `schema`; else a 400 for `param` quoting the compiler's
/// reason (it names the unsupported keyword or the bad part, e.g. `Unimplemented keys:
/// ["if"]`).
pub fn check_schema(schema: Value, param: &str) -> Result<(), GatewayError> {
    let builder = GrammarBuilder::new(None, ParserLimits::default());
    JsonCompileOptions::default()
        .json_to_llg(builder, schema)
        .map(|_| ())
        .map_err(|e| GatewayError::BadRequest {
            message: format!("`{param}` cannot be enforced: {e}"),
            param: Some(param.to_string()),
            code: None,
        })
}

/// `Ok` when the engine can enforce `pattern` (`guided_regex`, or `guided_choice` made one):
/// compiled by llguidance's regex compiler, as the engines compile it; else a 400 for
/// `param`.
pub fn check_pattern(pattern: &str, param: &str) -> Result<(), GatewayError> {
    GrammarBuilder::new(None, ParserLimits::default())
        .regex
        .regex(pattern)
        .map(|_| ())
        .map_err(|e| GatewayError::BadRequest {
            message: format!("`{param}` cannot be enforced: {e}"),
            param: Some(param.to_string()),
            code: None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn enforceable_schemas_pass_and_others_are_named() {
        let ok = json!({"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
            "tags": {"type": "array", "items": {"enum": ["a", "b"]}}}, "required": ["name"]});
        assert!(check_schema(ok, "p").is_ok());
        assert!(check_schema(json!({"type": "object"}), "p").is_ok());
        let e = check_schema(
            json!({"type": "frobnicate"}),
            "response_format.json_schema.schema",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("response_format.json_schema.schema"), "{e}");
        assert!(e.contains("frobnicate"), "{e}");
    }

    #[test]
    fn patterns_compile_or_are_named() {
        assert!(check_pattern("(yes|no)", "guided_choice").is_ok());
        assert!(check_pattern("[0-9]{3}-[0-9]{4}", "guided_regex").is_ok());
        let e = check_pattern(r"\bword(?=x)", "guided_regex").unwrap_err();
        assert!(e.to_string().contains("guided_regex"), "{e}");
    }
}
