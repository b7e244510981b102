# Shared by the bench scripts (sourced, not run): a work directory removed on exit with the
# servers started in it, starting `vallum serve` on a fresh data directory, and a process's
# CPU time. Needs `work` and `pids` set by the caller (see `bench_init`).

# A fresh work directory; servers started with `bench_serve_vallum` are stopped on exit.
bench_init() {
    work=$(mktemp -d)
    pids=()
    trap bench_cleanup EXIT
}

bench_cleanup() {
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$work"
}

# Serves a fresh data directory with binary $1 under $work/$2 (or, given a configuration file
# $3, what it configures), and notes "endpoint access-key secret-key pid" in $work/$2/creds.
bench_serve_vallum() {
    local bin=$1 dir=$work/$2 endpoint ak sk
    local where=(--data-dir "$dir/data")
    if [ -n "${3:-}" ]; then where=(--config "$3"); fi
    mkdir -p "$dir"
    VALLUM_LOG=warn "$bin" serve --listen 127.0.0.1:0 "${where[@]}" >"$dir/out" 2>"$dir/err" &
    pids+=($!)
    for _ in $(seq 1 300); do
        grep -q '^Secret key:' "$dir/out" 2>/dev/null && break
        sleep 0.1
    done
    endpoint=$(sed -n 's/^Vallum S3 endpoint: *//p' "$dir/out")
    ak=$(sed -n 's/^Access key: *//p' "$dir/out")
    sk=$(sed -n 's/^Secret key: *//p' "$dir/out")
    if [ -z "$endpoint" ] || [ -z "$ak" ] || [ -z "$sk" ]; then
        echo "$bin did not start:" >&2
        cat "$dir/out" "$dir/err" >&2
        exit 1
    fi
    echo "$endpoint $ak $sk ${pids[-1]}" >"$dir/creds"
}

# CPU time (user + system, all threads) of process $1 so far, in clock ticks.
bench_cpu_ticks() {
    awk '{print $14 + $15}' "/proc/$1/stat"
}
