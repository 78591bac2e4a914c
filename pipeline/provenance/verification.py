"""`trustreel verify FILE`: what a file says about itself, checked, and what the audit database says.

    file --C2PA reader (configured trust anchors)--> state, signer, created-by model, moderation summary
         --invisible watermark (all frames, majority vote)--> watermark id   (survives re-encoding)
         --provenance_marks by watermark id or file hash--> request(s) -> their path in the audit database

Works on files that left the platform: a copy stripped of its manifest or re-encoded still leads
back to its request through the watermark.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import sessionmaker

from pipeline.audit.queries import request_path
from pipeline.provenance.content_credentials import (DIGITAL_SOURCE_TYPE, MODERATION_LABEL, CredentialReport,
                                          read_credentials)
from pipeline.media.frames import UnreadableMedia, frames_of
from pipeline.provenance.ledger import SqlProvenanceLedger
from pipeline.provenance.watermarks import InvisibleMarkStyle, PayloadReading, read_payload


@dataclass
class VerificationReport:
    sha256: str
    credentials: CredentialReport
    watermark: PayloadReading | None
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return self.credentials.state in ("Trusted", "Valid") and self.credentials.error is None

    def summary(self) -> dict[str, Any]:
        credentials = self.credentials
        actions = (credentials.assertion("c2pa.actions") or {}).get("actions", [])
        created = next((a for a in actions if a.get("action") == "c2pa.created"), {})
        manifest = credentials.manifest or {}
        return {
            "file_sha256": self.sha256,
            "manifest": {
                "state": credentials.state, "trusted": credentials.trusted, "codes": credentials.codes,
                "error": credentials.error, "signer": credentials.signer,
                "claim_generator": manifest.get("claim_generator_info"),
                "signed_at": (credentials.signer or {}).get("time"),
                "ai_generated": created.get("digitalSourceType") == DIGITAL_SOURCE_TYPE,
                "model": created.get("softwareAgent"),
                "moderation": credentials.assertion(MODERATION_LABEL),
            },
            "watermark": None if self.watermark is None else {
                "payload": self.watermark.payload.hex() if self.watermark.payload else None,
                "agreement": round(self.watermark.agreement, 3), "frames_read": self.watermark.frames},
            "audit_records": self.records,
        }

    def render(self) -> str:
        data = self.summary()
        manifest, watermark = data["manifest"], data["watermark"] or {}
        lines = [f"file sha256 {self.sha256}",
                 f"C2PA manifest: {manifest['state']}" + (f" ({', '.join(manifest['codes'])})" if manifest['codes']
                                                          else "") + (f": {manifest['error']}" if manifest['error']
                                                                      else "")]
        if self.credentials.manifest:
            signer = manifest["signer"] or {}
            lines += [f"  signed by {signer.get('common_name')} (issuer {signer.get('issuer')}, {signer.get('alg')})"
                      f"{' at ' + str(manifest['signed_at']) if manifest['signed_at'] else ''}",
                      f"  claim generator {manifest['claim_generator']}",
                      f"  AI-generated: {'yes' if manifest['ai_generated'] else 'not declared'}; model "
                      f"{(manifest['model'] or {}).get('name')}"]
            for decision in (manifest["moderation"] or {}).get("decisions", []):
                lines.append(f"  moderation: {decision['stage']:14s} {decision['outcome']:9s} "
                             f"{decision['policy_id']}@{decision['policy_version'][:12]}")
        payload = watermark.get("payload")
        lines.append(f"invisible watermark: {payload or 'not found'} (agreement {watermark.get('agreement', 0)}, "
                     f"{watermark.get('frames_read', 0)} frames)")
        if not self.records:
            lines.append("audit database: no record for this watermark or file")
        for record in self.records:
            lines.append(f"audit database: request {record['request_id']} signed {record['signed_at']} "
                         f"(watermark {record['watermark_id']}, signed file "
                         f"{'this one' if record['signed_sha256'] == self.sha256 else 'differs: a copy'})")
            if record.get("path"):
                lines.extend("  " + line for line in record["path"].splitlines())
        return "\n".join(lines)


def verify_file(data: bytes, trust_anchors: bytes | None, style: InvisibleMarkStyle,
                sessions: sessionmaker | None, max_frames: int = 240) -> VerificationReport:
    sha256 = hashlib.sha256(data).hexdigest()
    credentials = read_credentials(data, trust_anchors)
    try:
        watermark = read_payload([rgb for _, rgb in frames_of(data, "video/mp4", 1, max_frames)], style)
    except UnreadableMedia:
        watermark = None
    records = []
    if sessions is not None:
        payload = watermark.payload.hex() if watermark and watermark.payload else None
        for mark in SqlProvenanceLedger(sessions).find(watermark_id=payload, signed_sha256=sha256):
            path = request_path(sessions, mark.request_id)
            records.append({**vars(mark), "signed_at": mark.signed_at.isoformat(),
                            "path": path.render() if path else None,
                            "outcome": path.final_outcome if path else None})
    return VerificationReport(sha256=sha256, credentials=credentials, watermark=watermark, records=records)
