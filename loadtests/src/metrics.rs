//! Request metrics as vLLM's `benchmark_serving` defines them: TTFT (time to first token),
//! TPOT (time per output token after the first), ITL (gaps between streamed chunks), E2EL
//! (end-to-end latency), and throughputs over the whole run.

use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// What one request measured.
#[derive(Clone, Debug, Default)]
pub struct RequestRecord {
    /// It succeeded: an OpenAI stream that produced content and ended with `[DONE]`, or a
    /// queue job that completed. Only successful requests enter the summary's metrics.
    pub ok: bool,
    /// Why it failed, in short ("HTTP 500", "timeout", "no `[DONE]`", "job FAILED", ...): the
    /// key [`Summary::errors`] counts it under.
    pub error: Option<String>,
    /// Prompt tokens, from the server's usage (0 when it reports none, and with the queue
    /// API).
    pub prompt_tokens: usize,
    /// Output tokens: the server's usage, else the tokenizer's count of the streamed text,
    /// else one per content chunk.
    pub output_tokens: usize,
    /// TTFT: time from sending to the first content chunk (the whole latency for a queue job
    /// that does not stream).
    pub ttft: Duration,
    /// Gaps between consecutive content chunks.
    pub itl: Vec<Duration>,
    /// E2EL: time from sending to the end of the response (the stream's end, or the job's
    /// final status).
    pub latency: Duration,
    /// When the request was sent, from the start of the run.
    pub start: Duration,
    /// Queue API only: the server's `delayTime` (submit -> start on a worker).
    pub delay: Option<Duration>,
    /// Queue API only: the server's `executionTime` (start -> end of the job on a worker).
    pub execution: Option<Duration>,
}

/// Service-level objectives for goodput (vLLM's `--goodput ttft:MS tpot:MS e2el:MS`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Slo {
    /// Most TTFT a request may take, in ms.
    pub ttft_ms: Option<f64>,
    /// Most TPOT a request may have, in ms (a one-token output has none and passes).
    pub tpot_ms: Option<f64>,
    /// Most E2EL a request may take, in ms.
    pub e2el_ms: Option<f64>,
}

impl Slo {
    /// Parse `KEY:MS` items, KEY one of ttft, tpot, e2el.
    ///
    /// Errors: an item without `:`, a value that is not a number, or an unknown key.
    pub fn parse(items: &[String]) -> anyhow::Result<Self> {
        let mut slo = Slo::default();
        for item in items {
            let (k, v) = item
                .split_once(':')
                .ok_or_else(|| anyhow::anyhow!("--goodput takes KEY:MILLISECONDS, got `{item}`"))?;
            let v: f64 = v
                .parse()
                .map_err(|_| anyhow::anyhow!("--goodput `{item}`: not a number"))?;
            match k {
                "ttft" => slo.ttft_ms = Some(v),
                "tpot" => slo.tpot_ms = Some(v),
                "e2el" => slo.e2el_ms = Some(v),
                other => anyhow::bail!("--goodput: unknown metric `{other}` (ttft, tpot, e2el)"),
            }
        }
        Ok(slo)
    }

    /// Whether any objective is set (goodput is computed only then).
    pub fn is_set(&self) -> bool {
        self != &Slo::default()
    }

    /// A successful request within every objective set.
    pub fn met_by(&self, r: &RequestRecord) -> bool {
        let within = |limit: Option<f64>, v: Option<Duration>| match (limit, v) {
            (Some(l), Some(v)) => ms(v) <= l,
            _ => true,
        };
        r.ok && within(self.ttft_ms, Some(r.ttft))
            && within(self.tpot_ms, r.tpot())
            && within(self.e2el_ms, Some(r.latency))
    }
}

impl RequestRecord {
    /// TPOT as vLLM's benchmark_serving defines it, excluding the first token:
    /// (latency - ttft) / (output_tokens - 1), or `None` for outputs of at most one token.
    pub fn tpot(&self) -> Option<Duration> {
        (self.output_tokens > 1)
            .then(|| (self.latency.saturating_sub(self.ttft)) / (self.output_tokens as u32 - 1))
    }
}

/// The distribution of one metric, in the unit of its values (ms in a [`Summary`]); all zero
/// when there were no values.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Stats {
    /// Arithmetic mean.
    pub mean: f64,
    /// 50th percentile.
    pub median: f64,
    /// Population standard deviation (numpy's `std`, as vLLM reports it).
    pub std: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// Percentile by linear interpolation between closest ranks (numpy's default).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = p / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

/// vLLM's per-request latency metrics (`--percentile-metrics` names them in lowercase).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Time to first token.
    Ttft,
    /// Time per output token after the first.
    Tpot,
    /// Inter-token latency (every gap of every request).
    Itl,
    /// End-to-end request latency.
    E2el,
}

