#!/usr/bin/env bash
# Makes a private CA and a server certificate for localhost/127.0.0.1 signed by it, for
# trying TLS (the S3 endpoint, `vallum keyd`) without a public CA.
# Usage: scripts/make-test-ca.sh DIR  ->  DIR/ca.pem, DIR/cert.pem (chain), DIR/key.pem
set -euo pipefail
dir=${1:?usage: make-test-ca.sh DIR}
mkdir -p "$dir"
cd "$dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -keyout ca-key.pem -out ca.pem -subj "/CN=Vallum test CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout key.pem -out server.csr -subj "/CN=localhost" 2>/dev/null
printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n' > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 30 \
  -extfile server.ext -out cert.pem 2>/dev/null
chmod 600 key.pem ca-key.pem
rm -f server.csr server.ext ca.srl
