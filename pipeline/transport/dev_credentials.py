"""Throwaway TLS and SCRAM material for a secure development broker (local or compose).

    directory/
      ca.pem                 the CA clients trust (TRUSTREEL_KAFKA_CA_FILE)
      ca-key.pem             its key (kept so a certificate can be re-issued for another host name)
      broker.pem             the broker's private key + certificate chain (Kafka's PEM keystore)
      admin.pem              the admin's key + certificate (CN=trustreel-admin, a super user on mutual TLS)
      credentials/<principal>.password   one random SCRAM password per principal (mode 0600)

Production uses the organisation's CA and secret store; nothing here is meant to outlive a test or demo.
Files that exist are kept, so restarting a broker keeps its principals' passwords.
"""

from __future__ import annotations

import datetime
import os
import secrets
from pathlib import Path

from pipeline.transport.acl_plan import ADMIN_CERTIFICATE_NAME, BROKER_CERTIFICATE_NAME

BROKER_HOSTS = ("localhost", "127.0.0.1", "kafka")
"""Names the broker certificate is valid for: the local broker and the compose service."""


def write_broker_tls(directory: Path, hosts: tuple[str, ...] = BROKER_HOSTS, valid_days: int = 365) -> Path:
    """Make the CA and the broker certificate once; returns the CA file clients trust."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    ca_file, broker_file, admin_file = directory / "ca.pem", directory / "broker.pem", directory / "admin.pem"
    if ca_file.exists() and broker_file.exists() and admin_file.exists():
        return ca_file
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "trustreel development Kafka CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=valid_days))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    pem = serialization.Encoding.PEM
    pkcs8 = serialization.PrivateFormat.PKCS8  # Kafka's PEM keystore reads PKCS#8 keys only

    def issue(path: Path, common_name: str, alternative_names: list[x509.GeneralName]) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
                   .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=valid_days))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                         ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
        if alternative_names:
            builder = builder.add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
        leaf = builder.sign(ca_key, hashes.SHA256())
        _write_private(path, key.private_bytes(pem, pkcs8, serialization.NoEncryption())
                       + leaf.public_bytes(pem) + ca.public_bytes(pem))

    issue(broker_file, BROKER_CERTIFICATE_NAME, names)
    issue(admin_file, ADMIN_CERTIFICATE_NAME, [])
    _write_private(directory / "ca-key.pem", ca_key.private_bytes(pem, pkcs8, serialization.NoEncryption()))
    ca_file.write_bytes(ca.public_bytes(pem))
    return ca_file


def password_file(directory: Path, principal: str) -> Path:
    """The principal's password file, made with a fresh random password the first time."""
    path = directory / "credentials" / f"{principal}.password"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_private(path, secrets.token_urlsafe(24).encode())
    return path


def _write_private(path: Path, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
