"""Recommendation query latency on an MSD-sized synthetic catalogue: which search to use.

    python benchmarks/recommend_latency.py                      # 240,000 songs, recommend.features' space
    python benchmarks/recommend_latency.py --songs 20000 --skip-sklearn
    python benchmarks/recommend_latency.py --features tags     # the 50-tag space alone
    python benchmarks/recommend_latency.py --embedding-components 0   # msd-cnn's block whole

Builds seeded tagger-like tag probabilities (tests/songs.py's synthetic_probabilities) and, for each
embedding block of the space (params.yaml's recommend.features unless --features), embeddings that follow
the tags (a fixed random projection of them, rectified, plus noise, as msd-cnn's ELU features are),
searched as the index searches them (recommend.embedding_components), then
times single `similar(id, k=10)` queries (median and p95 ms) for: exact numpy brute force, the
index's faiss HNSW graph (IndexHNSWFlat, M 16) at several ef_search, faiss's inverted file
(IndexIVFFlat, 2 sqrt(n) cells) at several n_probe for comparison, brute force on a catalogue cut to the
exact_max_songs default (where the index switches to IVF), and scikit-learn's NearestNeighbors
(brute, ball_tree, kd_tree). A batched brute-force row shows the amortised cost when many queries
come at once. Recall@k is measured against the exact neighbours. Goal: <= 0.15 ms a query at
recall@10 >= 0.99 (the default [tags, msd-cnn] space meets it with msd-cnn's block on 32 dimensions, not whole:
docs/performance.md).
The machine is shared, so run everything in one go and compare rows side by side.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # tests/songs.py: tagger-like probabilities
from songs import synthetic_probabilities  # noqa: E402

from musictag.inference.predictions import Predictions  # noqa: E402
from musictag.inference.recommendation import RecommendIndex, _one_thread  # noqa: E402
from musictag.params import defaults  # noqa: E402

RECOMMEND = defaults("recommend")  # params.yaml's: the index the pipeline builds
EMBEDDING_SIZES = {"embeddings": 304, "msd-cnn": 256, "msd-crnn": 32}  # k2c1's and the published taggers'


def tag_like_embeddings(probabilities: np.ndarray, size: int, seed: int) -> np.ndarray:
    """(n, size) float32 that follow the tags: a seeded random projection of them, rectified, plus noise."""
    rng = np.random.default_rng(seed)
    projected = probabilities @ rng.normal(size=(probabilities.shape[1], size)).astype(np.float32)
    return np.maximum(projected + rng.normal(scale=0.5, size=projected.shape).astype(np.float32), 0)


def timed(queries, search) -> tuple[np.ndarray, list]:
    """Per-query wall times in ms and the results of `search(row)` for each row of `queries`."""
    times, results = [], []
    for row in queries:
        started = time.perf_counter()
        results.append(search(row))
        times.append(time.perf_counter() - started)
    return np.array(times) * 1e3, results


def recall(results: list, exact: np.ndarray) -> float:
    return float(np.mean([len(set(map(int, got)) & set(want.tolist())) / len(want)
                          for got, want in zip(results, exact)]))


def report(name: str, times_ms: np.ndarray, recall_at_k: float | None, note: str = "") -> None:
    shown = "   -  " if recall_at_k is None else f"{recall_at_k:.4f}"
    print(f"  {name:34s} {np.median(times_ms):8.3f} {np.percentile(times_ms, 95):8.3f}   {shown}  {note}", flush=True)


def ivf_index(vectors: np.ndarray, queries: np.ndarray, exact: np.ndarray, k: int) -> None:
    """faiss's inverted file on the same unit vectors, raw (no id lookup), for comparison with HNSW."""
    import faiss

    cells = int(round(2 * np.sqrt(len(vectors))))
    ivf = faiss.index_factory(vectors.shape[1], f"IVF{cells},Flat", faiss.METRIC_INNER_PRODUCT)
    started = time.perf_counter()
    ivf.train(vectors)
    ivf.add(vectors)
    build_s = time.perf_counter() - started
    faiss.omp_set_num_threads(1)
    for n_probe in (16, 24, 32):
        ivf.nprobe = n_probe
        times, got = timed(queries, lambda r: [g for g in ivf.search(vectors[r:r + 1], k + 1)[1][0] if g != r][:k])
        report(f"faiss IVF {cells} cells, n_probe {n_probe}", times, recall(got, exact), f"build {build_s:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--songs", type=int, default=240_000)
    parser.add_argument("--tags", type=int, default=50)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--exact-songs", type=int, default=RECOMMEND["exact_max_songs"],
                        help="also time brute force on this many songs (the exact_max_songs default)")
    parser.add_argument("--skip-sklearn", action="store_true", help="leave out scikit-learn (slow to fit)")
    parser.add_argument("--features", nargs="+", default=RECOMMEND["features"],
                        help="the space's blocks (default: params.yaml's recommend.features)")
    parser.add_argument("--embedding-components", type=int, default=RECOMMEND["embedding_components"],
                        help="a published tagger's block on this many dimensions, 0 whole (default: params.yaml's)")
    args = parser.parse_args()
    n, k, features, components = args.songs, args.k, args.features, args.embedding_components

    probabilities = synthetic_probabilities(n, args.tags, seed=args.seed)
    ids = np.array([f"song{i:07d}" for i in range(n)])
    blocks = {name: tag_like_embeddings(probabilities, EMBEDDING_SIZES[name], args.seed + 2 + i)
              for i, name in enumerate(features) if name != "tags"}
    catalogue = Predictions(ids, np.full(n, "catalogue"), probabilities,
                            blocks.pop("embeddings", np.zeros((n, 0), np.float32)),
                            [f"tag{j}" for j in range(args.tags)], blocks)
    queries = np.random.default_rng(args.seed + 1).choice(n, size=min(args.queries, n), replace=False)

    brute = RecommendIndex.brute_force(catalogue, features, components)  # rows in catalogue order
    vectors = brute.vectors
    started = time.perf_counter()
    scores = vectors[queries] @ vectors.T
    scores[np.arange(len(queries)), queries] = -np.inf
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    batch_ms = (time.perf_counter() - started) * 1e3 / len(queries)
    exact = part  # sets of the true k nearest rows (ties aside)
    del scores

    started = time.perf_counter()
    graph = RecommendIndex.build(catalogue, features, components, RECOMMEND["exact_max_songs"], RECOMMEND["hnsw_m"],
                                 RECOMMEND["ef_search"])
    build_s = time.perf_counter() - started
    catalogue_row = {song_id: i for i, song_id in enumerate(ids.tolist())}

    print(f"{n} songs, space {features} ({vectors.shape[1]} dimensions), {len(queries)} single queries, k={k}, "
          "cosine distance")
    print(f"  {'method':34s} {'median':>8s} {'p95':>8s}   recall@{k}  (ms/query)")
    times, got = timed(queries, lambda r: [catalogue_row[i] for i, _ in brute.similar(ids[r], k)])
    report("numpy brute force (exact)", times, recall(got, exact))
    report("numpy brute force, batch of queries", np.array([batch_ms]), 1.0, f"{len(queries)} at once, amortised")
    if 0 < args.exact_songs < n:
        cut = catalogue.take(slice(0, args.exact_songs))
        small = RecommendIndex.brute_force(cut, features, components)
        times, _ = timed(queries[queries < args.exact_songs][:100] if (queries < args.exact_songs).sum() >= 20
                         else np.arange(min(100, args.exact_songs)), lambda r: small.similar(ids[r], k))
        report(f"numpy brute force, {args.exact_songs} songs", times, 1.0, "exact_max_songs default")
    for ef_search in (32, 48, 64, 128):
        graph.ef_search = ef_search
        times, got = timed(queries, lambda r: [catalogue_row[i] for i, _ in graph.similar(ids[r], k)])
        default = " <- default" if ef_search == RECOMMEND["ef_search"] else ""
        report(f"faiss HNSW M {RECOMMEND['hnsw_m']}, ef_search {ef_search}", times, recall(got, exact),
               f"build {build_s:.0f} s (one thread){default}")
    ivf_index(vectors, queries, exact, k)

    if not args.skip_sklearn:
        from sklearn.neighbors import NearestNeighbors

        few = queries[: max(20, len(queries) // 6)]
        for algorithm in ("brute", "ball_tree", "kd_tree"):
            started = time.perf_counter()
            # unit-length rows: euclidean distance ranks like cosine distance
            model = NearestNeighbors(n_neighbors=k + 1, algorithm=algorithm).fit(vectors)
            fit_s = time.perf_counter() - started

            def search(row, model=model):
                with _one_thread():
                    found = model.kneighbors(vectors[row:row + 1], k + 1, return_distance=False)[0]
                return [r for r in found if r != row][:k]

            times, got = timed(few, search)
            report(f"sklearn NearestNeighbors {algorithm}", times, recall(got, exact[: len(few)]),
                   f"fit {fit_s:.0f} s, {len(few)} queries")


if __name__ == "__main__":
    main()
