//! What `sluice bench` does with its flags: compare two result files, alternate two servers
//! (A/B rounds), sweep concurrencies or rates, or make one run; each run printed and written.

use crate::args::{describe, settings, BenchArgs};
use crate::{report, run};
use anyhow::Context;
use serde_json::{json, Value};
use std::path::PathBuf;

/// Run, print, and write the requested files; returns the result JSON (with the settings,
/// the extra percentiles and sluice's workers over time).
async fn run_and_report(args: &BenchArgs) -> anyhow::Result<Value> {
    let extra = |r: &crate::Run| {
        report::extra_percentiles(
            &r.records,
            &args.percentile_metrics,
            &args.metric_percentiles,
        )
    };
    let r = run(args).await?;
    let title = if args.label.is_empty() {
        args.base_url.clone()
    } else {
        format!("{} ({})", args.label, args.base_url)
    };
    let cap = args
        .max_concurrency
        .map_or("no concurrency cap".into(), |c| format!("concurrency {c}"));
    report::print(&format!("{title}, {cap}"), &r.summary);
    let workload = describe(args);
    println!("workload: {workload}");
    let mut j = report::result_json(&r.summary, &r.records, settings(args));
    for (key, v) in extra(&r)? {
        println!("{key} {v:.1}");
        j[key] = json!(v);
    }
    j["workers_timeline"] = json!(r.workers);
    if let Some(path) = result_path(args) {
        std::fs::write(&path, serde_json::to_string_pretty(&j)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.html {
        let page = report::html(&report::Page {
            title: &title,
            workload: &workload,
            summary: &r.summary,
            records: &r.records,
            workers: &r.workers,
            cold_starts: &r.cold_starts,
        });
        std::fs::write(path, page).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(j)
}

/// Where the result file goes: `--result-filename` (in `--result-dir`), or with
/// `--save-result` alone vLLM's pattern `{label or openai}-{rate}qps[-concurrency{N}]-{model}-
/// {YYYYmmdd-HHMMSS}.json`; `None` when neither is given.
fn result_path(args: &BenchArgs) -> Option<PathBuf> {
    let name = match (&args.result_filename, args.save_result) {
        (Some(f), _) => f.clone(),
        (None, true) => {
            let who = if args.label.is_empty() {
                "openai"
            } else {
                &args.label
            };
            let rate = if args.request_rate.is_finite() {
                args.request_rate.to_string()
            } else {
                "inf".into()
            };
            let cap = args
                .max_concurrency
                .map_or(String::new(), |c| format!("-concurrency{c}"));
            let model = args.model.rsplit('/').next().unwrap_or(&args.model);
            let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S");
            PathBuf::from(format!("{who}-{rate}qps{cap}-{model}-{stamp}.json"))
        }
        (None, false) => return None,
    };
    Some(match &args.result_dir {
        Some(dir) => dir.join(name),
        None => name,
    })
}

fn list<T: std::str::FromStr>(s: &str, flag: &str) -> anyhow::Result<Vec<T>> {
    s.split(',')
        .map(|x| {
            x.trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("{flag}: `{x}` is not a number"))
        })
        .collect()
}

/// Suffix a result path per sub-run (`r.json` -> `r.c8.json`).
fn suffixed(p: &Option<PathBuf>, tag: &str) -> Option<PathBuf> {
    p.as_ref().map(|p| {
        let stem = p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ext = p
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        p.with_file_name(format!("{stem}.{tag}{ext}"))
    })
}

/// The `sluice bench` command: compare files, an A/B run, a sweep, or one run.
pub async fn main(args: BenchArgs) -> anyhow::Result<()> {
    if let [a, b] = &args.compare[..] {
        return compare(a, b);
    }
    if let Some(b_url) = &args.base_url_b {
        return alternate(&args, b_url).await;
    }
    for a in &sweep(&args)? {
        run_and_report(a).await?;
    }
    Ok(())
}

/// `--compare A B`: ratios B/A of two result files.
fn compare(a: &PathBuf, b: &PathBuf) -> anyhow::Result<()> {
    let read = |p: &PathBuf| -> anyhow::Result<Value> {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))
    };
    let rows = report::ratios(&[read(a)?], &[read(b)?]);
    report::print_ratios(&a.display().to_string(), &b.display().to_string(), &rows);
    Ok(())
}

/// `--base-url-b`: A, B, A, B for `--rounds`, then ratios B/A with min-max.
async fn alternate(args: &BenchArgs, b_url: &str) -> anyhow::Result<()> {
    let (mut a_runs, mut b_runs) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        for (url, runs, tag) in [
            (args.base_url.as_str(), &mut a_runs, "a"),
            (b_url, &mut b_runs, "b"),
        ] {
            let mut a = args.clone();
            a.base_url = url.to_string();
            a.label = format!("{tag}{round}");
            a.result_filename = suffixed(&args.result_filename, &format!("{tag}{round}"));
            a.html = None;
            runs.push(run_and_report(&a).await?);
        }
    }
    report::print_ratios(&args.base_url, b_url, &report::ratios(&a_runs, &b_runs));
    if let Some(path) = &args.html {
        let page = report::ab_html(&describe(args), &args.base_url, b_url, &a_runs, &b_runs);
        std::fs::write(path, page).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// One run per swept value, each writing its own files (`r.json` -> `r.c8.json`); without a
/// sweep, the one run the flags describe.
fn sweep(args: &BenchArgs) -> anyhow::Result<Vec<BenchArgs>> {
    let variant = |tag: String, set: &dyn Fn(&mut BenchArgs)| {
        let mut a = args.clone();
        set(&mut a);
        a.result_filename = suffixed(&args.result_filename, &tag);
        a.html = suffixed(&args.html, &tag);
        a
    };
    Ok(match (&args.sweep_concurrency, &args.sweep_rates) {
        (Some(c), _) => list::<usize>(c, "--sweep-concurrency")?
            .into_iter()
            .map(|c| variant(format!("c{c}"), &|a| a.max_concurrency = Some(c)))
            .collect(),
        (None, Some(r)) => list::<f64>(r, "--sweep-rates")?
            .into_iter()
            .map(|r| variant(format!("r{r}"), &|a| a.request_rate = r))
            .collect(),
        (None, None) => vec![args.clone()],
    })
}
