"""Benchmark: gallery search and prompt name matching, each against a brute-force baseline in the same run.

    python bench/likeness.py                 # 10k, 100k, 1M identities x 512-d; 100k-name lexicon
    python bench/likeness.py --sizes 10000   # a quick run

Gallery search: trustreel's VectorIndex (FAISS: exact up to the configured size, IVF above it) vs a
numpy brute force (one matrix product per query batch). Name matching: the Aho-Corasick NameMatcher
vs a loop over the normalised names. Prints milliseconds per query and the speed-up ratio; for HNSW
also the recall of the true nearest neighbour (IVF is approximate).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.likeness.galleries import VectorIndex  # noqa: E402
from pipeline.likeness.names import LexiconEntry, NameMatcher, tokens  # noqa: E402


def timed(function, repeat: int) -> tuple[float, object]:
    result = None
    start = time.perf_counter()
    for _ in range(repeat):
        result = function()
    return (time.perf_counter() - start) / repeat, result


def gallery(size: int, dimension: int, queries: int, approximate_above: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((size, dimension), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    picked = rng.choice(size, queries, replace=False)
    # a second photo of an enrolled person: about 0.3 away from the stored vector (unit vectors are ~1.4 apart)
    noise = rng.standard_normal((queries, dimension), dtype=np.float32)
    probes = vectors[picked] + 0.3 * noise / np.linalg.norm(noise, axis=1, keepdims=True)
    build_start = time.perf_counter()
    index = VectorIndex(list(range(size)), vectors, approximate_above=approximate_above)
    build_seconds = time.perf_counter() - build_start

    def brute() -> np.ndarray:
        scores = probes @ vectors.T  # unit vectors: the nearest has the largest dot product
        return scores.argmax(axis=1)

    brute_seconds, truth = timed(brute, 1)
    index_seconds, (_, found) = timed(lambda: index.nearest(probes), 3)
    recall = float((found[:, 0] == truth).mean())
    kind = "exact (IndexFlatL2)" if index.exact else "IVF (approximate)"
    print(f"gallery {size:>9,} x {dimension}: {kind:<20} build {build_seconds:7.2f}s | "
          f"per query: faiss {index_seconds / queries * 1e3:8.3f} ms, numpy brute force "
          f"{brute_seconds / queries * 1e3:8.3f} ms | speed-up x{brute_seconds / index_seconds:6.1f} | "
          f"recall@1 {recall:.3f}")


def names(lexicon_size: int, prompts: int, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    alphabet = np.array(list("abcdefghijkmnopqrstuvwxyz"))

    def word(length: int) -> str:
        return "".join(rng.choice(alphabet, length))

    entries = [LexiconEntry(f"{word(6)} {word(8)}", ()) for _ in range(lexicon_size)]
    entries = [LexiconEntry(entry.name, (entry.name,)) for entry in entries]
    texts = [f"a video of {entries[int(rng.integers(lexicon_size))].name.upper()} riding a bike "
             f"{word(5)} {word(7)}" if n % 2 else f"a quiet lake {word(6)} at dawn {word(4)}" for n in range(prompts)]
    build_start = time.perf_counter()
    matcher = NameMatcher(entries)
    build_seconds = time.perf_counter() - build_start
    normalised = [(" " + " ".join(tokens(entry.name)) + " ", entry.name) for entry in entries]

    def loop() -> list[list[str]]:
        hits = []
        for text in texts:
            padded = " " + " ".join(tokens(text)) + " "
            hits.append([name for pattern, name in normalised if pattern in padded])
        return hits

    loop_seconds, loop_hits = timed(loop, 1)
    automaton_seconds, automaton_hits = timed(lambda: [[m.name for m in matcher.find(t)] for t in texts], 3)
    agree = all(set(a) == set(b) for a, b in zip(loop_hits, automaton_hits))
    print(f"names   {lexicon_size:>9,} entries: automaton build {build_seconds:5.2f}s | per prompt: "
          f"automaton {automaton_seconds / prompts * 1e3:8.3f} ms, loop over names {loop_seconds / prompts * 1e3:8.3f} "
          f"ms | speed-up x{loop_seconds / automaton_seconds:7.1f} | same matches: {agree}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dimension", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--approximate-above", type=int, default=50_000)
    parser.add_argument("--lexicon", type=int, default=100_000)
    parser.add_argument("--prompts", type=int, default=200)
    args = parser.parse_args()
    for size in args.sizes:
        gallery(size, args.dimension, args.queries, args.approximate_above)
    names(args.lexicon, args.prompts)


if __name__ == "__main__":
    main()
