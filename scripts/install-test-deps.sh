#!/usr/bin/env bash
# Installs what the test suite needs from Debian's packages, if it is missing:
# PostgreSQL 15 (the server's tests start throwaway clusters) and Chromium with ChromeDriver
# (the dashboard's tests drive a real browser), openssl (the TLS tests make their certificates
# with it), and moto's S3 server from PyPI in a virtualenv (the object-store tests). Safe to run
# again; needs root (or sudo).
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
# moto (below) lives in a virtualenv: Debian keeps venv's pip apart.
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  need+=(python3-venv)
fi
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"

if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

# An S3-compatible server for the object-store result tests (tests/object_store.rs): moto's,
# from PyPI, in a virtualenv of its own (the test starts it on a free loopback port).
MOTO_VENV=/opt/flowkit-s3
if [ ! -x "$MOTO_VENV/bin/moto_server" ]; then
  echo "installing moto (S3 test server) in $MOTO_VENV" >&2
  $sudo python3 -m venv "$MOTO_VENV"
  $sudo "$MOTO_VENV/bin/pip" install -q 'moto[s3]==5.2.5' 'flask>=3,<4' 'flask-cors>=5,<7'
fi

