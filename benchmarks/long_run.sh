#!/usr/bin/env bash
# Start one long benchmark run detached from the session, with its log under benchmarks/logs/.
#   benchmarks/long_run.sh NAME bench run --method ... --set threads=1
# It is a lane of one run (benchmarks/queue.sh): its own session (setsid), so it survives the
# shell that started it, scheduler priority (autogroup nice -15) so that short jobs on the same
# 2 cores do not stretch a wall-clock budget such as max_train_minutes, and the cache under
# $HOME/genrec-cache, outside the work tree, so a later session can resume it with the same command.
set -euo pipefail
cd "$(dirname "$0")/.."
name="$1"; shift
mkdir -p benchmarks/logs
lane="benchmarks/logs/$name.lane"
printf '%s %s\n' "$name" "$(printf '%q ' "$@")" > "$lane"
exec benchmarks/queue.sh "$lane"
