#!/usr/bin/env bash
# Vallum against ceph/s3-tests, the S3 conformance suite, as a real deployment runs: over TLS,
# with KMS keys created, three accounts (tenants) for the main, alt and tenant users. Not part
# of the test suite or of CI (it takes minutes and needs a checkout of s3-tests).
#
#   scripts/s3-tests.sh S3TESTS_DIR [--update] [pytest arguments]
#
# VALLUM_BIN=path uses that binary instead of building a release one. The last run's pytest
# log, server log and passing tests are kept in ~/.cache/vallum/s3tests/last.
# S3TESTS_DIR is a checkout of https://github.com/ceph/s3-tests. Its Python requirements are
# installed once into a virtualenv under ~/.cache/vallum/s3tests (VALLUM_CACHE moves it).
# Tests of features out of scope (see OUT_OF_SCOPE) are deselected. The passing tests are
# written to $work/passed.txt and compared with tests/s3-tests/expected-passes.txt: a test
# listed there that fails is a regression, and the script exits 1. `--update` rewrites the
# list instead.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
src=$(cd "${1:?usage: s3-tests.sh S3TESTS_DIR [--update] [pytest args]}" && pwd)
shift
update=false
if [ "${1:-}" = "--update" ]; then
    update=true
    shift
fi
cache=${VALLUM_CACHE:-$HOME/.cache/vallum}
target=${CARGO_TARGET_DIR:-$here/target}
expected=$here/tests/s3-tests/expected-passes.txt

# Markers of features Vallum does not offer (RGW's own APIs, STS and IAM accounts, websites,
# notifications, select, append, bucket logging) or of tests that fail against AWS S3 itself.
OUT_OF_SCOPE=(fails_on_aws appendobject bucket_logging bucket_logging_cleanup
    fails_without_logging_rollover cloud_transition cloud_restore group group_policy
    iam_account iam_cross_account iam_role iam_tenant iam_user role_policy session_policy
    s3select s3website s3website_routing_rules s3website_redirect_location sns test_of_sts
    token_claims_trust_policy_test token_principal_tag_role_policy_test
    token_request_tag_trust_policy_test token_resource_tags_test token_role_tags_test
    token_tag_keys_test webidentity_test abac_test user_policy)

venv=$cache/s3tests/venv
if [ ! -x "$venv/bin/pytest" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q -r "$src/requirements.txt"
fi

if [ -n "${VALLUM_BIN:-}" ]; then
    vallum=$VALLUM_BIN # a binary built already (a debug build is fast enough here)
else
    cargo build --release -p vallum --quiet --manifest-path "$here/Cargo.toml"
    vallum=$target/release/vallum
fi

work=$(mktemp -d)
pid=
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

"$here/scripts/make-test-ca.sh" "$work/tls"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# serve [TLS env...]: starts the server on $work/data and waits for its banner.
serve() {
    env VALLUM_LOG=warn "$@" "$vallum" serve --listen "127.0.0.1:$port" --data-dir "$work/data" \
        >"$work/out" 2>>"$work/err" &
    pid=$!
    for _ in $(seq 1 300); do
        grep -q '^Secret key:' "$work/out" 2>/dev/null && return 0
        sleep 0.1
    done
    cat "$work/out" "$work/err" >&2
    exit 1
}
# Global bucket names: the setting a deployment serving unmodified S3 clients across tenants has.
serve VALLUM_TLS_CERT="$work/tls/cert.pem" VALLUM_TLS_KEY="$work/tls/key.pem" VALLUM_GLOBAL_BUCKET_NAMES=true
root_ak=$(sed -n 's/^Access key: *//p' "$work/out")
root_sk=$(sed -n 's/^Secret key: *//p' "$work/out")
export VALLUM_ENDPOINT=https://localhost:$port AWS_CA_BUNDLE=$work/tls/ca.pem
as_root() { AWS_ACCESS_KEY_ID=$root_ak AWS_SECRET_ACCESS_KEY=$root_sk "$vallum" "$@"; }

# The KMS keys the encryption tests name, and one account per s3-tests user.
as_root key create s3tests-key-1 >/dev/null
as_root key create s3tests-key-2 >/dev/null
account() { # tenant -> "access secret" of its first administrator
    as_root tenant create "$1" --display-name "$1" --json \
        | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["access_key"]["id"], j["secret_key"])'
}
read -r main_ak main_sk < <(account s3main)
read -r alt_ak alt_sk < <(account s3alt)
read -r ten_ak ten_sk < <(account testx)

cat >"$work/s3tests.conf" <<CONF
[DEFAULT]
host = localhost
port = $port
is_secure = True
ssl_verify = False

[fixtures]
bucket prefix = s3t-{random}-

[s3 main]
display_name = s3main
user_id = s3main
email = main@example.com
access_key = $main_ak
secret_key = $main_sk
api_name = us-east-1
kms_keyid = s3tests-key-1
kms_keyid2 = s3tests-key-2

[s3 alt]
display_name = s3alt
user_id = s3alt
email = alt@example.com
access_key = $alt_ak
secret_key = $alt_sk

[s3 tenant]
display_name = testx
user_id = testx
email = tenant@example.com
access_key = $ten_ak
secret_key = $ten_sk
tenant = testx

[iam]
email = s3@example.com
user_id = s3main
access_key = $main_ak
secret_key = $main_sk
display_name = s3main

# Read when the tests are collected; the IAM-account tests are deselected.
[iam root]
access_key = $main_ak
secret_key = $main_sk
user_id = s3main
email = main@example.com

[iam alt root]
access_key = $alt_ak
secret_key = $alt_sk
user_id = s3alt
email = alt@example.com
CONF

deselect=$(printf ' and not %s' "${OUT_OF_SCOPE[@]}")
deselect=${deselect# and }
echo "s3-tests against Vallum at https://localhost:$port (TLS, KMS keys, three accounts)"
set +e
(cd "$src" && S3TEST_CONF=$work/s3tests.conf "$venv/bin/pytest" s3tests/functional \
    -p no:cacheprovider -q -rN -o junit_family=xunit1 --junitxml="$work/junit.xml" \
    -m "$deselect" "$@") >"$work/pytest.log" 2>&1
set -e
tail -n 3 "$work/pytest.log"
python3 - "$work/junit.xml" "$work/passed.txt" <<'PY'
import sys, xml.etree.ElementTree as ET
cases = ET.parse(sys.argv[1]).getroot().iter("testcase")
passed = sorted(
    c.get("name") for c in cases
    if not any(ch.tag in ("failure", "error", "skipped") for ch in c)
)
open(sys.argv[2], "w").write("".join(n + "\n" for n in passed))
PY
# The last run's log and passes stay for a look at what failed and why.
last=$cache/s3tests/last
mkdir -p "$last"
cp "$work/pytest.log" "$work/passed.txt" "$work/err" "$work/junit.xml" "$last/"
passed=$(wc -l <"$work/passed.txt")
echo "passed: $passed"
if [ "$passed" -eq 0 ]; then
    echo "nothing passed: the run did not happen (see below)" >&2
    tail -n 30 "$work/pytest.log" >&2
    exit 1
fi
if $update; then
    mkdir -p "$(dirname "$expected")"
    cp "$work/passed.txt" "$expected"
    echo "wrote $expected"
    exit 0
fi
if [ -f "$expected" ]; then
    lost=$(comm -23 "$expected" "$work/passed.txt")
    if [ -n "$lost" ]; then
        echo "regressions (expected to pass, did not):"
        echo "$lost"
        exit 1
    fi
    echo "no regression against $(wc -l <"$expected") expected passes"
fi
