//! Structured outputs checked before enqueue: a JSON Schema the engine's constrained decoding
//! cannot enforce is refused with a 400 that names the part, instead of failing as a job.
//! The check compiles the schema with llguidance, the library (and lock-file version) mistral.rs
//! compiles it with, without a tokenizer: the same schema features are refused.

use crate::error::GatewayError;
use llguidance::api::{GrammarInit, ParserLimits, TopLevelGrammar};
use llguidance::{GrammarBuilder, JsonCompileOptions};
use serde_json::Value;

/// `Ok` when the engine can enforce `schema`; else a 400 for `param` quoting the compiler's
/// reason (it names the unsupported keyword or the bad part, e.g. `Unimplemented keys:
/// ["if"]`).
pub fn check_schema(schema: Value, param: &str) -> Result<(), GatewayError> {
    let builder = GrammarBuilder::new(None, ParserLimits::default());
    enforceable(
        JsonCompileOptions::default().json_to_llg(builder, schema),
        param,
    )
}

/// `Ok` when the engine can enforce `pattern` (`guided_regex`, or `guided_choice` made one):
/// compiled by llguidance's regex compiler, as the engines compile it; else a 400 for
/// `param`.
pub fn check_pattern(pattern: &str, param: &str) -> Result<(), GatewayError> {
    let mut builder = GrammarBuilder::new(None, ParserLimits::default());
    enforceable(builder.regex.regex(pattern), param)
}

/// `Ok` when the engine can enforce `lark` (`guided_grammar`): compiled by llguidance, as the
/// engines compile it (its parser bounds the grammar's nesting); else a 400 for `param`.
pub fn check_grammar(lark: &str, param: &str) -> Result<(), GatewayError> {
    let grammar = GrammarInit::Serialized(TopLevelGrammar::from_lark(lark.to_string()));
    enforceable(grammar.to_internal(None, ParserLimits::default()), param)
}

/// A compile's outcome as the check's: its error a 400 for `param` quoting the compiler.
fn enforceable<T, E: std::fmt::Display>(
    compiled: Result<T, E>,
    param: &str,
) -> Result<(), GatewayError> {
    compiled
        .map(|_| ())
        .map_err(|e| GatewayError::bad_param(param, format!("`{param}` cannot be enforced: {e}")))
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

    #[test]
    fn lark_grammars_compile_and_gbnf_or_deep_ones_are_named() {
        assert!(check_grammar("start: answer\nanswer: \"yes\" | \"no\"", "guided_grammar").is_ok());
        assert!(check_grammar("start: /[0-9]+/ \"-\" /[a-z]+/", "guided_grammar").is_ok());
        for bad in [
            "root ::= \"yes\" | \"no\"".to_string(),
            format!("start: {}\"a\"{}", "(".repeat(200), ")".repeat(200)),
            format!("start: /{}a{}/", "(".repeat(5000), ")".repeat(5000)),
        ] {
            let e = check_grammar(&bad, "guided_grammar")
                .unwrap_err()
                .to_string();
            assert!(e.contains("guided_grammar"), "{e}");
        }
    }
}
