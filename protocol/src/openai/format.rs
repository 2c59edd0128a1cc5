//! Structured outputs: OpenAI's `response_format` and vLLM's `guided_json`, reduced to the JSON
//! Schema the engine's constrained decoding (llguidance) enforces token by token, so the output
//! parses whatever the model would have said; vLLM's `guided_regex` and `guided_choice`,
//! reduced to a regular expression enforced the same way; and its `guided_grammar` (Lark).

use super::body::CommonParams;
use super::wire::{FormatKind, ResponseFormat};
use super::{InvalidRequest, Result};
use serde_json::{json, Value};

/// Longest `response_format.json_schema.name`, as OpenAI documents it.
pub const MAX_SCHEMA_NAME: usize = 64;

/// The structured-output keys of a body, vLLM's `structured_outputs` read as the older keys it
/// replaces, so one reader checks them all.
pub(super) struct OutputKeys {
    response_format: Option<ResponseFormat>,
    guided_json: Option<Value>,
    guided_regex: Option<String>,
    guided_choice: Option<Vec<String>>,
    guided_grammar: Option<String>,
}

impl OutputKeys {
    /// Take the keys out of `c`, `structured_outputs` (`{"json" | "regex" | "choice" |
    /// "grammar" | "json_object"}`) put back as `guided_json`, `guided_regex`,
    /// `guided_choice`, `guided_grammar` or `response_format: {"type": "json_object"}`. One
    /// kind per request; given with the key it replaces, or with a kind sluice cannot
    /// enforce (`structural_tag`), it is a 400 naming `structured_outputs(.kind)`.
    pub(super) fn desugar(c: &mut CommonParams) -> Result<Self> {
        let mut keys = OutputKeys {
            response_format: c.response_format.take(),
            guided_json: c.guided_json.take(),
            guided_regex: c.guided_regex.take(),
            guided_choice: c.guided_choice.take(),
            guided_grammar: c.guided_grammar.take(),
        };
        let Some(so) = c.structured_outputs.take() else {
            return Ok(keys);
        };
        if so.structural_tag.is_some() {
            return Err(InvalidRequest::unsupported(
                "structured_outputs.structural_tag",
                "structured outputs take `json`, `regex`, `choice`, `grammar` or \
                 `json_object` here",
            ));
        }
        let json_object = (so.json_object == Some(true)).then_some(ResponseFormat {
            kind: FormatKind::JsonObject,
            json_schema: None,
        });
        let kinds = [
            put(&mut keys.guided_json, so.json, "guided_json")?,
            put(&mut keys.guided_regex, so.regex, "guided_regex")?,
            put(&mut keys.guided_choice, so.choice, "guided_choice")?,
            put(&mut keys.guided_grammar, so.grammar, "guided_grammar")?,
            put(&mut keys.response_format, json_object, "response_format")?,
        ];
        if kinds.iter().filter(|&&k| k).count() > 1 {
            return Err(InvalidRequest::new(
                "structured_outputs",
                "`structured_outputs` takes one kind",
            ));
        }
        Ok(keys)
    }

    /// The schema `response_format` (OpenAI) or `guided_json` (vLLM's extension) asks for;
    /// `None` for free text. `{"type": "json_object"}` is any JSON object (the schema
    /// `{"type": "object"}`); `{"type": "json_schema", "json_schema": {"name", "schema",
    /// "strict", "description"}}` is its `schema`. Both keys in one request are refused.
    ///
    /// Errors: [`InvalidRequest`] naming the part that is wrong. Whether the engine can
    /// enforce the schema is checked later, by the gateway, with the engine's own schema
    /// compiler.
    pub(super) fn schema(&mut self) -> Result<Option<Value>> {
        let format = self
            .response_format
            .take()
            .map(response_format)
            .transpose()?;
        let guided = match self.guided_json.take() {
            None => None,
            Some(v) => {
                // vLLM also takes the schema as a JSON text.
                let v = match v {
                    Value::String(s) => serde_json::from_str(&s).ok(),
                    v => Some(v),
                };
                let v = v.filter(Value::is_object).ok_or_else(|| {
                    InvalidRequest::new("guided_json", "`guided_json` must be a JSON Schema object")
                })?;
                Some(bounded(v, "guided_json")?)
            }
        };
        match (format, guided) {
            (Some(_), Some(_)) => Err(InvalidRequest::new(
                "guided_json",
                "give either `response_format` or `guided_json`, not both",
            )),
            (f, g) => Ok(f.flatten().or(g)),
        }
    }

