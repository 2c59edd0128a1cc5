//! What `sluice bench` does with its flags: compare two result files, alternate two servers
//! (A/B rounds), sweep concurrencies or rates, or make one run; each run printed and written.

use crate::args::{describe, settings, BenchArgs};
use crate::{report, run};
use anyhow::Context;
use serde_json::Value;
use std::path::PathBuf;

/// Run, print, and write the requested files; returns the result JSON.
async fn run_and_report(args: &BenchArgs) -> anyhow::Result<Value> {
    let r = run(args).await?;
    let title = if args.label.is_empty() {
        args.base_url.clone()
    } else {
        format!("{} ({})", args.label, args.base_url)
    };
    report::print(
        &format!("{title}, concurrency {}", args.max_concurrency),
        &r.summary,
    );
    println!("workload: {}", describe(args));
    let j = report::result_json(&r.summary, &r.records, settings(args));
    if let Some(path) = &args.result_filename {
        std::fs::write(path, serde_json::to_string_pretty(&j)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.html {
        let page = report::html(&title, &r.summary, &r.records, &r.workers);
        std::fs::write(path, page).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(j)
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
            .map(|c| variant(format!("c{c}"), &|a| a.max_concurrency = c))
            .collect(),
        (None, Some(r)) => list::<f64>(r, "--sweep-rates")?
            .into_iter()
            .map(|r| variant(format!("r{r}"), &|a| a.request_rate = r))
            .collect(),
        (None, None) => vec![args.clone()],
    })
}
