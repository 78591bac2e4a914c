"""Benchmark: hash-bank matching speed at 10k / 100k / 1M hashes, and how robust PDQ matching is.

    python bench/hash_banks.py                  # 10k, 100k, 1M; robustness on the bundled images
    python bench/hash_banks.py --sizes 10000    # a quick run

Speed: trustreel's HashIndex (FAISS: IndexBinaryFlat up to 200k hashes, IndexBinaryMultiHash above) vs
the flat scan at the same size (the baseline, same run), one thread. Per image hash = one query; per
image = it and its 8 variants (dihedral + pixel mirror); per 5-second video = 20 frame hashes (every 6th frame at 24 fps).
Bank hashes are random (real lists are not uniform, which only makes multi-index buckets fuller).
Also the reload a worker does when a bank changes: 100k entries read from SQLite into an index.

Robustness: every image bundled with scikit-image (no download), each altered (JPEG quality 40, half
size, 5% crop, mirror, and all four together); share of altered copies whose query (with variants)
is within 31 bits of the original, and every pair of different images matched the same way (false
matches).
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.hashing.banks import BankSearch, BankStore, HashIndex, NewEntry  # noqa: E402
from pipeline.hashing.signals import PdqSignal, hamming  # noqa: E402

PDQ = PdqSignal()
THRESHOLD = 31


def near_copies(bank: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Queries 0..30 bits away from bank entries (what an edited re-upload looks like)."""
    queries = bank[rng.choice(len(bank), count, replace=False)].copy()
    for row in queries:
        for bit in rng.choice(256, int(rng.integers(0, 31)), replace=False):
            row[bit // 8] ^= 1 << (bit % 8)
    return queries


def per_call(index: HashIndex, batches: list[np.ndarray]) -> float:
    start = time.perf_counter()
    for batch in batches:
        index.within(batch, THRESHOLD)
    return (time.perf_counter() - start) / len(batches) * 1000


def speed(size: int, rng: np.random.Generator) -> None:
    bank = rng.integers(0, 256, (size, 32), dtype=np.uint8)
    near = near_copies(bank, 200, rng)
    unrelated = rng.integers(0, 256, (200, 32), dtype=np.uint8)
    singles = [q[None] for q in np.concatenate([near, unrelated])]
    images = [np.concatenate([near[i:i + 1], unrelated[i:i + 8]]) for i in range(0, 190, 4)]
    videos = [np.concatenate([near[i:i + 5], unrelated[i:i + 15]]) for i in range(0, 180, 20)]
    start = time.perf_counter()
    chosen = HashIndex(bank)
    build = time.perf_counter() - start
    flat = chosen if chosen.kind == "flat" else HashIndex(bank, exact_up_to=size)
    assert chosen.within(near, THRESHOLD) == flat.within(near, THRESHOLD), "both indexes are exact"
    print(f"| {size:,} | {chosen.kind} | {build:.2f} s | {per_call(chosen, singles):.3f} ms "
          f"| {per_call(chosen, images):.2f} ms | {per_call(chosen, videos):.2f} ms "
          f"| {per_call(flat, singles):.3f} ms | {per_call(flat, singles) / per_call(chosen, singles):.1f}x |")


def reload_time(size: int, rng: np.random.Generator) -> None:
    from pipeline.audit.db import make_engine, make_sessionmaker, upgrade

    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/bench.db"
        upgrade(url)
        store = BankStore(make_sessionmaker(make_engine(url)))
        store.create("bench", "block")
        entries = [NewEntry(row.tobytes().hex(), str(i)) for i, row in
                   enumerate(rng.integers(0, 256, (size, 32), dtype=np.uint8))]
        start = time.perf_counter()
        store.add("bench", entries, "bench", "bench")
        added = time.perf_counter() - start
        search = BankSearch(store)
        start = time.perf_counter()
        search.refresh()
        print(f"\n{size:,} hashes: `bank import` stored them in {added:.1f} s; a worker reloads them after a bank "
              f"change in {time.perf_counter() - start:.2f} s (SQLite, one thread)")


def bundled_images() -> dict[str, np.ndarray]:
    import skimage.data

    folder = Path(skimage.data.__file__).parent
    twins = {"motorcycle_right", "chessboard_RGB"}  # the same scene as another file, on purpose
    found = {}
    for path in sorted([*folder.glob("*.png"), *folder.glob("*.jpg")]):
        if path.stem in twins:
            continue
        rgb = np.asarray(Image.open(path).convert("RGB"))
        if min(rgb.shape[:2]) >= 64:
            found[path.stem] = rgb
    return found


def altered(rgb: np.ndarray) -> dict[str, np.ndarray]:
    def jpeg(image: np.ndarray, quality: int = 40) -> np.ndarray:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
        return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))

    def half(image: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(image).resize((image.shape[1] // 2, image.shape[0] // 2)))

    def crop(image: np.ndarray) -> np.ndarray:  # 5% of the width and height, split over both sides
        h, w = image.shape[:2]
        dy, dx = int(h * 0.025), int(w * 0.025)
        return np.ascontiguousarray(image[dy:h - dy, dx:w - dx])

    def mirror(image: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(image[:, ::-1])

    return {"jpeg q40": jpeg(rgb), "half size": half(rgb), "5% crop": crop(rgb), "mirror": mirror(rgb),
            "all four": jpeg(half(crop(mirror(rgb))))}


def robustness() -> None:
    images = bundled_images()
    originals = {name: PDQ.hash(rgb) for name, rgb in images.items()}
    usable = {name for name, h in originals.items() if h.quality >= 50}
    print(f"\n{len(images)} bundled images, {len(usable)} with PDQ quality >= 50 (the rest are never matched: "
          f"{', '.join(sorted(set(images) - usable))})\n")
    print("| alteration | matched (<= 31 bits, query with variants) | median distance |")
    print("|---|---|---|")
    rows: dict[str, list[int]] = {}
    for name in sorted(usable):
        for label, copy in altered(images[name]).items():
            best = min(hamming(originals[name].value, v.value) for v in PDQ.variants(copy))
            rows.setdefault(label, []).append(best)
    for label, distances in rows.items():
        hits = sum(d <= THRESHOLD for d in distances)
        print(f"| {label} | {hits}/{len(distances)} ({hits / len(distances):.0%}) | {int(np.median(distances))} |")
    names = sorted(usable)
    false, closest = 0, 256
    for i, a in enumerate(names):
        variants = PDQ.variants(images[a])
        for b in names[i + 1:]:
            distance = min(hamming(v.value, originals[b].value) for v in variants)
            closest = min(closest, distance)
            false += distance <= THRESHOLD
    pairs = len(names) * (len(names) - 1) // 2
    print(f"\nfalse matches between different images: {false} of {pairs} pairs (closest pair: {closest} bits)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--reload", type=int, default=100_000)
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(0)
    print("| bank size | index | build | per image hash | per image (9 hashes: it and its variants) | per 5 s video (20 hashes) "
          "| flat scan per hash (baseline) | speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        speed(size, rng)
    if args.reload:
        reload_time(args.reload, rng)
    robustness()


if __name__ == "__main__":
    main()
