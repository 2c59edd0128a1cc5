//! `sluice models ...`: the weight cache's disk tier from the command line: pull, list (tier,
//! size, last use, in use), remove, collect to a budget, export a tokenizer.

use protocol::config::Deployment;
use std::path::Path;
use std::time::SystemTime;
use weights::Cache;

pub fn pull(config: &Path, name: &str) -> anyhow::Result<()> {
    let dep = Deployment::load(config)?;
    let cfg = protocol::ModelConfig::find(&dep.models_dir, name)?;
    let cache = Cache::from_env();
    let m = cache.pull(&cfg)?;
    if let Some(budget) = dep.config.cache.budget_bytes() {
        cache.evict_to(budget, Some(name))?;
    }
    println!(
        "{}\t{}\t{}",
        m.name,
        m.format.as_str(),
        m.served_path().display()
    );
    Ok(())
}

pub fn export_tokenizer(config: &Path, name: &str, dir: &Path) -> anyhow::Result<()> {
    let dep = Deployment::load(config)?;
    let cfg = protocol::ModelConfig::find(&dep.models_dir, name)?;
    let m = Cache::from_env().pull(&cfg)?;
    m.prompt_tokenizer()?.save_hf(dir)?;
    println!("{}", dir.display());
    Ok(())
}

/// "3 min ago" style age of `t`.
fn ago(t: Option<SystemTime>) -> String {
    let Some(secs) = t.and_then(|t| t.elapsed().ok()).map(|d| d.as_secs()) else {
        return "-".into();
    };
    match secs {
        0..120 => format!("{secs} s ago"),
        120..7200 => format!("{} min ago", secs / 60),
        7200..172800 => format!("{} h ago", secs / 3600),
        _ => format!("{} d ago", secs / 86400),
    }
}

/// Every configured model, and every other model directory in the cache: its tier (`ram`
/// when the page cache holds its served file, `disk`, or `-` when not cached), size, last
/// use and whether a running worker holds it.
pub fn ls(config: &Path) -> anyhow::Result<()> {
    let dep = Deployment::load(config)?;
    let cache = Cache::from_env();
    let entries = cache.entries();
    println!(
        "{:<28} {:<8} {:<6} {:>10} {:<12} {:<6} PATH",
        "NAME", "FORMAT", "TIER", "SIZE", "LAST USE", "IN USE"
    );
    let configs = protocol::ModelConfig::load_dir(&dep.models_dir)?;
    for cfg in &configs {
        let entry = entries.iter().find(|e| e.name == cfg.name);
        match (cache.lookup(cfg), entry) {
            (Ok(m), Some(e)) => {
                let tier =
                    autoscaler::tiers::tier_of(Some(&m.served_path())).map_or("-", |t| t.as_str());
                println!(
                    "{:<28} {:<8} {:<6} {:>10} {:<12} {:<6} {}",
                    m.name,
                    m.format.as_str(),
                    tier,
                    format!("{:.1} MB", e.bytes as f64 / 1e6),
                    ago(e.last_use),
                    if e.in_use { "yes" } else { "no" },
                    m.served_path().display()
                )
            }
            _ => println!(
                "{:<28} {:<8} {:<6} {:>10} {:<12} {:<6} (not cached)",
                cfg.name,
                cfg.weights.serve_format.as_str(),
                "-",
                "-",
                "-",
                "-"
            ),
        }
    }
    for e in entries
        .iter()
        .filter(|e| configs.iter().all(|c| c.name != e.name))
    {
        println!(
            "{:<28} {:<8} {:<6} {:>10} {:<12} {:<6} {} (no config)",
            e.name,
            "-",
            "disk",
            format!("{:.1} MB", e.bytes as f64 / 1e6),
            ago(e.last_use),
            if e.in_use { "yes" } else { "no" },
            e.dir.display()
        );
    }
    Ok(())
}

pub fn rm(name: &str) -> anyhow::Result<()> {
    if Cache::from_env().remove(name)? {
        println!("removed {name}");
    } else {
        anyhow::bail!("model `{name}` is not in the cache");
    }
    Ok(())
}

/// Remove least recently used models no worker holds until the disk tier fits `budget_gib`
/// (default: the config's `[cache] disk_budget_gib`).
pub fn gc(config: &Path, budget_gib: Option<f64>) -> anyhow::Result<()> {
    let dep = Deployment::load(config)?;
    let settings = protocol::config::CacheSettings {
        disk_budget_gib: budget_gib.unwrap_or(dep.config.cache.disk_budget_gib),
    };
    let Some(budget) = settings.budget_bytes() else {
        anyhow::bail!("no budget: pass --budget-gib, or set [cache] disk_budget_gib in the config");
    };
    let cache = Cache::from_env();
    for name in cache.evict_to(budget, None)? {
        println!("removed {name}");
    }
    let total: u64 = cache.entries().iter().map(|e| e.bytes).sum();
    println!(
        "disk tier: {:.1} MB of {:.1} MB",
        total as f64 / 1e6,
        budget as f64 / 1e6
    );
    Ok(())
}
