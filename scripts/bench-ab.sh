#!/usr/bin/env bash
# Compares two vallum binaries over HTTP with the `cargo xtask bench` load generator: each serves
# a fresh data directory in turn on embedded defaults, and the load generator PUTs then GETs
# 4 KiB objects against it. A and B alternate ROUNDS times so drift (the machine's noise, disk
# caches) hits both alike; the medians of each side's GET and PUT ops/s are compared.
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
rounds=${3:-3}
objects=${4:-3000}
here=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$here/target}

cargo build --release -p xtask --quiet --manifest-path "$here/Cargo.toml"
xtask=$target/release/xtask

work=$(mktemp -d)
pid=
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# One run: serves a fresh data directory with binary $1, loads it, prints "GET PUT" ops/s.
run() {
    local bin=$1 dir
    dir=$(mktemp -d -p "$work")
    VALLUM_LOG=warn "$bin" serve --listen 127.0.0.1:0 --data-dir "$dir/data" >"$dir/out" 2>"$dir/err" &
    pid=$!
    for _ in $(seq 1 300); do
        grep -q '^Secret key:' "$dir/out" 2>/dev/null && break
        sleep 0.1
    done
    local endpoint ak sk
    endpoint=$(sed -n 's/^Vallum S3 endpoint: *//p' "$dir/out")
    ak=$(sed -n 's/^Access key: *//p' "$dir/out")
    sk=$(sed -n 's/^Secret key: *//p' "$dir/out")
    [ -n "$endpoint" ] && [ -n "$ak" ] && [ -n "$sk" ] || {
        echo "$bin did not start:" >&2
        cat "$dir/out" "$dir/err" >&2
        exit 1
    }
    "$xtask" bench --endpoint "$endpoint" --access-key "$ak" --secret-key "$sk" \
        --small-objects "$objects" --large-objects 0 --lists 0 >"$dir/json"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=
    python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(round(j["get_4k"]["ops_per_s"]), round(j["put_4k"]["ops_per_s"]))' "$dir/json"
}

a_get=() b_get=() a_put=() b_put=()
for i in $(seq 1 "$rounds"); do
    run "$old" >"$work/result"
    read -r g p <"$work/result"
    a_get+=("$g") a_put+=("$p")
    echo "round $i  A ($old): GET $g ops/s, PUT $p ops/s"
    run "$new" >"$work/result"
    read -r g p <"$work/result"
    b_get+=("$g") b_put+=("$p")
    echo "round $i  B ($new): GET $g ops/s, PUT $p ops/s"
done

python3 - "${a_get[*]}" "${b_get[*]}" "${a_put[*]}" "${b_put[*]}" <<'EOF'
import statistics, sys
ag, bg, ap, bp = ([float(x) for x in s.split()] for s in sys.argv[1:5])
for name, a, b in (("GET 4 KiB", ag, bg), ("PUT 4 KiB", ap, bp)):
    ma, mb = statistics.median(a), statistics.median(b)
    print(f"{name}: A median {ma:.0f} ops/s, B median {mb:.0f} ops/s: B {(mb - ma) / ma * 100:+.2f}%")
EOF
