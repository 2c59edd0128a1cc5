//! Results: a console table, a JSON file with vLLM's keys (plus per-request arrays), a
//! self-contained HTML report with SVG charts, and ratios between two results.

use crate::metrics::{RequestRecord, Stats, Summary};
use serde_json::{json, Value};
use std::fmt::Write as _;

/// Print a run's summary to stdout under `label`: counts and duration (s), throughputs
/// (tokens/s, requests/s, goodput when set), mean / median / p90 / p99 of TTFT, TPOT, ITL and
/// E2EL in ms (and the queue API's delay and execution times when present), then the errors.
pub fn print(label: &str, s: &Summary) {
    println!("== {label} ==");
    println!(
        "completed {} failed {} in {:.2} s",
        s.completed, s.failed, s.duration
    );
    println!(
        "output tok/s {:.1}   total tok/s {:.1}   req/s {:.2}{}",
        s.output_throughput,
        s.total_token_throughput,
        s.request_throughput,
        s.request_goodput
            .map(|g| format!("   goodput req/s {g:.2}"))
            .unwrap_or_default()
    );
    let queue = [("DELAY", &s.delay_ms), ("EXEC", &s.execution_ms)];
    let shown = [
        ("TTFT", &s.ttft_ms),
        ("TPOT", &s.tpot_ms),
        ("ITL", &s.itl_ms),
        ("E2EL", &s.e2el_ms),
    ]
    .into_iter()
    .chain(queue.into_iter().filter(|_| s.has_queue_times));
    for (name, st) in shown {
        println!(
            "{name:<5} ms  mean {:>8.1}  median {:>8.1}  p90 {:>8.1}  p99 {:>8.1}",
            st.mean, st.median, st.p90, st.p99
        );
    }
    for (e, n) in &s.errors {
        println!("error {e}: {n}");
    }
}

/// vLLM's result keys plus the per-request arrays its result file carries.
pub fn result_json(s: &Summary, records: &[RequestRecord], settings: Value) -> Value {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let mut j = s.to_vllm_json();
    j["input_lens"] = json!(records.iter().map(|r| r.prompt_tokens).collect::<Vec<_>>());
    j["output_lens"] = json!(records.iter().map(|r| r.output_tokens).collect::<Vec<_>>());
    j["ttfts"] = json!(records
        .iter()
        .map(|r| r.ttft.as_secs_f64())
        .collect::<Vec<_>>());
    j["e2els"] = json!(records.iter().map(|r| ms(r.latency)).collect::<Vec<_>>());
    j["start_times"] = json!(records
        .iter()
        .map(|r| r.start.as_secs_f64())
        .collect::<Vec<_>>());
    j["errors_per_request"] = json!(records
        .iter()
        .map(|r| r.error.clone().unwrap_or_default())
        .collect::<Vec<_>>());
    if let (Some(dst), Some(src)) = (j.as_object_mut(), settings.as_object()) {
        dst.extend(src.clone());
    }
    j
}

/// Metrics compared by [`ratios`]: (name, key in the result JSON).
const COMPARED: &[(&str, &str)] = &[
    ("output tok/s", "output_throughput"),
    ("req/s", "request_throughput"),
    ("median TTFT ms", "median_ttft_ms"),
    ("median TPOT ms", "median_tpot_ms"),
    ("p99 E2EL ms", "p99_e2el_ms"),
];

/// B/A ratios of the compared metrics over paired rounds: median and min-max across rounds.
pub fn ratios(a: &[Value], b: &[Value]) -> Vec<(String, f64, f64, f64)> {
    COMPARED
        .iter()
        .map(|(name, key)| {
            let mut r: Vec<f64> = a
                .iter()
                .zip(b)
                .filter_map(|(x, y)| Some(y[*key].as_f64()? / x[*key].as_f64()?))
                .filter(|v| v.is_finite())
                .collect();
            r.sort_by(f64::total_cmp);
            let med = crate::metrics::percentile(&r, 50.0);
            (
                name.to_string(),
                med,
                *r.first().unwrap_or(&f64::NAN),
                *r.last().unwrap_or(&f64::NAN),
            )
        })
        .collect()
}

/// Per metric, the B/A ratio of each round (round 1 first).
fn round_ratios(a: &[Value], b: &[Value]) -> Vec<(&'static str, Vec<f64>)> {
    COMPARED
        .iter()
        .map(|(name, key)| {
            let r = a
                .iter()
                .zip(b)
                .map(|(x, y)| match (x[*key].as_f64(), y[*key].as_f64()) {
                    (Some(x), Some(y)) if x != 0.0 => y / x,
                    _ => f64::NAN,
                })
                .collect();
            (*name, r)
        })
        .collect()
}

