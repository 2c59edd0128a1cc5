//! Progress bars on a terminal, silence elsewhere (CI logs, child processes).

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

pub(crate) fn bar(len: u64, what: &str, bytes: bool) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let template = if bytes {
        "{msg:>12} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec})"
    } else {
        "{msg:>12} [{bar:30}] {pos}/{len}"
    };
    let pb = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(template) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.to_string());
    pb
}
