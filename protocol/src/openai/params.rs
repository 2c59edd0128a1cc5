//! The parameters chat and text completions share: model, length and sampling (range-checked),
//! stop sequences, logit bias, structured output, streaming.

use super::body::CommonParams;
use super::wire::{Stop, StreamOptions};
use super::{
    check_range, format, InvalidRequest, Result, Sampling, MAX_ALLOWED_TOKEN_IDS, MAX_BAD_WORDS,
    MAX_BAD_WORD_BYTES, MAX_N, MAX_STOP, MAX_STOP_TOKEN_IDS,
};
use std::collections::HashMap;

/// What both routes take: the model, sampling and length, streaming.
pub(super) struct Common {
    pub model: String,
    pub sampling: Sampling,
    pub stream: bool,
    pub include_usage: bool,
    pub continuous_usage: bool,
    pub low_priority: bool,
}

pub(super) fn parse_common(mut c: CommonParams) -> Result<Common> {
    let model = c
        .model
        .take()
        .ok_or_else(|| InvalidRequest::new("model", "you must provide a model parameter"))?;
    let mut sampling = parse_sampling(&c)?;
    sampling.stop = parse_stop(c.stop.take())?;
    sampling.stop_token_ids = c.stop_token_ids.take().unwrap_or_default();
    if sampling.stop_token_ids.len() > MAX_STOP_TOKEN_IDS {
        return Err(InvalidRequest::new(
            "stop_token_ids",
            format!("`stop_token_ids` takes at most {MAX_STOP_TOKEN_IDS} token ids"),
        ));
    }
    sampling.include_stop_str_in_output = c.include_stop_str_in_output.unwrap_or(false);
    sampling.bad_words = parse_bad_words(c.bad_words.take())?;
    sampling.prompt_logprobs = c
        .prompt_logprobs
        .map(|n| super::logprobs::check_top("prompt_logprobs", n))
        .transpose()?;
    sampling.allowed_token_ids = c.allowed_token_ids.take();
    sampling.keep_special_tokens = !c.skip_special_tokens.unwrap_or(true);
    sampling.truncate_prompt_tokens = c.truncate_prompt_tokens;
    if sampling.truncate_prompt_tokens == Some(0) {
        return Err(InvalidRequest::new(
            "truncate_prompt_tokens",
            "`truncate_prompt_tokens` must be at least 1",
        ));
    }
    if let Some(ids) = &sampling.allowed_token_ids {
        if ids.is_empty() || ids.len() > MAX_ALLOWED_TOKEN_IDS {
            return Err(InvalidRequest::new(
                "allowed_token_ids",
                format!("`allowed_token_ids` takes 1 to {MAX_ALLOWED_TOKEN_IDS} token ids"),
            ));
        }
    }
    sampling.logit_bias = parse_logit_bias(c.logit_bias.take())?;
    let mut outputs = format::OutputKeys::desugar(&mut c)?;
    sampling.json_schema = outputs.schema()?;
    sampling.pattern = outputs.pattern()?;
    sampling.grammar = outputs.grammar()?;
    if sampling.json_schema.is_some() && sampling.pattern.is_some() {
        return Err(InvalidRequest::new(
            "guided_regex",
            "a pattern (`guided_regex`, `guided_choice`) cannot be combined with a schema \
             (`response_format`, `guided_json`)",
        ));
    }
    if sampling.grammar.is_some() && (sampling.json_schema.is_some() || sampling.pattern.is_some())
    {
        return Err(InvalidRequest::new(
            "guided_grammar",
            "`guided_grammar` cannot be combined with a schema or a pattern",
        ));
    }
    let (stream, include_usage, continuous_usage) = parse_stream(c.stream, c.stream_options)?;
    if stream && sampling.prompt_logprobs.is_some() {
        return Err(InvalidRequest::new(
            "prompt_logprobs",
            "`prompt_logprobs` are not returned when streaming (as in vLLM)",
        ));
    }
    Ok(Common {
        model,
        sampling,
        stream,
        include_usage,
        continuous_usage,
        low_priority: c.priority.is_some_and(|p| p > 0),
    })
}

