//! One limit on how deep client JSON may nest, checked where each body enters the gateway
//! (`/v1`, `/v2`, batch input lines), so that whatever the gateway accepts a worker can read:
//! a job wraps its client's body in a few levels of its own (`{"input": {"openai_input":
//! body}}`), and serde_json refuses anything past 128 levels, so a limit at the door well below
//! that keeps every later decode (worker, store, status replies) within reach.
//!
//! Both walks here are loops over the bytes or an explicit stack, never recursion, so no input
//! can overflow a stack while it is measured.

use serde_json::Value;

/// The most levels of arrays and objects a client's JSON may nest (the body itself is level 1).
/// Real requests stay far below it; a job adds at most [`JOB_WRAPPING`] levels, and the total
/// stays under serde_json's own recursion limit of 128.
pub const MAX_DEPTH: usize = 64;

/// The levels a job adds around its client's body on the way to a worker (`TakenJob` ->
/// `input` -> `openai_input`) or back (`JobView` -> `output`), with room to spare.
pub const JOB_WRAPPING: usize = 8;

/// The deepest nesting of arrays and objects in JSON `text`, read without parsing (the insides
/// of strings are skipped). Stops counting once past `limit`, so the answer is at most
/// `limit + 1`. Malformed text is measured as far as it goes; the parser reports it.
pub fn text_depth(text: &[u8], limit: usize) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut bytes = text.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'"' => {
                // Skip the string: up to the next quote that no backslash escapes.
                while let Some(&c) = bytes.next() {
                    match c {
                        b'\\' => {
                            bytes.next();
                        }
                        b'"' => break,
                        _ => {}
                    }
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > deepest {
                    deepest = depth;
                    if deepest > limit {
                        return deepest;
                    }
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The deepest nesting of arrays and objects in `value` (a scalar is 0, `{}` is 1).
pub fn value_depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((v, above)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(a) => Box::new(a.iter()),
            Value::Object(o) => Box::new(o.values()),
            _ => continue,
        };
        deepest = deepest.max(above + 1);
        stack.extend(children.map(|c| (c, above + 1)));
    }
    deepest
}

/// `Err` with the client-facing reason when `text` nests deeper than `limit` (a client's is
/// [`MAX_DEPTH`]); `what` names it ("The request body", "line 3").
pub fn check_text(text: &[u8], what: &str, limit: usize) -> Result<(), String> {
    if text_depth(text, limit) > limit {
        return Err(too_deep(what, limit));
    }
    Ok(())
}

/// The reason a value nests deeper than `limit`.
pub fn too_deep(what: &str, limit: usize) -> String {
    format!("{what} nests arrays and objects more than {limit} levels deep, past the limit")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(levels: usize) -> String {
        format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn depth_is_measured_alike_on_text_and_values() {
        for text in [
            r#"{"a": [1, {"b": "[[[[\"{{"}], "c": {}}"#,
            "3",
            "[]",
            &nested(10),
        ] {
            let v: Value = serde_json::from_str(text).unwrap();
            assert_eq!(text_depth(text.as_bytes(), 100), value_depth(&v), "{text}");
        }
        assert_eq!(value_depth(&json!({"a": [1, {"b": 2}]})), 3);
        assert_eq!(
            text_depth(br#""\\" [ "\"[" ]"#, 9),
            1,
            "escapes end strings right"
        );
    }

    #[test]
    fn the_limit_holds_and_whatever_passes_a_job_can_wrap() {
        assert!(check_text(nested(MAX_DEPTH).as_bytes(), "the body", MAX_DEPTH).is_ok());
        let err = check_text(nested(MAX_DEPTH + 1).as_bytes(), "the body", MAX_DEPTH).unwrap_err();
        assert!(err.contains("64 levels"), "{err}");
        // Counting stops past the limit: a huge input is not walked to its end.
        assert_eq!(text_depth(nested(100_000).as_bytes(), 5), 6);
        // The deepest body accepted, wrapped as a job is, still decodes with serde_json.
        let wrapped = format!(
            "{}{}{}",
            "{\"x\":".repeat(JOB_WRAPPING),
            nested(MAX_DEPTH),
            "}".repeat(JOB_WRAPPING)
        );
        assert!(serde_json::from_str::<Value>(&wrapped).is_ok());
        // Values deeper than serde_json would parse (built by hand) are measured too.
        let mut v = json!(1);
        for _ in 0..MAX_DEPTH * 4 {
            v = json!([v]);
        }
        assert_eq!(value_depth(&v), MAX_DEPTH * 4);
    }
}
