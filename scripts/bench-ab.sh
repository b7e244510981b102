#!/usr/bin/env bash
# Compares two vallum binaries over HTTP with the `cargo xtask bench` load generator. Each serves
# a fresh data directory on embedded defaults, and both run throughout. Each is populated with
# OBJECTS 4 KiB objects (its PUT ops/s are reported), then A and B take turns at GET-only runs,
# ROUNDS each, in the order A B, B A, A B, … so drift (the machine's noise, caches) hits both
# alike and neither always goes first. Compared by medians: GET
# ops/s, and the server's CPU time per GET (user + system time of the serving process, from
# /proc): on a small machine where the load generator competes for the same cores, throughput
# varies by several percent from run to run, CPU time per request much less.
#
#   scripts/bench-ab.sh OLD_BINARY NEW_BINARY [ROUNDS] [OBJECTS]
#
# For example, the cost of a change to the S3 path: build the commit before it into another
# target directory (`git worktree add /tmp/old REV && cd /tmp/old && CARGO_TARGET_DIR=/tmp/old-target
# cargo build --release -p vallum`), then run this with /tmp/old-target/release/vallum and
# target/release/vallum.
set -euo pipefail

old=${1:?usage: bench-ab.sh OLD_BINARY NEW_BINARY [ROUNDS] [OBJECTS]}
new=${2:?usage: bench-ab.sh OLD_BINARY NEW_BINARY [ROUNDS] [OBJECTS]}
rounds=${3:-9}
objects=${4:-3000}
here=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$here/target}

cargo build --release -p xtask --quiet --manifest-path "$here/Cargo.toml"
xtask=$target/release/xtask

# shellcheck source=scripts/bench-lib.sh
. "$here/scripts/bench-lib.sh"
bench_init

# Loads server $1 (a or b) and prints "GET-ops/s PUT-ops/s server-CPU-µs-per-request";
# further arguments go to the load generator.
load() {
    local side=$1 endpoint ak sk pid before after
    shift
    read -r endpoint ak sk pid <"$work/$side/creds"
    before=$(bench_cpu_ticks "$pid")
    "$xtask" bench --endpoint "$endpoint" --access-key "$ak" --secret-key "$sk" \
        --small-objects "$objects" --large-objects 0 --lists 0 "$@" >"$work/$side/json"
    after=$(bench_cpu_ticks "$pid")
    python3 -c '
import json, os, sys
j = json.load(open(sys.argv[1]))
requests = j["get_4k"]["objects"] + j["put_4k"]["objects"]
cpu_us = (int(sys.argv[3]) - int(sys.argv[2])) / os.sysconf("SC_CLK_TCK") * 1e6
print(round(j["get_4k"]["ops_per_s"]), round(j["put_4k"]["ops_per_s"]), round(cpu_us / requests, 1))
' "$work/$side/json" "$before" "$after"
}

bench_serve_vallum "$old" a
bench_serve_vallum "$new" b
a_get=()
b_get=()
a_cpu=()
b_cpu=()
declare -A put
for side in a b; do
    load "$side" >"$work/result"
    read -r g p c <"$work/result"
    put[$side]=$p
    echo "populate $side: PUT $p ops/s"
done
for i in $(seq 1 "$rounds"); do
    # A B, then B A: neither side is always the one that runs first.
    order="a b"
    if [ $((i % 2)) -eq 0 ]; then order="b a"; fi
    for side in $order; do
        load "$side" --get-only >"$work/result"
        read -r g p c <"$work/result"
        if [ "$side" = a ]; then
            a_get+=("$g")
            a_cpu+=("$c")
        else
            b_get+=("$g")
            b_cpu+=("$c")
        fi
        echo "round $i  $side: GET $g ops/s, server CPU $c µs per GET"
    done
done

python3 -c '
import statistics, sys
a, b, ac, bc = ([float(x) for x in s.split()] for s in sys.argv[1:5])
ma, mb = statistics.median(a), statistics.median(b)
print(f"GET 4 KiB: A median {ma:.0f} ops/s (min {min(a):.0f}, max {max(a):.0f}), "
      f"B median {mb:.0f} ops/s (min {min(b):.0f}, max {max(b):.0f}): B {(mb - ma) / ma * 100:+.2f}%")
ca, cb = statistics.median(ac), statistics.median(bc)
print(f"server CPU per GET: A median {ca:.1f} µs (min {min(ac):.1f}, max {max(ac):.1f}), "
      f"B median {cb:.1f} µs (min {min(bc):.1f}, max {max(bc):.1f}): B {(cb - ca) / ca * 100:+.2f}%")
print(f"PUT 4 KiB (one populating run each): A {sys.argv[5]} ops/s, B {sys.argv[6]} ops/s")
' "${a_get[*]}" "${b_get[*]}" "${a_cpu[*]}" "${b_cpu[*]}" "${put[a]}" "${put[b]}"
