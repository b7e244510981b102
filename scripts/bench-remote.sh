#!/usr/bin/env bash
# What a remote site costs in provider requests: serves a provider (a second Vallum, as an
# S3-compatible site) and a gateway whose only site is a bucket on it, writes OBJECTS 4 KiB
# objects through the gateway with 16 connections (`cargo xtask bench`), then prints the
# gateway's PUT and GET ops/s and how many objects the provider holds.
# Not part of the test suite or of CI.
#
#   scripts/bench-remote.sh [OBJECTS] [VALLUM-BINARY]     (defaults: 3000, this tree's release build)
set -euo pipefail

objects=${1:-3000}
here=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$here/target}
cargo build --release -p vallum -p xtask --quiet --manifest-path "$here/Cargo.toml"
vallum=${2:-$target/release/vallum}
xtask=$target/release/xtask
aws=${AWS_CLI:-$HOME/.cache/vallum/venv/bin/aws}

# shellcheck source=scripts/bench-lib.sh
. "$here/scripts/bench-lib.sh"
bench_init
bench_serve_vallum "$vallum" provider
read -r p_endpoint p_ak p_sk p_pid <"$work/provider/creds"
provider_aws() {
    AWS_ACCESS_KEY_ID=$p_ak AWS_SECRET_ACCESS_KEY=$p_sk AWS_DEFAULT_REGION=us-east-1 \
        AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
        "$aws" --endpoint-url "$p_endpoint" "$@"
}
provider_aws s3 mb s3://site >/dev/null

mkdir -p "$work/gw"
cat >"$work/gw/vallum.toml" <<TOML
data_dir = "$work/gw/data"

[site]
backend = "s3"

[site.s3]
endpoint = "$p_endpoint"
bucket = "site"
access_key = "$p_ak"
secret_env = "SITE_SECRET"
TOML
SITE_SECRET=$p_sk bench_serve_vallum "$vallum" gw "$work/gw/vallum.toml"
read -r endpoint ak sk _ <"$work/gw/creds"

"$xtask" bench --endpoint "$endpoint" --access-key "$ak" --secret-key "$sk" \
    --small-objects "$objects" --large-objects 0 --lists 0 --bucket remote-bench >"$work/json"
held=$(provider_aws s3 ls --recursive s3://site | wc -l)
python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
p, g = j["put_4k"], j["get_4k"]
print("%s objects: PUT %.0f/s p99 %.1f ms | GET %.0f/s p99 %.1f ms | provider holds %s objects" % (
    sys.argv[2], p["ops_per_s"], p["p99_ms"], g["ops_per_s"], g["p99_ms"], sys.argv[3]))
' "$work/json" "$objects" "$held"
