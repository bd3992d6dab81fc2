#!/usr/bin/env bash
# Regenerates the TLS test fixtures of the test kit (see README.md).
# Needs only the `openssl` command line tool (1.1.1 or 3.x).
set -euo pipefail
cd "$(dirname "$0")"

days=36500 # 100 years
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }

# The CA. Its key is thrown away: to add a certificate, regenerate them all.
key "$work/ca.key"
openssl req -x509 -new -key "$work/ca.key" -sha256 -days "$days" \
  -subj "/CN=jobsight-otel test CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -addext "subjectKeyIdentifier=hash" \
  -out ca.pem

# issue NAME CN EXTENSIONS: NAME.key and NAME.pem, signed by the CA.
issue() {
  key "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$work/$1.csr"
  printf '%s\n' "$3" > "$work/$1.ext"
  openssl x509 -req -in "$work/$1.csr" -CA ca.pem -CAkey "$work/ca.key" \
    -CAcreateserial -CAserial "$work/ca.srl" -sha256 -days "$days" \
    -extfile "$work/$1.ext" -out "$1.pem"
}

issue server localhost "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1
authorityKeyIdentifier=keyid"

issue client "jobsight-otel test client" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
authorityKeyIdentifier=keyid"

chmod 644 ./*.pem ./*.key
openssl verify -CAfile ca.pem server.pem client.pem
