#!/usr/bin/env bash
# The whole Vallum test suite, on a fresh Debian machine with only the Rust toolchain:
# installs what the tests need (Debian packages, Python clients in a virtualenv, Azurite from
# npm), starts a throwaway PostgreSQL server, checks formatting and clippy, then runs every
# test with cargo-nextest (or cargo test without it).
#
#   ./scripts/test.sh            # everything
#   ./scripts/test.sh -E 'test(multipart)'   # extra arguments go to nextest
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${VALLUM_CACHE:-$HOME/.cache/vallum}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
# Incremental artifacts help an edit-compile loop, not a test run: they double the target
# directory (tens of GB) and slow the first build.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
VENV="$CACHE/venv"
mkdir -p "$CACHE"

log() { printf '\n== %s (%s, %ss into the run)\n' "$*" "$(date -u +%H:%M:%S)" "$SECONDS"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# --- Debian packages ---------------------------------------------------------------------
need_pkgs=()
command -v rclone >/dev/null || need_pkgs+=(rclone)
command -v curl >/dev/null || need_pkgs+=(curl)
command -v jq >/dev/null || need_pkgs+=(jq)
command -v openssl >/dev/null || need_pkgs+=(openssl)
command -v python3 >/dev/null || need_pkgs+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_pkgs+=(python3-venv)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_pkgs+=(postgresql)
command -v softhsm2-util >/dev/null || need_pkgs+=(softhsm2)
command -v npm >/dev/null || need_pkgs+=(nodejs npm)
command -v systemd-analyze >/dev/null || need_pkgs+=(systemd)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  log "installing Debian packages: ${need_pkgs[*]}"
  # Another apt (unattended upgrades on a fresh machine) may hold the lock: wait for it.
  apt_wait=(-o DPkg::Lock::Timeout=600)
  as_root apt-get "${apt_wait[@]}" update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get "${apt_wait[@]}" install -y -qq "${need_pkgs[@]}" >/dev/null
fi

# --- Python clients ----------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import boto3, cryptography, azure.storage.blob' 2>/dev/null \
   || [ ! -x "$VENV/bin/aws" ] || [ ! -x "$VENV/bin/s3cmd" ] || [ ! -x "$VENV/bin/moto_server" ]; then
  log "installing awscli, boto3, s3cmd, cryptography, azure-storage-blob and moto into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip >/dev/null 2>&1 || true
  "$VENV/bin/pip" install -q awscli boto3 s3cmd cryptography azure-storage-blob "moto[server]"
fi
export PATH="$VENV/bin:$PATH"

# --- Azurite: Azure Blob Storage for the remote-site tests ----------------------------------
# 3.35.0 is the newest release that runs on Node.js 20 (later ones need Node.js 21+).
AZURITE_VERSION=3.35.0
NODE_DIR="$CACHE/node"
if [ ! -x "$NODE_DIR/node_modules/.bin/azurite-blob" ] \
   || ! grep -q "\"version\": \"$AZURITE_VERSION\"" "$NODE_DIR/node_modules/azurite/package.json" 2>/dev/null; then
  log "installing azurite $AZURITE_VERSION into $NODE_DIR"
  mkdir -p "$NODE_DIR"
  npm install --prefix "$NODE_DIR" --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION" >/dev/null
fi
export PATH="$NODE_DIR/node_modules/.bin:$PATH"

# --- SoftHSM2: a token directory of this run's own for the PKCS#11 provider tests ----------
HSM_DIR=$(mktemp -d /tmp/vallum-softhsm.XXXXXX)
mkdir -p "$HSM_DIR/tokens"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$HSM_DIR" > "$HSM_DIR/softhsm2.conf"
export SOFTHSM2_CONF="$HSM_DIR/softhsm2.conf"

# --- PostgreSQL for the metadata-store tests (a throwaway cluster on a free loopback port) ---
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
PG_DIR=$(mktemp -d /tmp/vallum-pg.XXXXXX)
PG_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
pg_as() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$PG_DIR"
log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
pg_as "$PG_BIN/initdb" -D "$PG_DIR/data" -A trust -U vallum >/dev/null
pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w \
  -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null
stop_pg() { pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$PG_DIR" "$HSM_DIR"; }
trap stop_pg EXIT
export VALLUM_TEST_PG_URL="postgres://vallum@127.0.0.1:$PG_PORT/postgres"
export VALLUM_TEST_PG_BIN="$PG_BIN" VALLUM_TEST_PG_DATA="$PG_DIR/data" VALLUM_TEST_PG_PORT="$PG_PORT"

# --- Rust checks and tests ---------------------------------------------------------------
# Cargo bakes each workspace crate's source directory into its test binaries
# (CARGO_MANIFEST_DIR: golden files, scripts), but does not rebuild a crate whose sources moved
# to another checkout with the same contents. When the build cache last served another
# checkout, the workspace's own crates are rebuilt (dependencies are kept), or tests would read
# the other checkout's files.
checkout_marker="$CARGO_TARGET_DIR/.vallum-checkout"
if [ -d "$CARGO_TARGET_DIR" ] && [ "$(cat "$checkout_marker" 2>/dev/null)" != "$(pwd -P)" ]; then
  log "the build cache served another checkout: rebuilding the workspace crates"
  members=$(cargo metadata --no-deps --format-version 1 \
    | python3 -c 'import json, sys; print(" ".join("-p " + p["name"] for p in json.load(sys.stdin)["packages"]))')
  # shellcheck disable=SC2086
  cargo clean $members
fi
mkdir -p "$CARGO_TARGET_DIR"
pwd -P >"$checkout_marker"

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy --all-targets -- -D warnings"
# Not --quiet: a cold run compiles for many minutes, and a line per crate shows it is alive.
cargo clippy --workspace --all-targets -- -D warnings

if cargo nextest --version >/dev/null 2>&1; then
  # Built first on its own, so the log shows how long the build and the run each take.
  log "building the tests"
  cargo nextest run --workspace --no-run
  log "tests"
  cargo nextest run --workspace --no-fail-fast "$@"
else
  log "tests"
  echo "cargo-nextest not found; running cargo test"
  cargo test --workspace --no-fail-fast "$@"
fi
log "done"
