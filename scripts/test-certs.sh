#!/usr/bin/env bash
# Makes a private CA and a server certificate it signed, for the TLS tests: in DIR,
#   ca.pem             the CA's certificate (what a client trusts)
#   server.pem         the server's certificate, for 127.0.0.1 and localhost, valid 2 days
#   server.key         its key
# Usage: scripts/test-certs.sh DIR
set -euo pipefail
dir=${1:?usage: $0 DIR}
cd "$dir"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -days 2 -subj "/CN=flowkit test CA"
openssl req "${ec[@]}" -keyout server.key -out server.csr -subj /CN=localhost
cat > server.ext <<'EXT'
subjectAltName=IP:127.0.0.1,DNS:localhost
basicConstraints=CA:FALSE
keyUsage=digitalSignature
extendedKeyUsage=serverAuth
EXT
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
    -out server.pem -days 2 -extfile server.ext