/// Length and sampling parameters, range-checked.
fn parse_sampling(c: &CommonParams) -> Result<Sampling> {
    if c.max_tokens == Some(0) {
        return Err(InvalidRequest::new(
            "max_tokens",
            "`max_tokens` must be at least 1",
        ));
    }
    let s = Sampling {
        max_tokens: c.max_tokens,
        temperature: c.temperature,
        top_p: c.top_p,
        top_k: c.top_k,
        min_p: c.min_p,
        presence_penalty: c.presence_penalty,
        frequency_penalty: c.frequency_penalty,
        repetition_penalty: c.repetition_penalty,
        seed: c.seed,
        n: c.n.unwrap_or(1),
        ignore_eos: c.ignore_eos.unwrap_or(false),
        min_tokens: c.min_tokens.unwrap_or(0),
        ..Sampling::default()
    };
    check_range("temperature", s.temperature, 0.0, 2.0)?;
    check_range("top_p", s.top_p, f64::MIN_POSITIVE, 1.0)?;
    check_range("min_p", s.min_p, 0.0, 1.0)?;
    let penalty = |v: Option<f32>| v.map(f64::from);
    check_range("presence_penalty", penalty(s.presence_penalty), -2.0, 2.0)?;
    check_range("frequency_penalty", penalty(s.frequency_penalty), -2.0, 2.0)?;
    check_range(
        "repetition_penalty",
        penalty(s.repetition_penalty),
        0.01,
        10.0,
    )?;
    if s.top_k == Some(0) {
        return Err(InvalidRequest::new("top_k", "`top_k` must be at least 1"));
    }
    if !(1..=MAX_N).contains(&s.n) {
        return Err(InvalidRequest::new(
            "n",
            format!("`n` must be between 1 and {MAX_N}"),
        ));
    }
    Ok(s)
}

/// `stop`: a string or up to [`MAX_STOP`] non-empty strings.
fn parse_stop(stop: Option<Stop>) -> Result<Vec<String>> {
    let stop = match stop {
        None => vec![],
        Some(Stop::One(one)) => vec![one],
        Some(Stop::Many(many)) => many,
    };
    if stop.len() > MAX_STOP || stop.iter().any(String::is_empty) {
        return Err(InvalidRequest::new(
            "stop",
            format!("`stop` takes 1 to {MAX_STOP} non-empty strings"),
        ));
    }
    Ok(stop)
}

/// vLLM's `bad_words`: up to [`MAX_BAD_WORDS`] words of 1 to [`MAX_BAD_WORD_BYTES`] bytes,
/// none blank (vLLM tokenizes each without its leading whitespace).
fn parse_bad_words(words: Option<Vec<String>>) -> Result<Vec<String>> {
    let words = words.unwrap_or_default();
    let fits = |w: &String| !w.trim().is_empty() && w.len() <= MAX_BAD_WORD_BYTES;
    if words.len() > MAX_BAD_WORDS || !words.iter().all(fits) {
        return Err(InvalidRequest::new(
            "bad_words",
            format!(
                "`bad_words` takes up to {MAX_BAD_WORDS} words of 1 to {MAX_BAD_WORD_BYTES} \
                 bytes, none blank"
            ),
        ));
    }
    Ok(words)
}

/// `logit_bias`: token ids (as strings, OpenAI's form) to biases in -100..=100.
fn parse_logit_bias(bias: Option<HashMap<String, f32>>) -> Result<HashMap<u32, f32>> {
    let mut out = HashMap::new();
    for (tok, b) in bias.unwrap_or_default() {
        let id = tok.parse::<u32>().map_err(|_| {
            InvalidRequest::new(
                "logit_bias",
                format!("logit_bias key `{tok}` is not a token id"),
            )
        })?;
        if !(-100.0..=100.0).contains(&b) {
            return Err(InvalidRequest::new(
                "logit_bias",
                "biases must be between -100 and 100",
            ));
        }
        out.insert(id, b);
    }
    Ok(out)
}

/// `stream`, `stream_options.include_usage` and vLLM's `continuous_usage_stats` (the options
/// only with `stream`; continuous usage only with `include_usage`, as vLLM reads it).
fn parse_stream(stream: Option<bool>, opts: Option<StreamOptions>) -> Result<(bool, bool, bool)> {
    let stream = stream.unwrap_or(false);
    let Some(opts) = opts else {
        return Ok((stream, false, false));
    };
    if !stream {
        return Err(InvalidRequest::new(
            "stream_options",
            "`stream_options` is only allowed when `stream` is true",
        ));
    }
    let include_usage = opts.include_usage == Some(true);
    let continuous = opts.continuous_usage_stats == Some(true);
    Ok((stream, include_usage, include_usage && continuous))
}

#[cfg(test)]
mod tests {
    use super::super::{ChatRequest, CompletionRequest};
    use serde_json::{json, Value};

