"""Claim-check asset store: media never travels on Kafka, only a reference and its hash.

    put(bytes) -> MediaReference(uri="asset://sha256/<hex>", sha256, media_type)
    get(ref)   -> bytes, after checking they still hash to ref.sha256 (AssetIntegrityError if not)

Content addressing makes writes idempotent: the same bytes always land at the same place.
LocalAssetStore keeps files under a directory; other backends implement the same protocol.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol

from schemas.models import MediaReference

URI_PREFIX = "asset://sha256/"


class AssetIntegrityError(Exception):
    """The stored bytes are missing or no longer match the reference's hash."""


class AssetStore(Protocol):
    def put(self, data: bytes, media_type: str) -> MediaReference: ...

    def get(self, reference: MediaReference) -> bytes: ...


class LocalAssetStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest

    def put(self, data: bytes, media_type: str) -> MediaReference:
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(digest)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as partial:
                partial.write(data)
            os.replace(partial.name, path)  # readers never see half a file
        return MediaReference(uri=f"{URI_PREFIX}{digest}", sha256=digest, media_type=media_type)

    def get(self, reference: MediaReference) -> bytes:
        if not reference.uri.startswith(URI_PREFIX) or reference.uri[len(URI_PREFIX):] != reference.sha256:
            raise AssetIntegrityError(f"{reference.uri} is not a reference into this asset store")
        try:
            data = self._path(reference.sha256).read_bytes()
        except FileNotFoundError:
            raise AssetIntegrityError(f"asset {reference.sha256} is missing from the store") from None
        if hashlib.sha256(data).hexdigest() != reference.sha256:
            raise AssetIntegrityError(f"asset {reference.sha256} does not match its hash")
        return data
