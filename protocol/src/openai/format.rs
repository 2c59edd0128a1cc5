//! Structured outputs: OpenAI's `response_format` and vLLM's `guided_json`, reduced to the JSON
//! Schema the engine's constrained decoding (llguidance) enforces token by token, so the output
//! parses whatever the model would have said; and vLLM's `guided_regex` and `guided_choice`,
//! reduced to a regular expression enforced the same way.

use super::{InvalidRequest, Result};
use serde_json::{json, Map, Value};

/// Longest `response_format.json_schema.name`, as OpenAI documents it.
pub const MAX_SCHEMA_NAME: usize = 64;

/// The schema `response_format` (OpenAI) or `guided_json` (vLLM's extension) asks for; `None`
/// for free text. `{"type": "json_object"}` is any JSON object (the schema `{"type":
/// "object"}`); `{"type": "json_schema", "json_schema": {"name", "schema", "strict",
/// "description"}}` is its `schema`. Both keys in one request are refused.
///
/// Errors: [`InvalidRequest`] naming the part that is wrong (`response_format.type`,
/// `response_format.json_schema.name`, ...). Whether the engine can enforce the schema is
/// checked later, by the gateway, with the engine's own schema compiler.
pub fn take_output_schema(map: &mut Map<String, Value>) -> Result<Option<Value>> {
    let format = match map.remove("response_format") {
        None => None,
        Some(v) => response_format(v)?,
    };
    let guided = match map.remove("guided_json") {
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
        (f, g) => Ok(f.or(g)),
    }
}

/// vLLM's newer `structured_outputs` object (`{"json" | "regex" | "choice" | "json_object"}`),
/// put back as the keys it replaces (`guided_json`, `guided_regex`, `guided_choice`,
/// `response_format: {"type": "json_object"}`), so one reader checks them all. One kind per
/// request; given with the key it replaces, or with a kind sluice cannot enforce (`grammar`,
/// `structural_tag`) or options it does not take, it is a 400 naming `structured_outputs.*`.
pub fn desugar_structured_outputs(map: &mut Map<String, Value>) -> Result<()> {
    let Some(v) = map.remove("structured_outputs") else {
        return Ok(());
    };
    let Value::Object(fields) = v else {
        return Err(InvalidRequest::new(
            "structured_outputs",
            "`structured_outputs` must be an object",
        ));
    };
    let mut kinds = Vec::new();
    for (k, v) in fields {
        let (key, value) = match (k.as_str(), v) {
            (_, Value::Null) | ("json_object", Value::Bool(false)) => continue,
            ("json", v) => ("guided_json", v),
            ("regex", v) => ("guided_regex", v),
            ("choice", v) => ("guided_choice", v),
            ("json_object", Value::Bool(true)) => {
                ("response_format", json!({"type": "json_object"}))
            }
            (other, _) => {
                return Err(InvalidRequest::unsupported(
                    &format!("structured_outputs.{other}"),
                    "structured outputs take `json`, `regex`, `choice` or `json_object` here",
                ))
            }
        };
        if map.contains_key(key) {
            return Err(InvalidRequest::new(
                "structured_outputs",
                format!("give either `structured_outputs` or `{key}`, not both"),
            ));
        }
        map.insert(key.into(), value);
        kinds.push(k);
    }
    if kinds.len() > 1 {
        return Err(InvalidRequest::new(
            "structured_outputs",
            format!(
                "`structured_outputs` takes one kind, got {}",
                kinds.join(", ")
            ),
        ));
    }
    Ok(())
}

/// Longest `guided_regex`, and longest `guided_choice` (all choices together), in bytes.
pub const MAX_PATTERN: usize = 16 * 1024;
/// Most `guided_choice` choices.
pub const MAX_CHOICES: usize = 256;