    fn completion(extra: Value) -> super::Result<CompletionRequest> {
        let mut body = json!({"model": "m", "prompt": "p"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        CompletionRequest::parse(body)
    }

    fn param_of(r: super::Result<CompletionRequest>) -> Option<String> {
        r.unwrap_err().param
    }

    #[test]
    fn vllm_generation_controls_are_read_and_bounded() {
        let r = completion(
            json!({"ignore_eos": true, "min_tokens": 3, "stop_token_ids": [2, 7],
            "include_stop_str_in_output": true}),
        )
        .unwrap();
        let s = &r.sampling;
        assert!(s.ignore_eos && s.include_stop_str_in_output);
        assert_eq!(
            (s.min_tokens, s.stop_token_ids.as_slice()),
            (3, &[2, 7][..])
        );
        // min_tokens is checked against the route's default max_tokens (16) too.
        assert_eq!(
            param_of(completion(json!({"min_tokens": 17}))).as_deref(),
            Some("min_tokens")
        );
        assert!(completion(json!({"min_tokens": 17, "max_tokens": 17})).is_ok());
        let many: Vec<u32> = (0..65).collect();
        assert_eq!(
            param_of(completion(json!({"stop_token_ids": many}))).as_deref(),
            Some("stop_token_ids")
        );
        assert_eq!(
            param_of(completion(json!({"ignore_eos": "yes"}))).as_deref(),
            Some("ignore_eos")
        );
    }

    #[test]
    fn guided_choice_is_an_escaped_alternation_and_patterns_are_checked() {
        let r = completion(json!({"guided_choice": ["a.b", "c"]})).unwrap();
        assert_eq!(r.sampling.pattern.as_deref(), Some(r"(a\.b|c)"));
        assert_eq!(
            param_of(completion(json!({"guided_regex": "(a"}))).as_deref(),
            Some("guided_regex")
        );
        let deep = format!("{}a{}", "(".repeat(65), ")".repeat(65));
        assert_eq!(
            param_of(completion(json!({"guided_regex": deep}))).as_deref(),
            Some("guided_regex")
        );
        assert_eq!(
            param_of(completion(json!({"guided_choice": [""]}))).as_deref(),
            Some("guided_choice")
        );
    }

    #[test]
    fn structured_outputs_is_read_as_the_keys_it_replaces() {
        let r = completion(json!({"structured_outputs": {"choice": ["a", "b"]}})).unwrap();
        assert_eq!(r.sampling.pattern.as_deref(), Some("(a|b)"));
        let r = completion(json!({"structured_outputs": {"json": {"type": "object"}}})).unwrap();
        assert_eq!(r.sampling.json_schema, Some(json!({"type": "object"})));
        let r = completion(json!({"structured_outputs": {"grammar": "start: \"a\""}})).unwrap();
        assert_eq!(r.sampling.grammar.as_deref(), Some("start: \"a\""));
        for clash in [json!({"guided_regex": "a"}), json!({"guided_json": {}})] {
            let mut body = json!({"guided_grammar": "start: \"a\""});
            body.as_object_mut()
                .unwrap()
                .extend(clash.as_object().unwrap().clone());
            assert_eq!(
                param_of(completion(body)).as_deref(),
                Some("guided_grammar")
            );
        }
        let r = completion(json!({"structured_outputs": {"json_object": true}})).unwrap();
        assert!(r.sampling.json_schema.is_some());
        for (bad, param) in [
            (
                json!({"structural_tag": {}}),
                "structured_outputs.structural_tag",
            ),
            (json!({"regex": "a", "choice": ["a"]}), "structured_outputs"),
            (json!(["a"]), "structured_outputs"),
        ] {
            let e = completion(json!({"structured_outputs": bad}));
            assert_eq!(param_of(e).as_deref(), Some(param), "{bad}");
        }
        let both = completion(json!({"structured_outputs": {"regex": "a"}, "guided_regex": "b"}));
        assert_eq!(param_of(both).as_deref(), Some("structured_outputs"));
    }

    #[test]
    fn bad_words_are_bounded_and_not_blank() {
        let r = completion(json!({"bad_words": ["hello", " world"]})).unwrap();
        assert_eq!(r.sampling.bad_words, ["hello", " world"]);
        let many = vec!["w"; 65];
        for bad in [
            json!([" "]),
            json!(["x".repeat(257)]),
            json!(many),
            json!("w"),
        ] {
            let e = completion(json!({ "bad_words": bad }));
            assert_eq!(param_of(e).as_deref(), Some("bad_words"));
        }
    }

    #[test]
    fn only_a_priority_above_0_queues_at_low_priority() {
        let low = |p: Value| completion(json!({ "priority": p })).unwrap().low_priority;
        assert!(low(json!(1)) && !low(json!(0)) && !low(json!(-5)) && !low(Value::Null));
        assert_eq!(
            param_of(completion(json!({"priority": 1.5}))).as_deref(),
            Some("priority")
        );
    }

    #[test]
    fn continuous_usage_needs_include_usage_as_in_vllm() {
        let opts = |o: Value| completion(json!({"stream": true, "stream_options": o})).unwrap();
        let r = opts(json!({"include_usage": true, "continuous_usage_stats": true}));
        assert!(r.include_usage && r.continuous_usage);
        assert!(!opts(json!({"continuous_usage_stats": true})).continuous_usage);
        assert!(!opts(json!({"include_usage": null})).include_usage);
        let chat = ChatRequest::parse(json!({"model": "m", "messages": [{"role": "user",
            "content": "x"}], "max_tokens": 2, "min_tokens": 3}));
        assert_eq!(chat.unwrap_err().param.as_deref(), Some("min_tokens"));
    }
}