    /// The regular expression the whole output must match: vLLM's `guided_regex`, or its
    /// `guided_choice` as the alternation of the choices (escaped, so the output is exactly
    /// one of them); `None` for neither. Both keys in one request are refused, and so is a
    /// pattern that does not parse, is longer than [`MAX_PATTERN`] or nests deeper than 64
    /// groups (the compiler walks it recursively).
    pub(super) fn pattern(&mut self) -> Result<Option<String>> {
        let choice = self.guided_choice.take().map(choices).transpose()?;
        let (pattern, param) = match (self.guided_regex.take(), choice) {
            (Some(_), Some(_)) => {
                return Err(InvalidRequest::new(
                    "guided_choice",
                    "give either `guided_regex` or `guided_choice`, not both",
                ))
            }
            (Some(r), None) => (r, "guided_regex"),
            (None, Some(c)) => (c, "guided_choice"),
            (None, None) => return Ok(None),
        };
        if pattern.len() > MAX_PATTERN {
            return Err(InvalidRequest::new(
                param,
                format!("`{param}` is longer than {MAX_PATTERN} bytes"),
            ));
        }
        regex_syntax::ParserBuilder::new()
            .nest_limit(64)
            .build()
            .parse(&pattern)
            .map_err(|e| {
                InvalidRequest::new(param, format!("`{param}` is not a valid pattern: {e}"))
            })?;
        Ok(Some(pattern))
    }

    /// vLLM's `guided_grammar`, a grammar in llguidance's Lark syntax, up to [`MAX_GRAMMAR`]
    /// bytes. Whether it compiles is checked by the gateway with the engines' compiler
    /// (which bounds its nesting).
    pub(super) fn grammar(&mut self) -> Result<Option<String>> {
        match self.guided_grammar.take() {
            Some(g) if g.len() > MAX_GRAMMAR => Err(InvalidRequest::new(
                "guided_grammar",
                format!("`guided_grammar` is longer than {MAX_GRAMMAR} bytes"),
            )),
            Some(g) if g.trim().is_empty() => Err(InvalidRequest::new(
                "guided_grammar",
                "`guided_grammar` is empty",
            )),
            g => Ok(g),
        }
    }
}

/// Longest `guided_grammar`, in bytes.
pub const MAX_GRAMMAR: usize = 64 * 1024;

/// Put `value` from `structured_outputs` in the slot of the key it replaces; whether one was
/// given. The key itself given too is refused.
fn put<T>(slot: &mut Option<T>, value: Option<T>, key: &str) -> Result<bool> {
    let Some(v) = value else { return Ok(false) };
    if slot.is_some() {
        return Err(InvalidRequest::new(
            "structured_outputs",
            format!("give either `structured_outputs` or `{key}`, not both"),
        ));
    }
    *slot = Some(v);
    Ok(true)
}

/// Longest `guided_regex`, and longest `guided_choice` (all choices together), in bytes.
pub const MAX_PATTERN: usize = 16 * 1024;
/// Most `guided_choice` choices.
pub const MAX_CHOICES: usize = 256;

/// `guided_choice`: 1 to [`MAX_CHOICES`] non-empty strings, as one escaped alternation.
fn choices(list: Vec<String>) -> Result<String> {
    if list.is_empty() || list.len() > MAX_CHOICES || list.iter().any(String::is_empty) {
        return Err(InvalidRequest::new(
            "guided_choice",
            format!("`guided_choice` takes 1 to {MAX_CHOICES} non-empty strings"),
        ));
    }
    let escaped: Vec<String> = list.iter().map(|c| regex_syntax::escape(c)).collect();
    Ok(format!("({})", escaped.join("|")))
}

