#!/usr/bin/env bash
# cxreport benchmark: prints medians over RUNS runs (default 5).
#   benches/run.sh              all measurements (scale 300 takes a few minutes)
#   SCALES="100" benches/run.sh  only the given metrics scales
# Figures: end-to-end run (both editions, all charts), the same split by stage, the
# metrics stage at --scale 100/300 with peak RSS, and the SQLite floor (reading the
# report's columns once) with the ratio (load + metrics) ÷ floor.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-5}"
SCALES="${SCALES-100 300}"
WORK="${BENCH_DIR:-target/bench}"
mkdir -p "$WORK"
cargo build --release --quiet
BIN=target/release/cxreport
export RUST_LOG=warn

gen() { # scale → database path (generated once)
    local db="$WORK/demo-scale$1.sqlite"
    [ -f "$db" ] || "$BIN" demo-data --out "$db" --scale "$1" 2>/dev/null
    echo "$db"
}

stats() { # reads "label value" lines, prints the median per label
    python3 -c '
import sys, statistics, collections
d = collections.OrderedDict()
for line in sys.stdin:
    k, v = line.split()
    d.setdefault(k, []).append(float(v))
for k, v in d.items():
    print(f"  {k:<28} {statistics.median(v):>10.1f}   (min {min(v):.1f}, max {max(v):.1f}, n={len(v)})")
'
}

manifest_lines() { # manifest.json → "stage ms" lines
    python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))
for k, v in m["timings_ms"].items():
    print(k, v)
if "peak_rss_kb" in m:
    print("peak_rss_mb", m["peak_rss_kb"] / 1024)
' "$1"
}

DB1=$(gen 1)
echo "== end-to-end: cxreport run, default demo database, both editions (ms, median of $RUNS)"
for i in $(seq "$RUNS"); do
    out="$WORK/out-e2e"
    rm -rf "$out"
    s=$(date +%s%N)
    "$BIN" run --db "$DB1" --out "$out" >/dev/null
    e=$(date +%s%N)
    echo "wall_ms $(( (e - s) / 1000000 ))"
    manifest_lines "$out"/conversation-usage/*/manifest.json
done | stats

for scale in $SCALES; do
    DB=$(gen "$scale")
    convs=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from intercom__conversation_enhanced').fetchone()[0])" "$DB")
    echo "== metrics: --scale $scale ($convs conversations), CSV/JSON only (ms, median of $RUNS)"
    for i in $(seq "$RUNS"); do
        out="$WORK/out-scale$scale"
        rm -rf "$out"
        s=$(date +%s%N)
        "$BIN" run --db "$DB" --out "$out" --data-only >/dev/null
        e=$(date +%s%N)
        echo "wall_ms $(( (e - s) / 1000000 ))"
        manifest_lines "$out"/conversation-usage/*/manifest.json
        floor=$("$BIN" scan-floor --db "$DB" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ms"])')
        echo "sqlite_floor_ms $floor"
        python3 -c '
import json, sys, glob
m = json.load(open(glob.glob(sys.argv[1] + "/conversation-usage/*/manifest.json")[0]))
t = m["timings_ms"]
print("ratio_load+metrics/floor", (t["load"] + t["metrics"]) / float(sys.argv[2]))
' "$out" "$floor"
    done | stats
done
