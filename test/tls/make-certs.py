#!/usr/bin/python3
"""Make throw-away TLS material for paygw's transport-security check (test/checks/50-tls.sh).

    /usr/bin/python3 test/tls/make-certs.py DIR

Writes into DIR (created if missing), all PEM, keys unencrypted, mode 0644:

    ca.crt ca.key                  test CA ("paygw test CA"), valid now
    server.crt server.key          signed by the test CA, valid now,
                                   SAN IP:127.0.0.1, DNS:localhost
    expired.crt expired.key        signed by the test CA, SAN as above,
                                   notAfter two days in the past
    wrongname.crt wrongname.key    signed by the test CA, valid now,
                                   SAN DNS:gateway.invalid only
    wrong-ca.crt wrong-ca.key      an unrelated second CA ("paygw wrong CA")

Test-only material made at test time in the work dir; never commit it.
Needs the `cryptography` package (use /usr/bin/python3 on Debian).
"""

import datetime
import ipaddress
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DAY = datetime.timedelta(days=1)


def new_key():
    return ec.generate_private_key(ec.SECP256R1())


def name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "paygw tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(common_name, now):
    key = new_key()
    subject = name(common_name)
    cert = (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - DAY).not_valid_after(now + 30 * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def make_server(ca_key, ca_cert, common_name, sans, not_before, not_after):
    key = new_key()
    cert = (x509.CertificateBuilder()
            .subject_name(name(common_name)).issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=False, crl_sign=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def write(directory, stem, key, cert):
    for suffix, data in (
            (".key", key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())),
            (".crt", cert.public_bytes(serialization.Encoding.PEM))):
        path = os.path.join(directory, stem + suffix)
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)


def main(argv):
    if len(argv) != 2:
        print(f"usage: {argv[0]} DIR", file=sys.stderr)
        return 2
    directory = argv[1]
    os.makedirs(directory, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    local = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]

    ca_key, ca_cert = make_ca("paygw test CA", now)
    write(directory, "ca", ca_key, ca_cert)
    write(directory, "server",
          *make_server(ca_key, ca_cert, "127.0.0.1", local, now - DAY, now + 7 * DAY))
    write(directory, "expired",
          *make_server(ca_key, ca_cert, "127.0.0.1", local, now - 10 * DAY, now - 2 * DAY))
    write(directory, "wrongname",
          *make_server(ca_key, ca_cert, "gateway.invalid", [x509.DNSName("gateway.invalid")],
                       now - DAY, now + 7 * DAY))
    wrong_key, wrong_cert = make_ca("paygw wrong CA", now)
    write(directory, "wrong-ca", wrong_key, wrong_cert)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