/// The HTML page of an A/B run: the workload, the median B/A ratio with its min-max per
/// metric, and a chart of each round's ratios (a line at 1.0: B equals A).
pub fn ab_html(workload: &str, a: &str, b: &str, a_runs: &[Value], b_runs: &[Value]) -> String {
    let mut page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{b} / {a}</title>\
         <style>body{{font-family:sans-serif;margin:24px}}td,th{{padding:2px 10px;text-align:right}}</style></head><body>\
         <h2>B / A: {b} / {a}</h2><p><b>Workload:</b> {workload}</p><p>{} rounds, alternating A B A B.</p>\
         <table><tr><th>B / A</th><th>median</th><th>min</th><th>max</th></tr>",
        a_runs.len().min(b_runs.len())
    );
    for (name, med, lo, hi) in ratios(a_runs, b_runs) {
        let _ = write!(
            page,
            "<tr><td>{name}</td><td>{med:.3}</td><td>{lo:.3}</td><td>{hi:.3}</td></tr>"
        );
    }
    page += "</table>";
    let rounds = round_ratios(a_runs, b_runs);
    let n = a_runs.len().min(b_runs.len());
    let mut series: Vec<(&str, Series)> = rounds
        .iter()
        .map(|(name, r)| {
            let pts = r.iter().enumerate().filter(|(_, v)| v.is_finite());
            (*name, pts.map(|(i, v)| ((i + 1) as f64, *v)).collect())
        })
        .collect();
    series.push(("B = A", vec![(1.0, 1.0), (n.max(1) as f64, 1.0)]));
    page += &chart("B / A per round", "round", &series, YAxis::AroundData);
    page + "</body></html>"
}

/// `--metric-percentiles` of `--percentile-metrics` over the requests that succeeded, as
/// result-file keys (`p25_ttft_ms`) and values in ms. Errors: an unknown metric or a
/// percentile outside (0, 100].
pub fn extra_percentiles(
    records: &[RequestRecord],
    metrics: &str,
    percentiles: &str,
) -> anyhow::Result<Vec<(String, f64)>> {
    let mut out = Vec::new();
    for name in metrics.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let metric: crate::metrics::Metric = name
            .parse()
            .map_err(|e| anyhow::anyhow!("--percentile-metrics: {e}"))?;
        let mut v = crate::metrics::metric_ms(records, metric);
        v.sort_by(f64::total_cmp);
        for p in percentiles
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let q: f64 = p
                .parse()
                .ok()
                .filter(|q| *q > 0.0 && *q <= 100.0)
                .ok_or_else(|| anyhow::anyhow!("--metric-percentiles: `{p}` is not in (0, 100]"))?;
            out.push((format!("p{p}_{name}_ms"), crate::metrics::percentile(&v, q)));
        }
    }
    Ok(out)
}

/// Print the rows of [`ratios`] to stdout as "`b` / `a`": per metric, the median B/A ratio
/// and its min and max across rounds.
pub fn print_ratios(a: &str, b: &str, rows: &[(String, f64, f64, f64)]) {
    println!("== {b} / {a} ==");
    for (name, med, lo, hi) in rows {
        println!("{name:<16} {med:>7.3}  (min {lo:.3}, max {hi:.3})");
    }
}

// ---- HTML ----

const W: f64 = 640.0;
const H: f64 = 260.0;
const PAD: f64 = 48.0;
const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#7f7f7f",
];
/// Room beside the plot for the legend.
const LEGEND: f64 = 170.0;

/// A "nice" tick step for a span: 1, 2, 2.5 or 5 x 10^k, about a quarter of the span.
fn nice_step(span: f64) -> f64 {
    let raw = (span / 4.0).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * mag)
}

/// An axis: (first tick, last tick, step).
type Range = (f64, f64, f64);

/// An axis from `lo` to `hi` on nice ticks.
fn axis(lo: f64, hi: f64) -> Range {
    let hi = if hi <= lo { lo + 1.0 } else { hi };
    let step = nice_step(hi - lo);
    ((lo / step).floor() * step, (hi / step).ceil() * step, step)
}

/// A tick label with the decimals its step needs (2.5 -> "2.5", 0.25 -> "0.25", 500 -> "500").
fn tick(v: f64, step: f64) -> String {
    // The fewest decimals that write the step exactly (its multiples then too).
    let decimals = (0..6)
        .find(|d| {
            let scaled = step * 10f64.powi(*d as i32);
            (scaled - scaled.round()).abs() < 1e-6
        })
        .unwrap_or(6);
    format!("{v:.decimals$}")
}

