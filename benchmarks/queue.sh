#!/usr/bin/env bash
# Run long benchmark runs one after another in one detached session (one core's lane).
#   benchmarks/queue.sh [--after PID] LANE_FILE
# LANE_FILE has one run per line, "NAME bench run ..."; blank lines and # comments are skipped.
# Each run logs to benchmarks/logs/NAME.log (benchmarks/long_run.sh is a lane of one); a failed run does
# not stop the lane. --after waits for another process (the run now holding this core) first.
# The lane gets its own session and scheduler priority (autogroup nice -15).
set -euo pipefail
cd "$(dirname "$0")/.."
after=""
if [ "${1:-}" = "--after" ]; then after="$2"; shift 2; fi
lane="$1"
[ -f "$lane" ] || { echo "error: no lane file $lane" >&2; exit 2; }
mkdir -p benchmarks/logs
export GENREC_BENCH_CACHE="${GENREC_BENCH_CACHE:-$HOME/genrec-cache}"
setsid nohup env PATH="$PWD/.venv/bin:$PATH" bash -c '
  after="$1"; lane="$2"
  if [ -n "$after" ]; then while kill -0 "$after" 2>/dev/null; do sleep 20; done; fi
  grep -v -e "^\s*#" -e "^\s*$" "$lane" | while read -r name command; do
    echo "$(date -Is) start $name" >> benchmarks/logs/queue.log
    bash -c "$command" > "benchmarks/logs/$name.log" 2>&1 < /dev/null && status=0 || status=$?
    echo "$(date -Is) end $name exit $status" >> benchmarks/logs/queue.log
  done' queue "$after" "$(realpath "$lane")" > /dev/null 2>&1 < /dev/null &
pid=$!
sleep 1
if [ -w "/proc/$pid/autogroup" ]; then echo -15 > "/proc/$pid/autogroup" || true; fi
echo "lane $lane started (pid $pid)${after:+, after pid $after}; see benchmarks/logs/queue.log"
