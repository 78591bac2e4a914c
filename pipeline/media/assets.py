"""Claim-check asset store: media never travels on Kafka, only a reference and its hash.

    put(bytes) -> MediaReference(uri="asset://sha256/<hex>", sha256, media_type)
    get(ref)   -> bytes, after checking they still hash to ref.sha256 (AssetIntegrityError if not)

Content addressing makes writes idempotent: the same bytes always land at the same place.
LocalAssetStore keeps files under a directory; FsspecAssetStore keeps them anywhere fsspec
reaches (s3:// with s3fs for S3-compatible object storage, memory:// in tests). The reference
never names the location, so assets can move between stores.
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
        _check_uri(reference)
        try:
            data = self._path(reference.sha256).read_bytes()
        except FileNotFoundError:
            raise AssetIntegrityError(f"asset {reference.sha256} is missing from the store") from None
        return _verified(data, reference)


class FsspecAssetStore:
    """The same layout under any fsspec URL (object stores write whole objects, so no temp files)."""

    def __init__(self, url: str, **storage_options: object) -> None:
        import fsspec

        self.filesystem, root = fsspec.core.url_to_fs(url, **storage_options)
        self.root = root.rstrip("/")

    def _path(self, digest: str) -> str:
        return f"{self.root}/{digest[:2]}/{digest}"

    def put(self, data: bytes, media_type: str) -> MediaReference:
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(digest)
        if not self.filesystem.exists(path):
            self.filesystem.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            self.filesystem.pipe_file(path, data)
        return MediaReference(uri=f"{URI_PREFIX}{digest}", sha256=digest, media_type=media_type)

    def get(self, reference: MediaReference) -> bytes:
        _check_uri(reference)
        try:
            data = self.filesystem.cat_file(self._path(reference.sha256))
        except FileNotFoundError:
            raise AssetIntegrityError(f"asset {reference.sha256} is missing from the store") from None
        return _verified(data, reference)


def asset_store(asset_dir: Path, asset_url: str | None = None) -> AssetStore:
    """The store the settings name: asset_url (any fsspec URL) if set, else the local directory."""
    return FsspecAssetStore(asset_url) if asset_url else LocalAssetStore(asset_dir)


def _check_uri(reference: MediaReference) -> None:
    if not reference.uri.startswith(URI_PREFIX) or reference.uri[len(URI_PREFIX):] != reference.sha256:
        raise AssetIntegrityError(f"{reference.uri} is not a reference into this asset store")


def _verified(data: bytes, reference: MediaReference) -> bytes:
    if hashlib.sha256(data).hexdigest() != reference.sha256:
        raise AssetIntegrityError(f"asset {reference.sha256} does not match its hash")
    return data
