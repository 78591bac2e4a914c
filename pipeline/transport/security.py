"""How every Kafka client of the project connects: address, TLS and SASL credentials in one place.

    Settings (TRUSTREEL_KAFKA_*) -> KafkaConnection.from_settings
        .client_options()     kwargs for kafka-python clients (producer, CLI, admin, registry readers)
                              and aiokafka clients (transactional senders, bench): the same names
        .faust_credentials()  broker_credentials for the faust stage workers

The password is read from its file when a connection is described (so a rotated file takes effect on the
next client), kept out of repr, and never put into an error message, a log line or the audit database:
errors name the setting and the principal, not the secret.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.settings import Settings


class KafkaCredentialsError(ValueError):
    """The configured credentials cannot be used (unreadable file, missing key); says which setting."""


@dataclass(frozen=True)
class KafkaConnection:
    bootstrap: str
    protocol: str = "PLAINTEXT"
    mechanism: str = "SCRAM-SHA-512"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> "KafkaConnection":
        password = settings.kafka_password.get_secret_value() if settings.kafka_password is not None else None
        if settings.kafka_password_file is not None and settings.kafka_security_protocol.startswith("SASL"):
            try:
                password = settings.kafka_password_file.read_text().strip()
            except OSError as exc:
                raise KafkaCredentialsError(
                    f"TRUSTREEL_KAFKA_PASSWORD_FILE cannot be read for principal {settings.kafka_username}: "
                    f"{exc.strerror}") from None
        for name in ("kafka_ca_file", "kafka_cert_file", "kafka_key_file"):
            path = getattr(settings, name)
            if path is not None and not Path(path).is_file():
                raise KafkaCredentialsError(f"TRUSTREEL_{name.upper()} names no file: {path}")
        return cls(bootstrap=settings.bootstrap, protocol=settings.kafka_security_protocol,
                   mechanism=settings.kafka_sasl_mechanism, username=settings.kafka_username, password=password,
                   ca_file=settings.kafka_ca_file, cert_file=settings.kafka_cert_file,
                   key_file=settings.kafka_key_file)

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL")

    @property
    def principal(self) -> str:
        """Who the broker sees: the SASL user, the client certificate's subject, or the anonymous principal."""
        if self.uses_sasl and self.username:
            return f"User:{self.username}"
        if self.uses_tls and self.cert_file is not None:
            return f"User:CN={self._certificate_name()}"
        return "User:ANONYMOUS"

    def _certificate_name(self) -> str:
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        certificate = x509.load_pem_x509_certificate(Path(self.cert_file).read_bytes())
        return str(certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)

    @property
    def servers(self) -> list[str]:
        return [server.strip() for server in self.bootstrap.split(",") if server.strip()]

    def ssl_context(self) -> ssl.SSLContext | None:
        """A verifying TLS context (the broker's name is checked against its certificate), or None."""
        if not self.uses_tls:
            return None
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.cert_file is not None:  # the key may sit in the certificate file (a PEM keystore)
            context.load_cert_chain(str(self.cert_file), str(self.key_file) if self.key_file else None)
        return context

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for a kafka-python or an aiokafka client (both take the same names)."""
        options: dict[str, Any] = {"bootstrap_servers": self.bootstrap, "security_protocol": self.protocol}
        if self.uses_tls:
            options["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            options.update(sasl_mechanism=self.mechanism, sasl_plain_username=self.username,
                           sasl_plain_password=self.password)
        return options

    def faust_credentials(self) -> Any:
        """faust's broker_credentials (None on PLAINTEXT): faust hands them to its aiokafka clients."""
        import faust

        if self.uses_sasl:
            return faust.SASLCredentials(username=self.username, password=self.password,
                                         ssl_context=self.ssl_context(), mechanism=self.mechanism)
        if self.uses_tls:
            return faust.SSLCredentials(self.ssl_context())
        return None

    def faust_broker_urls(self) -> list[str]:
        return [f"kafka://{server}" for server in self.servers]
