"""A throwaway C2PA signing chain for development, demos and tests (never for production).

    write_dev_credentials(DIR) -> DIR/ca.pem (the trust anchor), DIR/chain.pem (leaf + CA), DIR/key.pem
    leaf: EC P-256, digitalSignature, emailProtection EKU, key identifiers: what C2PA validators accept

Production signing uses a certificate from a CA on the C2PA trust list (TRUSTREEL_C2PA_* settings).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path


@dataclass(frozen=True)
class DevCredentials:
    trust_anchor: Path
    cert_chain: Path
    private_key: Path


def write_dev_credentials(directory: Path, organisation: str = "trustreel development", valid_days: int = 30,
                          not_before: datetime | None = None) -> DevCredentials:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    start = not_before or datetime.now(timezone.utc) - timedelta(hours=1)
    end = start + timedelta(days=valid_days)

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation)])

    def usage(signing: bool) -> x509.KeyUsage:
        return x509.KeyUsage(digital_signature=signing, content_commitment=False, key_encipherment=False,
                             data_encipherment=False, key_agreement=False, key_cert_sign=not signing,
                             crl_sign=not signing, encipher_only=False, decipher_only=False)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name(f"{organisation} CA")).issuer_name(name(f"{organisation} CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(start - timedelta(days=1)).not_valid_after(end + timedelta(days=365))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(usage(signing=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(name(f"{organisation} signer")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage(signing=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    credentials = DevCredentials(directory / "ca.pem", directory / "chain.pem", directory / "key.pem")
    credentials.trust_anchor.write_bytes(ca.public_bytes(pem))
    credentials.cert_chain.write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    credentials.private_key.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    credentials.private_key.chmod(0o600)
    return credentials
