# Sourced by the bench scripts: the repository root as working directory, the build
# directory, free ports and readiness waits.
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# Cargo's own default (./target) unless the caller chose a directory (.ci/run does).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Wait (up to 60 s) until URL answers 2xx.
wait_url() { for _ in $(seq 1 600); do curl -sf "$1" >/dev/null && return 0; sleep 0.1; done; return 1; }
# A copy of configs/ in DIR whose models keep all their workers always on (min_workers =
# max_workers): for measuring serving, not cold starts (the quickstart default scales from
# zero). Its files and batches live in DIR too, so batches left in progress in the user's
# SLUICE_HOME are not resumed into the measurement. Prints the copy's sluice.toml.
always_on_configs() {
  cp -r configs "$1/configs"
  sed -i "s|^\[gateway\]$|[gateway]\nfiles_dir = \"$(realpath "$1")/files\"|" "$1/configs/sluice.toml"
  for f in "$1"/configs/models/*.toml; do
    local max; max=$(sed -n 's/^max_workers = \([0-9]*\).*/\1/p' "$f")
    sed -i "s/^min_workers = .*/min_workers = ${max:-1}/" "$f"
  done
  echo "$1/configs/sluice.toml"
}