/// How a chart's y axis runs: from zero (counts, rates, fractions) or around the data
/// (ratios near 1).
#[derive(Clone, Copy, PartialEq)]
enum YAxis {
    FromZero,
    AroundData,
}

/// The x and y axes of `series` as (first tick, last tick, step) each: x from 0 (or, around
/// the data, from its first point), y from 0 or around the data with 20% room.
fn ranges(series: &[(&str, Vec<(f64, f64)>)], y: YAxis) -> (Range, Range) {
    let pts = || series.iter().flat_map(|(_, p)| p.iter().copied());
    let xmin = pts().map(|p| p.0).fold(f64::MAX, f64::min);
    let xmax = pts().map(|p| p.0).fold(f64::MIN, f64::max).max(0.0);
    let ymin = pts().map(|p| p.1).fold(f64::MAX, f64::min);
    let ymax = pts().map(|p| p.1).fold(f64::MIN, f64::max);
    let x_from = if xmin > 0.0 && y == YAxis::AroundData {
        xmin.min(xmax)
    } else {
        0.0
    };
    let yr = match y {
        YAxis::FromZero => axis(0.0, ymax.max(0.0)),
        YAxis::AroundData => {
            let pad = ((ymax - ymin) * 0.2).max(0.02);
            axis(ymin - pad, ymax + pad)
        }
    };
    (axis(x_from, xmax), yr)
}

/// An SVG line chart of `series` (name, points) with nice ticks on both axes and the legend
/// beside the plot.
fn chart(title: &str, xlabel: &str, series: &[(&str, Vec<(f64, f64)>)], y: YAxis) -> String {
    let ((x0, x1, xs), (y0, y1, ys)) = ranges(series, y);
    let plot_w = W - 2.0 * PAD;
    let sx = |x: f64| PAD + (x - x0) / (x1 - x0) * plot_w;
    let sy = |v: f64| H - PAD - (v - y0) / (y1 - y0) * (H - 2.0 * PAD);
    let mut svg = format!(
        "<h3>{title}</h3><svg width=\"{}\" height=\"{H}\" xmlns=\"http://www.w3.org/2000/svg\" font-size=\"12\">\
         <line x1=\"{PAD}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#333\"/>\
         <line x1=\"{PAD}\" y1=\"{PAD}\" x2=\"{PAD}\" y2=\"{b}\" stroke=\"#333\"/>",
        W + LEGEND,
        b = H - PAD,
        r = W - PAD
    );
    let mut x = x0;
    while x <= x1 + xs * 1e-6 {
        let _ = write!(
            svg,
            "<line x1=\"{p:.1}\" y1=\"{b}\" x2=\"{p:.1}\" y2=\"{t}\" stroke=\"#333\"/><text x=\"{p:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            H - PAD + 16.0,
            tick(x, xs),
            p = sx(x),
            b = H - PAD,
            t = H - PAD + 4.0
        );
        x += xs;
    }
    let mut v = y0;
    while v <= y1 + ys * 1e-6 {
        let _ = write!(
            svg,
            "<line x1=\"{PAD}\" y1=\"{p:.1}\" x2=\"{r}\" y2=\"{p:.1}\" stroke=\"#eee\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            PAD - 6.0,
            sy(v) + 4.0,
            tick(v, ys),
            p = sy(v),
            r = W - PAD
        );
        v += ys;
    }
    let _ = write!(
        svg,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{xlabel}</text>",
        W / 2.0,
        H - 8.0
    );
    for (i, (name, points)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let path: Vec<String> = points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>\
             <rect x=\"{}\" y=\"{}\" width=\"12\" height=\"3\" fill=\"{color}\"/><text x=\"{}\" y=\"{}\">{name}</text>",
            path.join(" "),
            W - PAD + 12.0,
            PAD + 18.0 * i as f64 - 4.0,
            W - PAD + 28.0,
            PAD + 18.0 * i as f64
        );
    }
    svg + "</svg>"
}

/// Empirical CDF points of `values`.
fn cdf(values: &[f64]) -> Vec<(f64, f64)> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len() as f64;
    v.iter()
        .enumerate()
        .map(|(i, x)| (*x, (i + 1) as f64 / n))
        .collect()
}

/// (x, y) points of a chart series.
type Series = Vec<(f64, f64)>;

