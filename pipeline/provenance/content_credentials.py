"""C2PA content credentials (c2pa-python): sign an MP4's manifest, and read one back.

    SigningConfig (cert chain + key files, or a callback for a KMS/HSM; ES256; optional TSA)
      -> load_signer()    refuses a missing, unreadable, not-yet-valid or expired certificate
      -> sign_mp4(video, manifest) -> signed MP4 (the manifest is embedded, the media hash bound)
    read_credentials(mp4, trust anchors) -> CredentialReport(state, codes, manifest, signer)

States (from the C2PA SDK): Trusted (valid, signer chains to a configured anchor), Valid (valid,
signer not trusted here), Invalid (e.g. media changed after signing), or "absent" (no manifest).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from pipeline.settings import import_named

DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
MODERATION_LABEL = "org.trustreel.moderation"
ATTRIBUTION_LABEL = "org.trustreel.attribution"
"""Works used with their rights holders' consent (opt-in), and the holders, named in the signed manifest."""
SOFT_BINDING_LABEL = "c2pa.soft-binding"
SOFT_BINDING_ALG = "org.trustreel.invisible-watermark.dwtDctSvd"


class SigningUnavailable(Exception):
    """No usable signing credential: the stage must not sign (and so nothing may be published)."""


@dataclass(frozen=True)
class SigningConfig:
    cert_chain: Path | None = None  # PEM, leaf first
    private_key: Path | None = None  # PEM
    algorithm: str = "es256"
    tsa_url: str | None = None
    signer_callback: str | None = None  # "module:function" taking bytes, returning a signature (KMS/HSM)


def load_signer(config: SigningConfig, now: datetime | None = None):  # -> c2pa.Signer
    import c2pa

    if config.cert_chain is None:
        raise SigningUnavailable("no signing certificate chain is configured (TRUSTREEL_C2PA_CERT_CHAIN)")
    chain = _read(config.cert_chain, "certificate chain")
    _check_validity(chain, now or datetime.now(timezone.utc), config.cert_chain)
    algorithm = config.algorithm.lower()
    if config.signer_callback:
        sign = _import_callback(config.signer_callback)
        return c2pa.Signer.from_callback(sign, getattr(c2pa.C2paSigningAlg, algorithm.upper()), chain.decode(),
                                         config.tsa_url)
    if config.private_key is None:
        raise SigningUnavailable("no private key is configured (TRUSTREEL_C2PA_PRIVATE_KEY) and no signer callback")
    key = _read(config.private_key, "private key")
    tsa = config.tsa_url.encode() if config.tsa_url else None
    try:
        return c2pa.Signer.from_info(c2pa.C2paSignerInfo(algorithm.encode(), chain, key, tsa))
    except Exception as exc:
        raise SigningUnavailable(f"the C2PA SDK refused the signing credential: {exc}") from exc


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SigningUnavailable(f"cannot read the {what} {path}: {exc.strerror}") from exc


def _check_validity(chain_pem: bytes, now: datetime, path: Path) -> None:
    from cryptography import x509

    try:
        leaf = x509.load_pem_x509_certificates(chain_pem)[0]
    except ValueError as exc:
        raise SigningUnavailable(f"{path} holds no PEM certificate: {exc}") from exc
    if now < leaf.not_valid_before_utc:
        raise SigningUnavailable(f"the signing certificate is not valid before {leaf.not_valid_before_utc:%Y-%m-%d}")
    if now > leaf.not_valid_after_utc:
        raise SigningUnavailable(f"the signing certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")


def _import_callback(target: str) -> Callable[[bytes], bytes]:
    try:
        return import_named(target)
    except ValueError as exc:
        raise SigningUnavailable(f"signer callback {exc}") from exc


def build_manifest(title: str, generator: dict[str, Any], moderation: dict[str, Any],
                   watermark_payload_hex: str, claim_generator: tuple[str, str],
                   attributions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The manifest definition: created by a trained model, moderation summary, invisible-mark soft binding,
    and (when the video uses protected works with their holders' consent) who they belong to."""
    model_name = str(generator.get("model_id", "unknown model"))
    manifest = {
        "claim_generator_info": [{"name": claim_generator[0], "version": claim_generator[1]}],
        "title": title,
        "format": "video/mp4",
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": [{
                "action": "c2pa.created", "digitalSourceType": DIGITAL_SOURCE_TYPE,
                "softwareAgent": {"name": model_name,
                                  "version": str(generator.get("model_version") or generator.get("diffusers", ""))},
            }]}},
            {"label": MODERATION_LABEL, "data": moderation},
            {"label": SOFT_BINDING_LABEL, "data": {
                "alg": SOFT_BINDING_ALG, "blocks": [{"scope": {}, "value": watermark_payload_hex}]}},
        ],
    }
    if attributions:
        manifest["assertions"].append({"label": ATTRIBUTION_LABEL, "data": {"works": attributions}})
    return manifest


def sign_mp4(video: bytes, manifest: dict[str, Any], signer) -> bytes:
    import c2pa

    output = io.BytesIO()
    with c2pa.Builder(json.dumps(manifest)) as builder:
        builder.sign(signer, "video/mp4", io.BytesIO(video), output)
    return output.getvalue()


@dataclass
class CredentialReport:
    state: str  # Trusted | Valid | Invalid | absent
    codes: list[str] = field(default_factory=list)  # failure / informational status codes
    manifest: dict[str, Any] | None = None
    signer: dict[str, Any] | None = None
    error: str | None = None

    @property
    def trusted(self) -> bool:
        return self.state == "Trusted"

    def assertion(self, label: str) -> dict[str, Any] | None:
        for entry in (self.manifest or {}).get("assertions", []):
            if entry.get("label") == label or entry.get("label", "").startswith(label + ".v"):
                return entry.get("data")
        return None

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "trusted": self.trusted, "codes": self.codes, "signer": self.signer,
                "manifest": self.manifest, "error": self.error}


def read_credentials(data: bytes, trust_anchors_pem: bytes | None = None) -> CredentialReport:
    import c2pa

    settings = {"verify": {"verify_trust": bool(trust_anchors_pem)}}
    if trust_anchors_pem:
        settings["trust"] = {"trust_anchors": trust_anchors_pem.decode()}
    try:
        with c2pa.Reader("video/mp4", io.BytesIO(data), context=c2pa.Context(c2pa.Settings.from_dict(settings))) as reader:
            document = json.loads(reader.json())
    except Exception as exc:
        if "ManifestNotFound" in type(exc).__name__ or "ManifestNotFound" in str(exc):
            return CredentialReport(state="absent", error="the file carries no C2PA manifest")
        return CredentialReport(state="Invalid", error=f"{type(exc).__name__}: {exc}")
    manifest = document.get("manifests", {}).get(document.get("active_manifest", ""))
    codes = [status["code"] for status in document.get("validation_status", [])]
    return CredentialReport(state=document.get("validation_state", "Invalid"), codes=codes, manifest=manifest,
                            signer=(manifest or {}).get("signature_info"))