impl std::str::FromStr for Metric {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ttft" => Ok(Metric::Ttft),
            "tpot" => Ok(Metric::Tpot),
            "itl" => Ok(Metric::Itl),
            "e2el" => Ok(Metric::E2el),
            other => Err(format!("unknown metric `{other}` (ttft, tpot, itl, e2el)")),
        }
    }
}

/// The values of `metric` over the requests that succeeded, in ms (unsorted).
pub fn metric_ms(records: &[RequestRecord], metric: Metric) -> Vec<f64> {
    let ok = records.iter().filter(|r| r.ok);
    match metric {
        Metric::Ttft => ok.map(|r| ms(r.ttft)).collect(),
        Metric::Tpot => ok.filter_map(|r| r.tpot()).map(ms).collect(),
        Metric::Itl => ok.flat_map(|r| r.itl.iter().copied().map(ms)).collect(),
        Metric::E2el => ok.map(|r| ms(r.latency)).collect(),
    }
}

/// The [`Stats`] of `values` (any order), percentiles by [`percentile`].
pub fn stats(values: &[f64]) -> Stats {
    if values.is_empty() {
        return Stats::default();
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
    Stats {
        mean,
        median: percentile(&v, 50.0),
        std,
        p90: percentile(&v, 90.0),
        p95: percentile(&v, 95.0),
        p99: percentile(&v, 99.0),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The run's summary; `to_vllm_json` writes it with the keys of vLLM's result JSON.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// The run's wall-clock time, in seconds: the denominator of every throughput.
    pub duration: f64,
    /// Requests that succeeded.
    pub completed: usize,
    /// Requests that failed (including those cut at `--max-duration-secs`).
    pub failed: usize,
    /// Prompt tokens of the successful requests.
    pub total_input_tokens: usize,
    /// Output tokens of the successful requests.
    pub total_output_tokens: usize,
    /// Successful requests per second.
    pub request_throughput: f64,
    /// Output tokens per second, successful requests only.
    pub output_throughput: f64,
    /// Prompt plus output tokens per second, successful requests only.
    pub total_token_throughput: f64,
    /// Requests per second that met every SLO (`None` without SLOs).
    pub request_goodput: Option<f64>,
    /// TTFT of the successful requests, ms.
    pub ttft_ms: Stats,
    /// TPOT of the successful requests with more than one output token, ms.
    pub tpot_ms: Stats,
    /// ITL: every chunk gap of every successful request, pooled, ms.
    pub itl_ms: Stats,
    /// E2EL of the successful requests, ms.
    pub e2el_ms: Stats,
    /// Queue API: submit -> start and execution, as the server reports them. True when a
    /// successful request had a `delayTime`; only then are `delay_ms` and `execution_ms`
    /// shown and written.
    pub has_queue_times: bool,
    /// Queue API: the server's `delayTime` (submit -> start) of the successful jobs, ms.
    pub delay_ms: Stats,
    /// Queue API: the server's `executionTime` of the successful jobs, ms.
    pub execution_ms: Stats,
    /// Failed requests by error ([`RequestRecord::error`]; "" when none was given).
    pub errors: BTreeMap<String, usize>,
}

impl Summary {
    /// Summarise a run of `duration` (wall clock): counts, token totals, throughputs and
    /// latency stats over the successful records; goodput over all of them when `slo` is set;
    /// the failures counted by error.
    pub fn from_records(records: &[RequestRecord], duration: Duration, slo: &Slo) -> Self {
        let ok: Vec<&RequestRecord> = records.iter().filter(|r| r.ok).collect();
        let secs = duration.as_secs_f64().max(f64::MIN_POSITIVE);
        let input: usize = ok.iter().map(|r| r.prompt_tokens).sum();
        let output: usize = ok.iter().map(|r| r.output_tokens).sum();
        let mut errors = BTreeMap::new();
        for r in records.iter().filter(|r| !r.ok) {
            *errors
                .entry(r.error.clone().unwrap_or_default())
                .or_insert(0) += 1;
        }
        Summary {
            duration: secs,
            completed: ok.len(),
            failed: records.len() - ok.len(),
            total_input_tokens: input,
            total_output_tokens: output,
            request_throughput: ok.len() as f64 / secs,
            output_throughput: output as f64 / secs,
            total_token_throughput: (input + output) as f64 / secs,
            request_goodput: slo
                .is_set()
                .then(|| records.iter().filter(|r| slo.met_by(r)).count() as f64 / secs),
            ttft_ms: stats(&metric_ms(records, Metric::Ttft)),
            tpot_ms: stats(&metric_ms(records, Metric::Tpot)),
            itl_ms: stats(&metric_ms(records, Metric::Itl)),
            e2el_ms: stats(&metric_ms(records, Metric::E2el)),
            has_queue_times: ok.iter().any(|r| r.delay.is_some()),
            delay_ms: stats(
                &ok.iter()
                    .filter_map(|r| r.delay)
                    .map(ms)
                    .collect::<Vec<_>>(),
            ),
            execution_ms: stats(
                &ok.iter()
                    .filter_map(|r| r.execution)
                    .map(ms)
                    .collect::<Vec<_>>(),
            ),
            errors,
        }
    }

    /// Flat keys as vLLM's `benchmark_serving --save-result` writes them.
    pub fn to_vllm_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        let mut put = |k: &str, v: serde_json::Value| {
            m.insert(k.to_string(), v);
        };
        put("duration", self.duration.into());
        put("completed", self.completed.into());
        put("failed", self.failed.into());
        put("total_input_tokens", self.total_input_tokens.into());
        put("total_output_tokens", self.total_output_tokens.into());
        put("request_throughput", self.request_throughput.into());
        put("output_throughput", self.output_throughput.into());
        put("total_token_throughput", self.total_token_throughput.into());
        put("request_goodput", self.request_goodput.into());
        let queue = [("delay", &self.delay_ms), ("execution", &self.execution_ms)];
        let all = [
            ("ttft", &self.ttft_ms),
            ("tpot", &self.tpot_ms),
            ("itl", &self.itl_ms),
            ("e2el", &self.e2el_ms),
        ];
        let queue = queue.into_iter().filter(|_| self.has_queue_times);
        for (name, s) in all.into_iter().chain(queue) {
            put(&format!("mean_{name}_ms"), s.mean.into());
            put(&format!("median_{name}_ms"), s.median.into());
            put(&format!("std_{name}_ms"), s.std.into());
            for (p, v) in [("90", s.p90), ("95", s.p95), ("99", s.p99)] {
                put(&format!("p{p}_{name}_ms"), v.into());
            }
        }
        put(
            "errors",
            serde_json::to_value(&self.errors).unwrap_or_default(),
        );
        serde_json::Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn percentiles_interpolate_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 50.0), 2.5);
        assert!((percentile(&v, 99.0) - 3.97).abs() < 1e-9);
        assert_eq!(percentile(&[7.0], 90.0), 7.0);
    }

    #[test]
    fn summary_arithmetic_on_known_timings() {
        // Two requests over a 2 s run: 11 and 21 output tokens.
        let a = RequestRecord {
            ok: true,
            prompt_tokens: 5,
            output_tokens: 11,
            ttft: d(100),
            itl: vec![d(50); 10],
            latency: d(600),
            ..Default::default()
        };
        let b = RequestRecord {
            ok: true,
            prompt_tokens: 5,
            output_tokens: 21,
            ttft: d(300),
            itl: vec![d(35); 20],
            latency: d(1300),
            ..Default::default()
        };
        let failed = RequestRecord {
            error: Some("HTTP 500".into()),
            ..Default::default()
        };
        let slo = Slo::parse(&["ttft:150".into(), "tpot:60".into()]).unwrap();
        let s = Summary::from_records(&[a, b, failed], d(2000), &slo);
        // Only `a` meets TTFT <= 150 ms: goodput 1 request in 2 s.
        assert_eq!(s.request_goodput, Some(0.5));
        assert_eq!((s.completed, s.failed), (2, 1));
        assert_eq!(s.total_output_tokens, 32);
        assert!((s.output_throughput - 16.0).abs() < 1e-9);
        assert!((s.request_throughput - 1.0).abs() < 1e-9);
        assert!((s.ttft_ms.mean - 200.0).abs() < 1e-9);
        // TPOT: (600-100)/10 = 50 ms and (1300-300)/20 = 50 ms.
        assert!((s.tpot_ms.mean - 50.0).abs() < 1e-9);
        assert!((s.itl_ms.median - 35.0).abs() < 1e-9);
        assert_eq!(s.errors["HTTP 500"], 1);
        let j = s.to_vllm_json();
        assert_eq!(j["completed"], 2);
        assert!(j["p99_e2el_ms"].as_f64().unwrap() > 1290.0);
        assert_eq!(j["request_goodput"], 0.5);
    }

    #[test]
    fn slo_parsing_names_bad_input() {
        assert_eq!(
            Slo::parse(&["e2el:900".into()]).unwrap().e2el_ms,
            Some(900.0)
        );
        assert!(Slo::parse(&["ttft".into()]).is_err());
        assert!(Slo::parse(&["itl:5".into()])
            .unwrap_err()
            .to_string()
            .contains("itl"));
        assert!(!Slo::default().is_set());
    }
}
