#!/usr/bin/env bash
# Vallum next to its peer, Garage 2.5.0, with the same load generator (`cargo xtask bench`)
# on the same machine, in alternating rounds. Not part of the test suite or of CI.
#
# Three servers run throughout, each on a fresh directory:
#   vallum         `vallum serve` on embedded defaults (durable: every write is fsynced);
#   garage         Garage's defaults (metadata_fsync and data_fsync off);
#   garage-fsync   Garage with metadata_fsync and data_fsync on.
# Each round runs, for every server in a rotating order, a small-object run (OBJECTS 4 KiB
# PUTs then GETs, 16 connections) and a large-object run (LARGE 64 MiB PUTs then GETs, 4
# connections), each into a new bucket. Reported: medians over the rounds of ops/s, MB/s and
# the server's CPU time per small request (user + system of the serving process, from /proc),
# and Vallum's ratio to each Garage.
#
#   scripts/bench-garage.sh [ROUNDS] [OBJECTS] [LARGE]      (defaults: 3 2000 4)
#
# Garage is installed once from crates.io (`cargo install garage --version 2.5.0`) into
# $VALLUM_PEERS (default ~/.cache/vallum/peers), outside the repository; Vallum and the load
# generator are built in release mode ($CARGO_TARGET_DIR or ./target).
set -euo pipefail

rounds=${1:-3}
objects=${2:-2000}
large=${3:-4}
garage_version=2.5.0
here=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$here/target}
peers=${VALLUM_PEERS:-$HOME/.cache/vallum/peers}
garage=$peers/garage-$garage_version/bin/garage

if [ ! -x "$garage" ]; then
    echo "installing Garage $garage_version into $peers (once; this takes a while)" >&2
    CARGO_TARGET_DIR=$peers/target cargo install garage --version "$garage_version" --locked \
        --root "$peers/garage-$garage_version" --quiet
fi
cargo build --release -p vallum -p xtask --quiet --manifest-path "$here/Cargo.toml"
vallum=$target/release/vallum
xtask=$target/release/xtask

# shellcheck source=scripts/bench-lib.sh
. "$here/scripts/bench-lib.sh"
bench_init

# A free TCP port on loopback.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts a single-node Garage under $work/$1 with fsync $2 (true/false): layout, a key
# allowed to create buckets; notes "endpoint access-key secret-key pid".
start_garage() {
    local name=$1 fsync=$2 dir=$work/$1 s3 rpc admin conf node key
    mkdir -p "$dir"
    s3=$(free_port)
    rpc=$(free_port)
    admin=$(free_port)
    conf=$dir/garage.toml
    cat >"$conf" <<EOF
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "lmdb"
metadata_fsync = $fsync
data_fsync = $fsync
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$(python3 -c 'import secrets; print(secrets.token_hex(32))')"

[s3_api]
s3_region = "us-east-1"
api_bind_addr = "127.0.0.1:$s3"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin"
EOF
    RUST_LOG=warn "$garage" -c "$conf" server >"$dir/out" 2>"$dir/err" &
    pids+=($!)
    local pid=${pids[-1]}
    # Up when it answers over RPC (its node id alone is read from disk before that).
    local up=
    for _ in $(seq 1 100); do
        if "$garage" -c "$conf" status >/dev/null 2>&1; then
            up=1
            break
        fi
        sleep 0.2
    done
    node=$("$garage" -c "$conf" node id -q 2>/dev/null | cut -d@ -f1)
    if [ -z "$up" ] || [ -z "$node" ]; then
        echo "garage ($name) did not start:" >&2
        cat "$dir/out" "$dir/err" >&2
        exit 1
    fi
    "$garage" -c "$conf" layout assign -z dc1 -c 10G "$node" >/dev/null
    "$garage" -c "$conf" layout apply --version 1 >/dev/null
    key=$("$garage" -c "$conf" key create bench)
    "$garage" -c "$conf" key allow --create-bucket bench >/dev/null
    local ak sk
    ak=$(echo "$key" | sed -n 's/^Key ID: *//p')
    sk=$(echo "$key" | sed -n 's/^Secret key: *//p')
    if [ -z "$ak" ] || [ -z "$sk" ]; then
        echo "garage ($name): no key in: $key" >&2
        exit 1
    fi
    echo "http://127.0.0.1:$s3 $ak $sk $pid" >"$dir/creds"
}

# One run against server $1 (small or large, $2) into bucket $3; appends a JSON line with
# the figures to $work/results.
run() {
    local server=$1 kind=$2 bucket=$3 endpoint ak sk pid before after
    read -r endpoint ak sk pid <"$work/$server/creds"
    local args=(--small-objects "$objects" --large-objects 0 --concurrency 16)
    if [ "$kind" = large ]; then
        args=(--small-objects 0 --large-objects "$large" --concurrency 4)
    fi
    # Start on a quiet disk: a peer without fsync leaves its writes dirty in the page cache,
    # and their writeback would otherwise slow whichever run comes next.
    sync
    before=$(bench_cpu_ticks "$pid")
    "$xtask" bench --endpoint "$endpoint" --access-key "$ak" --secret-key "$sk" \
        --lists 0 --bucket "$bucket" "${args[@]}" >"$work/$server/json"
    after=$(bench_cpu_ticks "$pid")
    python3 -c '
import json, os, sys
j = json.load(open(sys.argv[1]))
cpu_s = (int(sys.argv[3]) - int(sys.argv[2])) / os.sysconf("SC_CLK_TCK")
print(json.dumps({"server": sys.argv[4], "kind": sys.argv[5], "cpu_s": cpu_s, **j}))
' "$work/$server/json" "$before" "$after" "$server" "$kind" >>"$work/results"
}

bench_serve_vallum "$vallum" vallum
start_garage garage false
start_garage garage-fsync true
servers=(vallum garage garage-fsync)
for i in $(seq 1 "$rounds"); do
    # Rotate the order so no server always runs first.
    for k in 0 1 2; do
        server=${servers[$(((i + k) % 3))]}
        run "$server" small "small-$i"
        run "$server" large "large-$i"
        echo "round $i: $server done" >&2
    done
done

python3 - "$work/results" "$objects" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
objects = int(sys.argv[2])
servers = ["vallum", "garage", "garage-fsync"]

def med(server, kind, f):
    return statistics.median(f(r) for r in rows if r["server"] == server and r["kind"] == kind)

metrics = [
    ("PUT 4 KiB ops/s", "small", lambda r: r["put_4k"]["ops_per_s"]),
    ("GET 4 KiB ops/s", "small", lambda r: r["get_4k"]["ops_per_s"]),
    ("server CPU per 4 KiB request, µs", "small", lambda r: r["cpu_s"] * 1e6 / (2 * objects)),
    ("PUT 64 MiB MB/s (4 streams)", "large", lambda r: r["put_64m"]["mb_per_s"]),
    ("GET 64 MiB MB/s (4 streams)", "large", lambda r: r["get_64m"]["mb_per_s"]),
]
print("| metric | vallum | garage | garage-fsync | vallum / garage | vallum / garage-fsync |")
print("| --- | --- | --- | --- | --- | --- |")
for name, kind, f in metrics:
    v, g, gf = (med(s, kind, f) for s in servers)
    print(f"| {name} | {v:.0f} | {g:.0f} | {gf:.0f} | {v / g:.2f} | {v / gf:.2f} |")
EOF