/// The regular expression the whole output must match: vLLM's `guided_regex`, or its
/// `guided_choice` as the alternation of the choices (escaped, so the output is exactly one of
/// them); `None` for neither. Both keys in one request are refused, and so is a pattern that
/// does not parse, is longer than [`MAX_PATTERN`] or nests deeper than 64 groups (the
/// compiler walks it recursively).
pub fn take_output_pattern(map: &mut Map<String, Value>) -> Result<Option<String>> {
    let regex = match map.remove("guided_regex") {
        None => None,
        Some(Value::String(r)) => Some(r),
        Some(_) => {
            return Err(InvalidRequest::new(
                "guided_regex",
                "`guided_regex` must be a string",
            ))
        }
    };
    let choice = match map.remove("guided_choice") {
        None => None,
        Some(v) => Some(choices(v)?),
    };
    let (pattern, param) = match (regex, choice) {
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

/// `guided_choice`: 1 to [`MAX_CHOICES`] non-empty strings, as one escaped alternation.
fn choices(v: Value) -> Result<String> {
    let list: Vec<String> = serde_json::from_value(v).map_err(|_| {
        InvalidRequest::new("guided_choice", "`guided_choice` must be a list of strings")
    })?;
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

/// OpenAI's `response_format` object.
fn response_format(v: Value) -> Result<Option<Value>> {
    let Value::Object(mut o) = v else {
        return Err(InvalidRequest::new(
            "response_format",
            "`response_format` must be an object with a `type`",
        ));
    };
    let kind = o.remove("type");
    let schema = match kind.as_ref().and_then(Value::as_str) {
        Some("text") => None,
        Some("json_object") => Some(json!({"type": "object"})),
        Some("json_schema") => Some(json_schema(o.remove("json_schema"))?),
        _ => {
            return Err(InvalidRequest::new(
                "response_format.type",
                "`response_format.type` must be `text`, `json_object` or `json_schema`",
            ))
        }
    };
    match o.keys().next() {
        Some(k) => Err(InvalidRequest::new(
            format!("response_format.{k}"),
            format!("unknown field `response_format.{k}`"),
        )),
        None => Ok(schema),
    }
}

/// `response_format.json_schema`: `{"name", "schema", "strict"?, "description"?}`.
fn json_schema(v: Option<Value>) -> Result<Value> {
    let param = "response_format.json_schema";
    let Some(Value::Object(mut o)) = v else {
        return Err(InvalidRequest::new(
            param,
            "`response_format.json_schema` must be an object with `name` and `schema`",
        ));
    };
    let name_ok = |n: &str| {
        (1..=MAX_SCHEMA_NAME).contains(&n.len())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    match o.remove("name") {
        Some(Value::String(n)) if name_ok(&n) => {}
        _ => {
            return Err(InvalidRequest::new(
                format!("{param}.name"),
                format!("`{param}.name` must be 1 to {MAX_SCHEMA_NAME} of a-z, A-Z, 0-9, _ and -"),
            ))
        }
    }
    // `strict` asks for exact adherence, which constrained decoding gives either way.
    if !matches!(
        o.remove("strict"),
        None | Some(Value::Bool(_)) | Some(Value::Null)
    ) {
        return Err(InvalidRequest::new(
            format!("{param}.strict"),
            format!("`{param}.strict` must be a boolean"),
        ));
    }
    if !matches!(o.remove("description"), None | Some(Value::String(_))) {
        return Err(InvalidRequest::new(
            format!("{param}.description"),
            format!("`{param}.description` must be a string"),
        ));
    }
    let schema = match o.remove("schema") {
        Some(s @ Value::Object(_)) => bounded(s, "response_format.json_schema.schema")?,
        _ => {
            return Err(InvalidRequest::new(
                format!("{param}.schema"),
                format!("`{param}.schema` must be a JSON Schema object"),
            ))
        }
    };
    match o.keys().next() {
        Some(k) => Err(InvalidRequest::new(
            format!("{param}.{k}"),
            format!("unknown field `{param}.{k}`"),
        )),
        None => Ok(schema),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema_of(body: Value) -> Result<Option<Value>> {
        let Value::Object(mut m) = body else { panic!() };
        take_output_schema(&mut m)
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