/// Output tokens finished per second, and requests in flight, over the run.
fn timelines(records: &[RequestRecord], duration: f64) -> (Series, Series) {
    let bins = duration.ceil().max(1.0) as usize;
    let mut tokens = vec![0.0; bins + 1];
    for r in records.iter().filter(|r| r.ok) {
        let end = (r.start + r.latency).as_secs_f64();
        tokens[(end as usize).min(bins)] += r.output_tokens as f64;
    }
    let throughput = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (i as f64, *t))
        .collect();
    let steps = (duration * 4.0).ceil().max(1.0) as usize;
    let inflight = (0..=steps)
        .map(|i| {
            let t = i as f64 / 4.0;
            let n = records
                .iter()
                .filter(|r| r.start.as_secs_f64() <= t && t < (r.start + r.latency).as_secs_f64())
                .count();
            (t, n as f64)
        })
        .collect();
    (throughput, inflight)
}

fn stats_row(name: &str, s: &Stats) -> String {
    format!(
        "<tr><td>{name}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td></tr>",
        s.mean, s.median, s.p90, s.p95, s.p99
    )
}

/// What one run's HTML page shows.
pub struct Page<'a> {
    /// The page's title (label and server).
    pub title: &'a str,
    /// The workload line ([`crate::args`]'s description of the flags).
    pub workload: &'a str,
    /// The run's metrics.
    pub summary: &'a Summary,
    /// Its requests.
    pub records: &'a [RequestRecord],
    /// (seconds, workers) when the server is sluice.
    pub workers: &'a [(f64, f64)],
    /// sluice's cold starts of the workers seen, by worker id.
    pub cold_starts: &'a std::collections::BTreeMap<String, protocol::health::ColdStart>,
}

/// The cold starts sluice reported: per worker, its tier and phases (spawn, load, ready), ms.
fn cold_start_table(
    starts: &std::collections::BTreeMap<String, protocol::health::ColdStart>,
) -> String {
    if starts.is_empty() {
        return String::new();
    }
    let ms = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    let mut t = String::from(
        "<h3>Cold starts (sluice)</h3><table><tr><th>worker</th><th>tier</th><th>spawn ms</th><th>load ms</th><th>ready ms</th></tr>",
    );
    for (id, c) in starts {
        let _ = write!(
            t,
            "<tr><td>{id}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            c.tier.map_or("-", |t| t.as_str()),
            c.spawn_ms,
            ms(c.load_ms),
            ms(c.ready_ms)
        );
    }
    t + "</table>"
}

