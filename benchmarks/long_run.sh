#!/usr/bin/env bash
# Start one long benchmark run detached from the session, with its log under benchmarks/logs/.
#   benchmarks/long_run.sh NAME bench run --method ... --set threads=1
# The run gets its own session (setsid), so it survives the shell that started it, and its
# scheduler autogroup is given priority (nice -15) so that short jobs on the same 2 cores
# (tests, editors) do not stretch a wall-clock time budget such as max_train_minutes.
# The cache defaults to $HOME/genrec-cache, outside the work tree, so a later session that
# finds it can resume the run with the same command.
set -euo pipefail
cd "$(dirname "$0")/.."
name="$1"; shift
mkdir -p benchmarks/logs
export GENREC_BENCH_CACHE="${GENREC_BENCH_CACHE:-$HOME/genrec-cache}"
setsid nohup env PATH="$PWD/.venv/bin:$PATH" "$@" > "benchmarks/logs/$name.log" 2>&1 < /dev/null &
pid=$!
sleep 1
if [ -w "/proc/$pid/autogroup" ]; then echo -15 > "/proc/$pid/autogroup" || true; fi
echo "started $name (pid $pid), log benchmarks/logs/$name.log"
