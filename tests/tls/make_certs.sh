#!/usr/bin/env bash
# Makes the certificates the TLS tests use, fresh each run, with the openssl
# command (EC P-256 keys: quick to make):
#
#   bash tests/tls/make_certs.sh DIR
#
# DIR/ca.pem              a test CA (key ca.key)
# DIR/server.pem .key     for "localhost" and 127.0.0.1/::1, signed by the CA
# DIR/client.pem .key     a client certificate signed by the CA (mutual TLS)
# DIR/other-ca.pem        a second CA that signed nothing here (wrong CA)
# DIR/other.pem .key      "localhost", signed by the other CA
set -euo pipefail
dir="${1:?usage: $0 DIR}"
mkdir -p "$dir"
cd "$dir"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ca() { # name
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -out "$1.pem" -days 3 -subj "/CN=mpconn test $1" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}
leaf() { # name ca cn san eku
  key "$1.key"
  openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=$3" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=%s\nbasicConstraints=CA:FALSE\n' "$4" "$5" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -out "$1.pem" \
    -days 2 -extfile "$1.ext" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
ca ca
ca other-ca
leaf server ca localhost "DNS:localhost,IP:127.0.0.1,IP:::1" serverAuth
leaf client ca "mpconn client" "DNS:client" clientAuth
leaf other other-ca localhost "DNS:localhost,IP:127.0.0.1" serverAuth