/// `schema` if it is within [`super::schema::check_bounds`]'s limits; else a 400 for `param`.
pub(super) fn bounded(schema: Value, param: &str) -> Result<Value> {
    match super::schema::check_bounds(&schema) {
        Ok(()) => Ok(schema),
        Err(why) => Err(InvalidRequest::new(param, format!("`{param}`: {why}"))),
    }
}

/// OpenAI's `response_format` object, as the schema it asks for (`None`: free text).
fn response_format(f: ResponseFormat) -> Result<Option<Value>> {
    let param = "response_format.json_schema";
    let j = match (f.kind, f.json_schema) {
        (FormatKind::JsonSchema, Some(j)) => j,
        (FormatKind::JsonSchema, None) => {
            return Err(InvalidRequest::new(
                param,
                "`response_format.json_schema` must be an object with `name` and `schema`",
            ))
        }
        (_, Some(_)) => {
            return Err(InvalidRequest::new(
                param,
                "`response_format.json_schema` goes with `type: json_schema` only",
            ))
        }
        (FormatKind::Text, None) => return Ok(None),
        (FormatKind::JsonObject, None) => return Ok(Some(json!({"type": "object"}))),
    };
    let name_ok = (1..=MAX_SCHEMA_NAME).contains(&j.name.len())
        && j.name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !name_ok {
        return Err(InvalidRequest::new(
            format!("{param}.name"),
            format!("`{param}.name` must be 1 to {MAX_SCHEMA_NAME} of a-z, A-Z, 0-9, _ and -"),
        ));
    }
    // `strict` asks for exact adherence, which constrained decoding gives either way.
    match j.schema {
        Some(s @ Value::Object(_)) => Ok(Some(bounded(s, "response_format.json_schema.schema")?)),
        _ => Err(InvalidRequest::new(
            format!("{param}.schema"),
            format!("`{param}.schema` must be a JSON Schema object"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema_of(body: Value) -> Result<Option<Value>> {
        let mut c: CommonParams = crate::openai::body::typed(body)?;
        OutputKeys::desugar(&mut c)?.schema()
    }

    #[test]
    fn response_formats_become_schemas() {
        assert_eq!(
            schema_of(json!({"response_format": {"type": "text"}})),
            Ok(None)
        );
        assert_eq!(
            schema_of(json!({"response_format": {"type": "json_object"}})),
            Ok(Some(json!({"type": "object"})))
        );
        let s = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        let rf = json!({"type": "json_schema",
            "json_schema": {"name": "thing_1", "schema": s, "strict": true}});
        assert_eq!(
            schema_of(json!({ "response_format": rf })),
            Ok(Some(s.clone()))
        );
        assert_eq!(schema_of(json!({ "guided_json": s })), Ok(Some(s.clone())));
        assert_eq!(
            schema_of(json!({ "guided_json": s.to_string() })),
            Ok(Some(s.clone()))
        );
    }

    #[test]
    fn bad_formats_name_the_part() {
        let param = |body| schema_of(body).unwrap_err().param.unwrap();
        assert_eq!(
            param(json!({"response_format": {"type": "yaml"}})),
            "response_format.type"
        );
        assert_eq!(
            param(json!({"response_format": {"type": "json_schema",
                "json_schema": {"name": "bad name", "schema": {}}}})),
            "response_format.json_schema.name"
        );
        assert_eq!(
            param(json!({"response_format": {"type": "json_schema",
                "json_schema": {"name": "n"}}})),
            "response_format.json_schema.schema"
        );
        assert_eq!(
            param(json!({"response_format": {"type": "json_object", "x": 1}})),
            "response_format.x"
        );
        assert_eq!(
            param(json!({"response_format": {"type": "json_object"}, "guided_json": {}})),
            "guided_json"
        );
        assert_eq!(param(json!({"guided_json": "not json"})), "guided_json");
        // Every schema a client gives is bounded where it is parsed, as text or not.
        let chain = crate::openai::schema::tests::ref_chain(800);
        assert_eq!(
            param(json!({"guided_json": chain.to_string()})),
            "guided_json"
        );
        assert_eq!(
            param(json!({"response_format": {"type": "json_schema",
                "json_schema": {"name": "n", "schema": chain}}})),
            "response_format.json_schema.schema"
        );
    }
}
