#!/bin/sh
# gen-certs.sh DIR - test and demo certificates for redtls, made with the
# openssl CLI only. Idempotent: a finished DIR (DIR/.complete) is left as it
# is; concurrent runs on the same DIR wait for each other (flock when present).
# Keys are EC P-256 unless said otherwise. Nothing here is fit for production.
#
# Contract (relied on by tests, examples and the demo):
#   ca.crt ca.key           test CA ("redtls test CA")
#   server.crt server.key   SAN DNS:localhost, IP:127.0.0.1, IP:::1 (serverAuth)
#   client.crt client.key   CN=redtls-client, clientAuth, signed by ca
# Matrix extras (all server certs signed by ca unless said otherwise; the
# "full SANs" are DNS:localhost, IP:127.0.0.1, IP:::1):
#   expired.crt/.key        full SANs, valid 2020-01-01 .. 2020-02-01 only
#   notyet.crt/.key         full SANs, valid from 2099-01-01
#   wrongname.crt/.key      SAN DNS:wrong.example only
#   nameonly.crt/.key       SAN DNS:localhost only (no IP SAN)
#   wildcard.crt/.key       SAN DNS:*.test.example
#   selfsigned.crt/.key     full SANs, self-signed (no CA)
#   ca2.crt ca2.key         a second CA that nobody trusts
#   untrusted.crt/.key      full SANs, signed by ca2
#   client-untrusted.crt/.key  clientAuth, signed by ca2
#   weak.crt/.key           full SANs, RSA 1024 (refused at security level 2)
#   capath/                 ca.crt under its subject hash (openssl rehash)
#   bundle.crt              ca2.crt followed by ca.crt (multi-cert PEM)
#   cnonly.crt/.key         CN=localhost and no subjectAltName at all (RFC 9525
#                           clients refuse it: the CN is never matched)
#   longchain.crt/.key      server.crt followed by 300 copies of ca.crt: a
#                           chain over OpenSSL's 100 KiB max_cert_list
#                           (longchain.key is server.key)
# Cluster (tests/harness/lab_cluster.c; serverAuth+clientAuth, because redis
# nodes also present them as clients on the cluster bus and replication):
#   node1.crt/.key .. node6.crt/.key  SAN DNS:nodeN.cluster.test only (no IP
#                           SAN, no localhost: clients must verify each node
#                           by the host name it announces)
#   cluster-wildcard.crt/.key  SAN DNS:*.cluster.test only
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
DIR=$1
STAMP_VERSION=3

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)

done_already() {
    [ -f "$DIR/.complete" ] && [ "$(cat "$DIR/.complete")" = "$STAMP_VERSION" ]
}

done_already && exit 0

if command -v flock >/dev/null 2>&1; then
    exec 9>"$DIR/.lock"
    flock 9
    done_already && exit 0
fi

WORK=$(mktemp -d "$DIR/.work.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
umask 077

export OPENSSL_CONF=/dev/null
FULL_SAN="DNS:localhost, IP:127.0.0.1, IP:::1"

# Minimal `openssl ca` set-up: only `ca` can set arbitrary start/end dates.
cat > ca.cnf <<'EOF'
[ ca ]
default_ca = lab
[ lab ]
database = ./index.txt
new_certs_dir = ./issued
serial = ./serial
default_md = sha256
policy = any
copy_extensions = none
unique_subject = no
email_in_dn = no
[ any ]
commonName = supplied
EOF
mkdir issued
: > index.txt
echo 1000 > serial

ec_key() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

make_ca() { # name CN
    ec_key "$1.key"
    openssl req -x509 -new -key "$1.key" -subj "/O=redtls tests/CN=$2" -days 3650 -sha256 \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash" \
        -out "$1.crt"
}

# issue NAME CA CN EKU SAN [STARTDATE ENDDATE]; key NAME.key must exist.
issue() {
    name=$1 ca=$2 cn=$3 eku=$4 san=$5
    {
        echo "[ ext ]"
        echo "basicConstraints = critical,CA:FALSE"
        echo "keyUsage = critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage = $eku"
        echo "authorityKeyIdentifier = keyid"
        echo "subjectKeyIdentifier = hash"
        [ -n "$san" ] && echo "subjectAltName = $san"
    } > "$name.ext"
    openssl req -new -key "$name.key" -subj "/O=redtls tests/CN=$cn" -out "$name.csr"
    if [ $# -ge 7 ]; then
        dates="-startdate $6 -enddate $7"
    else
        dates="-days 825"
    fi
    # shellcheck disable=SC2086
    openssl ca -batch -notext -config ca.cnf -cert "$ca.crt" -keyfile "$ca.key" \
        -in "$name.csr" -out "$name.crt" -extfile "$name.ext" -extensions ext \
        $dates 2>/dev/null
}

make_ca ca "redtls test CA"
make_ca ca2 "redtls untrusted CA"

for n in server expired notyet wrongname nameonly wildcard cnonly untrusted client client-untrusted; do
    ec_key "$n.key"
done
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out weak.key 2>/dev/null
NODES="node1 node2 node3 node4 node5 node6"
for n in $NODES cluster-wildcard; do
    ec_key "$n.key"
done

issue server ca localhost serverAuth "$FULL_SAN"
issue client ca redtls-client clientAuth ""
issue expired ca localhost serverAuth "$FULL_SAN" 20200101000000Z 20200201000000Z
issue notyet ca localhost serverAuth "$FULL_SAN" 20990101000000Z 20991231000000Z
issue wrongname ca wrong.example serverAuth "DNS:wrong.example"
issue nameonly ca localhost serverAuth "DNS:localhost"
issue wildcard ca "*.test.example" serverAuth "DNS:*.test.example"
issue cnonly ca localhost serverAuth ""
issue untrusted ca2 localhost serverAuth "$FULL_SAN"
issue client-untrusted ca2 redtls-client clientAuth ""
issue weak ca localhost serverAuth "$FULL_SAN"
for n in $NODES; do
    issue "$n" ca "$n.cluster.test" "serverAuth, clientAuth" "DNS:$n.cluster.test"
done
issue cluster-wildcard ca "*.cluster.test" "serverAuth, clientAuth" "DNS:*.cluster.test"

ec_key selfsigned.key
openssl req -x509 -new -key selfsigned.key -subj "/O=redtls tests/CN=localhost" -days 825 -sha256 \
    -addext "basicConstraints=critical,CA:FALSE" \
    -addext "extendedKeyUsage=serverAuth" \
    -addext "subjectAltName=$FULL_SAN" \
    -out selfsigned.crt

cat ca2.crt ca.crt > bundle.crt
cp server.crt longchain.crt
cp server.key longchain.key
i=0
while [ $i -lt 300 ]; do
    cat ca.crt >> longchain.crt
    i=$((i + 1))
done
mkdir capath
cp ca.crt capath/ca.pem
openssl rehash capath 2>/dev/null || c_rehash capath >/dev/null

chmod 644 ./*.crt
chmod 600 ./*.key
chmod 755 capath
chmod 644 capath/*

for f in ca ca2 server client expired notyet wrongname nameonly wildcard cnonly longchain selfsigned \
         untrusted client-untrusted weak $NODES cluster-wildcard; do
    mv -f "$f.crt" "$f.key" "$DIR/"
done
mv -f bundle.crt "$DIR/"
rm -rf "$DIR/capath"
mv capath "$DIR/capath"
echo "$STAMP_VERSION" > "$DIR/.complete"
