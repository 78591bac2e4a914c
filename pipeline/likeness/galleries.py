"""Face galleries ("banks"): identities with embeddings, stored durably, searched fast.

    trustreel gallery add NAME IMAGES... -> embedder.faces() -> one embedding per image -> tables
    worker: GallerySearch.nearest(embedding) -> (identity, distance)
      index rebuilt from the tables whenever gallery_versions moves (checked per decision, one row read)
      exact (faiss IndexFlatL2) up to `approximate_above` vectors, IVF (approximate) beyond

Galleries: "public_figures" (who must never be depicted), "cameos" (verified cameo owners, named by
cameo id, which a request may use only with consent) and "retired_cameos" (owners who revoked their
cameo: still protected, never a consenting match). Cameo entries are enrolled from the consent feed
(pipeline.state.enrollment); their embeddings carry the source "enrollment:<offset>:<media hash>",
and those an operator adds with `trustreel gallery add` are kept apart from them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timezone

import faiss
import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from pipeline.audit.db import GalleryEmbeddingRow, GalleryIdentityRow, GalleryVersionRow, bump_version, read_version

PUBLIC_FIGURES = "public_figures"
CAMEOS = "cameos"
RETIRED_CAMEOS = "retired_cameos"
ENROLLMENT_SOURCE = "enrollment:"


@dataclass(frozen=True)
class GalleryMatch:
    gallery: str
    name: str
    distance: float


class GalleryStore:
    def __init__(self, sessions: sessionmaker) -> None:
        self._sessions = sessions

    def add(self, gallery: str, name: str, backend: str, embeddings: list[tuple[np.ndarray, str]]) -> int:
        """Add embeddings (with their source) to an identity, creating it; returns how many were stored."""
        with self._sessions.begin() as session:
            identity = _identity(session, gallery, name, create=True)
            for vector, source in embeddings:
                _add_embedding(session, identity, backend, vector, source)
            _bump(session, backend)
        return len(embeddings)

    def replace_enrolled(self, session: Session, gallery: str, name: str,
                         embeddings: list[tuple[str, np.ndarray, str]]) -> None:
        """In the caller's transaction: `name`'s enrolled embeddings become these (backend, vector, source).

        Enrolled embeddings (source starting "enrollment:") of `name` are dropped from both cameo
        galleries, then these are added to `gallery`. Embeddings an operator added stay where they are.
        Every backend whose vectors changed is bumped, so searches reload.
        """
        touched = {backend for backend, _, _ in embeddings}
        for identity in session.scalars(select(GalleryIdentityRow).where(
                GalleryIdentityRow.name == name, GalleryIdentityRow.gallery.in_((CAMEOS, RETIRED_CAMEOS)))):
            for row in session.scalars(select(GalleryEmbeddingRow).where(
                    GalleryEmbeddingRow.identity_id == identity.id,
                    GalleryEmbeddingRow.source.startswith(ENROLLMENT_SOURCE))):
                touched.add(row.backend)
                session.delete(row)
        if embeddings:
            identity = _identity(session, gallery, name, create=True)
            for backend, vector, source in embeddings:
                _add_embedding(session, identity, backend, vector, source)
        for backend in sorted(touched):
            _bump(session, backend)

    def move(self, session: Session, name: str, source: str, target: str) -> bool:
        """In the caller's transaction: every embedding of `name` in gallery `source` moves to `target`.

        False (and nothing changes) when `source` has no such identity; merges into an existing one.
        """
        identity = _identity(session, source, name, create=False)
        if identity is None:
            return False
        backends = set(session.scalars(select(GalleryEmbeddingRow.backend)
                                       .where(GalleryEmbeddingRow.identity_id == identity.id)))
        existing = _identity(session, target, name, create=False)
        if existing is None:
            identity.gallery = target
        else:
            session.execute(update(GalleryEmbeddingRow).where(GalleryEmbeddingRow.identity_id == identity.id)
                            .values(identity_id=existing.id))
            session.delete(identity)
        for backend in sorted(backends):
            _bump(session, backend)
        return True

    def remove(self, gallery: str, name: str) -> bool:
        with self._sessions.begin() as session:
            identity = _identity(session, gallery, name, create=False)
            if identity is None:
                return False
            backends = set(session.scalars(select(GalleryEmbeddingRow.backend)
                                           .where(GalleryEmbeddingRow.identity_id == identity.id)))
            session.execute(delete(GalleryEmbeddingRow).where(GalleryEmbeddingRow.identity_id == identity.id))
            session.delete(identity)
            for backend in backends:
                _bump(session, backend)
            return True

    def listing(self) -> list[tuple[str, str, str, int]]:
        """(gallery, name, backend, embeddings) rows for people to read."""
        with self._sessions() as session:
            rows = session.execute(
                select(GalleryIdentityRow.gallery, GalleryIdentityRow.name, GalleryEmbeddingRow.backend,
                       func.count(GalleryEmbeddingRow.id))
                .join(GalleryEmbeddingRow, GalleryEmbeddingRow.identity_id == GalleryIdentityRow.id, isouter=True)
                .group_by(GalleryIdentityRow.gallery, GalleryIdentityRow.name, GalleryEmbeddingRow.backend)
                .order_by(GalleryIdentityRow.gallery, GalleryIdentityRow.name)).all()
        return [(gallery, name, backend or "-", count) for gallery, name, backend, count in rows]

    def version(self, backend: str) -> int:
        return read_version(self._sessions, GalleryVersionRow, backend)

    def vectors(self, backend: str) -> tuple[list[tuple[str, str]], np.ndarray]:
        """Every (gallery, name) label and its vector for one backend."""
        with self._sessions() as session:
            rows = session.execute(
                select(GalleryIdentityRow.gallery, GalleryIdentityRow.name, GalleryEmbeddingRow.vector)
                .join(GalleryIdentityRow, GalleryEmbeddingRow.identity_id == GalleryIdentityRow.id)
                .where(GalleryEmbeddingRow.backend == backend)).all()
        labels = [(gallery, name) for gallery, name, _ in rows]
        matrix = np.stack([np.frombuffer(vector, dtype=np.float32) for _, _, vector in rows]) if rows else None
        return labels, matrix


def _identity(session: Session, gallery: str, name: str, create: bool) -> GalleryIdentityRow | None:
    identity = session.scalar(select(GalleryIdentityRow).where(GalleryIdentityRow.gallery == gallery,
                                                               GalleryIdentityRow.name == name))
    if identity is None and create:
        identity = GalleryIdentityRow(gallery=gallery, name=name, created_at=datetime.now(timezone.utc))
        session.add(identity)
        session.flush()
    return identity


def _add_embedding(session: Session, identity: GalleryIdentityRow, backend: str, vector: np.ndarray,
                   source: str) -> None:
    session.add(GalleryEmbeddingRow(identity_id=identity.id, backend=backend, source=source[:500],
                                    vector=np.asarray(vector, dtype=np.float32).tobytes(),
                                    created_at=datetime.now(timezone.utc)))


def _bump(session, backend: str) -> None:
    bump_version(session, GalleryVersionRow, backend)


class VectorIndex:
    """Nearest-neighbour search over labelled vectors: exact when small, inverted lists (IVF) when large.

    IVF clusters the vectors (k-means on a sample) and searches only the `probes` clusters nearest
    to the query, so a query touches a small fraction of a large gallery; HNSW was tried first and
    took minutes to build at 100k x 512 on two cores.
    """

    def __init__(self, labels: list, vectors: np.ndarray, approximate_above: int = 50_000,
                 probes: int = 16, seed: int = 0) -> None:
        self.labels = labels
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        dimension = vectors.shape[1]
        if len(labels) > approximate_above:
            lists = int(4 * np.sqrt(len(labels)))
            self._quantizer = faiss.IndexFlatL2(dimension)
            self.index = faiss.IndexIVFFlat(self._quantizer, dimension, lists)
            sample_size = min(len(labels), max(65_536, 40 * lists))  # faiss wants ~39 points per list
            sample = np.random.default_rng(seed).choice(len(labels), sample_size, replace=False)
            self.index.train(vectors[np.sort(sample)])
            self.index.nprobe = probes
            self.exact = False
        else:
            self.index = faiss.IndexFlatL2(dimension)
            self.exact = True
        self.index.add(vectors)

    def nearest(self, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(Euclidean distances, label indexes), each queries x k."""
        squared, indexes = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return np.sqrt(np.maximum(squared, 0)), indexes


