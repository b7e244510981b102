#!/usr/bin/env bash
# Does Vallum stay flat as it grows? Serves one fresh data directory and fills it with SLICES
# slices of OBJECTS 4 KiB objects (each slice into its own bucket, 16 connections, with the
# `cargo xtask bench` load generator): after each slice it prints that slice's PUT and GET ops/s
# and p99, the p50 of 1000-key LIST pages, and the server's resident memory. At the end it
# stops the server, drops the page cache if it may (root), and times a cold restart until the
# endpoint answers. Not part of the test suite or of CI.
#
#   scripts/bench-scale.sh [SLICES] [OBJECTS]      (defaults: 10 100000: 10^6 objects)
set -euo pipefail

slices=${1:-10}
objects=${2:-100000}
here=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$here/target}
cargo build --release -p vallum -p xtask --quiet --manifest-path "$here/Cargo.toml"
vallum=$target/release/vallum
xtask=$target/release/xtask

# shellcheck source=scripts/bench-lib.sh
. "$here/scripts/bench-lib.sh"
bench_init
bench_serve_vallum "$vallum" s
read -r endpoint ak sk pid <"$work/s/creds"
rss_mib() { echo $(($(awk '/VmRSS/{print $2}' "/proc/$1/status") / 1024)); }

for i in $(seq 1 "$slices"); do
    "$xtask" bench --endpoint "$endpoint" --access-key "$ak" --secret-key "$sk" \
        --small-objects "$objects" --large-objects 0 --lists 20 --bucket "scale-$i" >"$work/json"
    python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
p, g, l = j["put_4k"], j["get_4k"], j["list_1000"]
print("objects %9d: PUT %7.0f/s p99 %6.1f ms | GET %7.0f/s p99 %6.1f ms | LIST p50 %6.1f ms | RSS %s MiB" % (
    int(sys.argv[2]) * int(sys.argv[3]), p["ops_per_s"], p["p99_ms"], g["ops_per_s"], g["p99_ms"], l["p50_ms"], sys.argv[4]))
' "$work/json" "$i" "$objects" "$(rss_mib "$pid")"
done
du -sh "$work/s/data/sites/local/packs" "$work/s/data/meta.db" | tr '\n' ' '
echo

# A cold restart: the pack index and the metadata are read from disk.
kill "$pid"
wait "$pid" 2>/dev/null || true
port=${endpoint##*:}
sync
if [ -w /proc/sys/vm/drop_caches ]; then echo 3 >/proc/sys/vm/drop_caches; fi
start=$(date +%s%N)
VALLUM_LOG=warn "$vallum" serve --listen "127.0.0.1:$port" --data-dir "$work/s/data" \
    >"$work/s/out2" 2>"$work/s/err2" &
pids+=($!)
until curl -s -o /dev/null "$endpoint/"; do sleep 0.02; done
echo "restart to serving: $(( ($(date +%s%N) - start) / 1000000 )) ms, RSS $(rss_mib "${pids[-1]}") MiB"
