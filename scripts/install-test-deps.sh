#!/usr/bin/env bash
# Installs what the test suite needs from Debian's packages, if it is missing:
# PostgreSQL 15 (the server's tests start throwaway clusters) and Chromium with ChromeDriver
# (the dashboard's tests drive a real browser), and openssl (the TLS tests make their
# certificates with it). Safe to run again; needs root (or sudo).
set -euo pipefail

need=()
if [ ! -x /usr/lib/postgresql/15/bin/initdb ] || ! command -v psql >/dev/null; then
  need+=(postgresql-15 postgresql-client-15)
fi
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  need+=(chromium chromium-driver)
fi
if ! command -v openssl >/dev/null; then
  need+=(openssl)
fi
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"

# An S3-compatible server for the object-store result tests (tests/object_store.rs): moto's,
# from PyPI, in a virtualenv of its own (the test starts it on a free loopback port).
MOTO_VENV=/opt/flowkit-s3
if [ ! -x "$MOTO_VENV/bin/moto_server" ]; then
  echo "installing moto (S3 test server) in $MOTO_VENV" >&2
  $sudo python3 -m venv "$MOTO_VENV"
  $sudo "$MOTO_VENV/bin/pip" install -q 'moto[s3]==5.2.5' 'flask>=3,<4' 'flask-cors>=5,<7'
fi

[ ${#need[@]} -eq 0 ] && exit 0
echo "installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq "${need[@]}" >/dev/null