class GallerySearch:
    """One backend's galleries as per-gallery indexes, reloaded by refresh() when the tables change."""

    def __init__(self, store: GalleryStore, backend: str, approximate_above: int) -> None:
        self._store = store
        self._backend = backend
        self._approximate_above = approximate_above
        self._lock = threading.Lock()
        self._version = -1
        self._indexes: dict[str, VectorIndex] = {}
        self._vectors: dict[str, dict[str, np.ndarray]] = {}

    def refresh(self) -> None:
        """Reload the indexes if the gallery tables changed; callers do this once per media item."""
        version = self._store.version(self._backend)
        with self._lock:
            if version == self._version:
                return
            labels, matrix = self._store.vectors(self._backend)
            by_gallery: dict[str, list[int]] = {}
            for position, (gallery, _) in enumerate(labels):
                by_gallery.setdefault(gallery, []).append(position)
            self._indexes = {
                gallery: VectorIndex([labels[p][1] for p in positions], matrix[positions], self._approximate_above)
                for gallery, positions in by_gallery.items()
            }
            self._vectors = {}
            for gallery, positions in by_gallery.items():
                grouped: dict[str, list[np.ndarray]] = {}
                for p in positions:
                    grouped.setdefault(labels[p][1], []).append(matrix[p])
                self._vectors[gallery] = {name: np.stack(vectors) for name, vectors in grouped.items()}
            self._version = version

    def nearest(self, gallery: str, embedding: np.ndarray) -> GalleryMatch | None:
        index = self._indexes.get(gallery)
        if index is None:
            return None
        distances, positions = index.nearest(embedding[None, :], 1)
        if positions[0, 0] < 0:
            return None
        return GalleryMatch(gallery, index.labels[positions[0, 0]], float(distances[0, 0]))

    def nearest_among(self, gallery: str, names: list[str], embedding: np.ndarray) -> GalleryMatch | None:
        """Best match restricted to some identities (a request's cameos): exact, they are few."""
        best = None
        for name in names:
            distances = self.reference_distances(gallery, name, embedding)
            if distances is None:
                continue
            distance = float(np.min(distances))
            if best is None or distance < best.distance:
                best = GalleryMatch(gallery, name, distance)
        return best

    def reference_distances(self, gallery: str, name: str, embedding: np.ndarray) -> np.ndarray | None:
        """Distance to each of an identity's embeddings (its references), or None if it has none here."""
        vectors = self._vectors.get(gallery, {}).get(name)
        if vectors is None:
            return None
        return np.linalg.norm(vectors - embedding[None, :], axis=1)