/// A self-contained HTML page (inline SVG, no scripts) for one run: the workload, the
/// metrics (goodput when SLOs were given), latency CDFs, throughput and concurrency over time
/// (workers beside requests in flight when the server is sluice) and sluice's cold starts.
pub fn html(p: &Page) -> String {
    let (title, s, records) = (p.title, p.summary, p.records);
    let ok: Vec<&RequestRecord> = records.iter().filter(|r| r.ok).collect();
    let ttft: Vec<f64> = ok.iter().map(|r| r.ttft.as_secs_f64() * 1e3).collect();
    let e2el: Vec<f64> = ok.iter().map(|r| r.latency.as_secs_f64() * 1e3).collect();
    let (throughput, inflight) = timelines(records, s.duration);
    let mut page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font-family:sans-serif;margin:24px}}td,th{{padding:2px 10px;text-align:right}}</style></head><body>\
         <h2>{title}</h2><p><b>Workload:</b> {}</p><p>{} completed, {} failed in {:.2} s: {:.1} output tok/s, {:.2} req/s{}</p>\
         <table><tr><th></th><th>mean</th><th>median</th><th>p90</th><th>p95</th><th>p99</th></tr>{}{}{}{}</table>",
        p.workload,
        s.completed,
        s.failed,
        s.duration,
        s.output_throughput,
        s.request_throughput,
        s.request_goodput.map(|g| format!(", goodput {g:.2} req/s (requests meeting every --goodput SLO)")).unwrap_or_default(),
        stats_row("TTFT ms", &s.ttft_ms),
        stats_row("TPOT ms", &s.tpot_ms),
        stats_row("ITL ms", &s.itl_ms),
        stats_row("E2EL ms", &s.e2el_ms),
    );
    page += &chart(
        "Latency CDF",
        "milliseconds",
        &[("TTFT", cdf(&ttft)), ("E2EL", cdf(&e2el))],
        YAxis::FromZero,
    );
    page += &chart(
        "Output tokens finished per second",
        "seconds into the run",
        &[("tok/s", throughput)],
        YAxis::FromZero,
    );
    let mut conc = vec![("requests in flight", inflight)];
    if !p.workers.is_empty() {
        conc.push(("workers", p.workers.to_vec()));
    }
    page += &chart(
        "Concurrency over time",
        "seconds into the run",
        &conc,
        YAxis::FromZero,
    );
    page += &cold_start_table(p.cold_starts);
    for (e, n) in &s.errors {
        let _ = write!(page, "<p>error {e}: {n}</p>");
    }
    page + "</body></html>"
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn rec(start: u64, latency: u64, tokens: usize) -> RequestRecord {
        RequestRecord {
            ok: true,
            output_tokens: tokens,
            start: Duration::from_millis(start),
            latency: Duration::from_millis(latency),
            ttft: Duration::from_millis(latency / 4),
            ..Default::default()
        }
    }

    #[test]
    fn timelines_bin_tokens_and_count_in_flight() {
        let rs = [rec(0, 1500, 10), rec(500, 1000, 20), rec(2000, 500, 5)];
        let (tp, inflight) = timelines(&rs, 3.0);
        assert_eq!(tp[1], (1.0, 30.0), "both first requests end in second 1");
        assert_eq!(tp[2], (2.0, 5.0));
        assert_eq!(inflight[2], (0.5, 2.0));
        assert_eq!(inflight[8], (2.0, 1.0));
    }

    #[test]
    fn cdf_ends_at_one_and_html_is_self_contained() {
        let c = cdf(&[3.0, 1.0, 2.0]);
        assert_eq!(c, vec![(1.0, 1.0 / 3.0), (2.0, 2.0 / 3.0), (3.0, 1.0)]);
        let rs = [rec(0, 1000, 10)];
        let s = Summary::from_records(&rs, Duration::from_secs(1), &Default::default());
        let mut starts = std::collections::BTreeMap::new();
        starts.insert(
            "w-1".to_string(),
            protocol::health::ColdStart {
                spawn_ms: 3,
                load_ms: Some(700),
                ready_ms: Some(760),
                tier: Some(protocol::health::Tier::Disk),
                started_at_ms: 0,
            },
        );
        let page = html(&Page {
            title: "t",
            workload: "16 requests",
            summary: &s,
            records: &rs,
            workers: &[(0.0, 1.0)],
            cold_starts: &starts,
        });
        assert!(page.contains("<svg") && page.contains("workers") && !page.contains("<script"));
        assert!(
            page.contains("16 requests") && page.contains("<td>disk</td><td>3</td><td>700</td>")
        );
    }

    #[test]
    fn axes_tick_on_round_numbers() {
        assert_eq!(axis(0.0, 7601.0), (0.0, 8000.0, 2000.0));
        assert_eq!(axis(0.0, 1.0), (0.0, 1.0, 0.25));
        assert_eq!(tick(0.25, 0.25), "0.25");
        assert_eq!(tick(2.5, 2.5), "2.5");
        assert_eq!(tick(500.0, 250.0), "500");
        assert_eq!(tick(0.98, 0.02), "0.98");
        let (lo, hi, step) = axis(0.96, 1.04);
        assert!((lo - 0.96).abs() < 1e-9 && (hi - 1.04).abs() < 1e-9 && (step - 0.02).abs() < 1e-9);
    }

    /// A's and B's results of two rounds: B 20% faster in the first, equal in the second.
    fn two_rounds() -> (Vec<Value>, Vec<Value>) {
        let run = |t: f64| json!({ "output_throughput": t });
        (vec![run(10.0), run(20.0)], vec![run(12.0), run(20.0)])
    }

    #[test]
    fn ab_page_charts_each_round_and_extra_percentiles_are_keys() {
        let (a, b) = two_rounds();
        let page = ab_html("w", "A", "B", &a, &b);
        assert!(
            page.contains("B / A per round")
                && page.contains("B = A")
                && page.contains("<td>1.100</td>")
        );
        let rs = [rec(0, 1000, 10), rec(0, 2000, 10)];
        let p = extra_percentiles(&rs, "ttft,e2el", "50,100").unwrap();
        let keys: Vec<&str> = p.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["p50_ttft_ms", "p100_ttft_ms", "p50_e2el_ms", "p100_e2el_ms"]
        );
        assert_eq!(p[3].1, 2000.0);
        assert!(extra_percentiles(&rs, "bogus", "99").is_err());
        assert!(extra_percentiles(&rs, "ttft", "0").is_err());
    }

    #[test]
    fn ratios_pair_rounds() {
        let (a, b) = two_rounds();
        let r = ratios(&a, &b);
        assert_eq!(r[0].0, "output tok/s");
        assert!(
            (r[0].1 - 1.1).abs() < 1e-9
                && (r[0].2 - 1.0).abs() < 1e-9
                && (r[0].3 - 1.2).abs() < 1e-9
        );
    }
}
