"""Content-based recommendation: nearest songs in the tagger's output space (dissertation 4.3.2).

Each song is a vector joined from the blocks that `features` lists: its predicted tag probabilities
("tags", the seed's 50-tag space), the model's penultimate embedding ("embeddings"), and the penultimate
embedding of a published MSD tagger ("msd-cnn", "msd-crnn": Predictions.reference_embeddings). Each block
is scaled to unit length and the whole by 1/sqrt(number of blocks), so the cosine of two songs is the mean
of their blocks' cosines. Distance is cosine distance, 1 - cos, in [0, 2]. The default, tags and msd-cnn's
embedding, is what the real-music benchmark (benchmarks/soundtrack_retrieval.py) found best among the spaces
that keep the embedded corpus's own same-artist precision. A published tagger's block wider than
`embedding_components` is first projected on its leading right singular vectors over the indexed songs
(truncated SVD, which keeps inner products as well as that many dimensions can), stored with the index so
that a query is projected alike: 256 dimensions searched as 32 keep the benchmark's scores and the query
time of the tag space (docs/performance.md).

Search is exact brute force (one float32 matrix-vector product, then argpartition) while the
catalogue has at most `exact_max_songs` songs. Above that it is faiss's HNSW graph (IndexHNSWFlat,
inner product on the unit vectors, `hnsw_m` links a song), searched with a candidate list of
`ef_search`, each candidate scored exactly; it answers in a fraction of brute force's time at a
recall@10 just under 1 (docs/performance.md; benchmarks/recommend_latency.py).
The graph is built on one thread: a parallel build inserts songs in a racing order, and the index
file (a DVC output) must come out the same bytes every time.

Single queries run on one thread (BLAS and faiss's OpenMP): for one small product a second thread
only adds hand-off cost and latency spikes on a shared machine.
"""
from __future__ import annotations

import contextlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from musictag.errors import MusictagError
from musictag.files import write_atomic
from musictag.inference.predictions import Predictions

FORMAT_VERSION = 5  # 4: features is a list of blocks; 5: with their projections
PROJECTION_PREFIX = "projection_of_"  # the .npz key of a block's projection: projection_of_msd-cnn
HNSW_EF_CONSTRUCTION = 80  # candidates while linking a song into the graph
OWN_BLOCKS = ("tags", "embeddings")  # the catalogue model's outputs; any other block is a published tagger's
SAME_ARTIST_KS = (5, 10)  # the real-music benchmark's precision@k, scored on the test split too
_BLOCK_ELEMENTS = 1 << 24  # scores held at once by the batch search (64 MiB of float32)


def _unit_rows(matrix) -> np.ndarray:
    """Rows scaled to unit L2 norm, float32; an all-zero row stays zero (distance 1 to everything)."""
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim != 2:
        raise MusictagError(f"expected a 2-D song x feature matrix, got shape {matrix.shape}")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, np.float32(1e-12))


def feature_block(predictions, name: str) -> np.ndarray:
    """One block of `features` for every song of `predictions`: "tags" (n, n_tags), "embeddings" (n, d), or
    a published tagger's embeddings (n, d_name), which the predict stage or the catalogue computes."""
    if name == "tags":
        return predictions.probabilities
    if name == "embeddings":
        return predictions.embeddings
    if name not in predictions.reference_embeddings:
        raise MusictagError(f"recommend.features: the songs have no {name} embeddings (the predict stage and the "
                            f"catalogue compute those recommend.features names: `dvc repro`)")
    return predictions.reference_embeddings[name]


def fit_projections(predictions, features: list[str], embedding_components: int) -> dict[str, np.ndarray]:
    """{name: (embedding_components, d) float32} for each published tagger's block of `features` wider than
    `embedding_components` (0: none): its leading right singular vectors over the songs of `predictions`,
    each signed so that its largest entry is positive (the same projection on every machine)."""
    projections = {}
    for name in features:
        if name in OWN_BLOCKS or not embedding_components:
            continue
        block = feature_block(predictions, name)
        if not 0 < embedding_components < block.shape[1]:
            continue
        _, _, right = np.linalg.svd(np.asarray(block, np.float64), full_matrices=False)
        right = right[:embedding_components]
        signs = np.sign(right[np.arange(len(right)), np.abs(right).argmax(axis=1)])
        projections[name] = (right * signs[:, np.newaxis]).astype(np.float32)
    return projections


def song_vectors(predictions, features: list[str], projections: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """The (n, D) unit-length float32 vectors that the index searches, one per song of `predictions`: the
    blocks `features` names, each projected where `projections` has it (fit_projections), unit-length, side by
    side, scaled by 1/sqrt(len(features))."""
    if isinstance(features, str) or not features:
        raise MusictagError(f"recommend.features: a list of blocks (tags, embeddings, msd-cnn, msd-crnn), got {features!r}")
    projections = projections or {}
    blocks = []
    for name in features:
        block = feature_block(predictions, name)
        if name in projections:
            block = np.asarray(block, np.float32) @ projections[name].T
        blocks.append(_unit_rows(block))
    return np.concatenate(blocks, axis=1) * np.float32(1 / np.sqrt(len(blocks)))


_blas_limits = None


def _one_thread():
    """A context manager that runs BLAS on one thread (threadpoolctl; about 25 us to enter)."""
    global _blas_limits
    if _blas_limits is None:
        from threadpoolctl import ThreadpoolController

        _blas_limits = ThreadpoolController().select(user_api="blas")
    return _blas_limits.limit(limits=1)


@contextlib.contextmanager
def _faiss_one_thread():
    """faiss's OpenMP on one thread: a single query gains nothing from more, and building the graph on more
    inserts songs in a racing order."""
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(threads)


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k largest scores, best first (ties: lower position first)."""
    if k < len(scores):
        part = np.argpartition(-scores, k - 1)[:k]
    else:
        part = np.arange(len(scores))
    return part[np.lexsort((part, -scores[part]))]


@dataclass
class RecommendIndex:
    """Song vectors with their ids, row r = ids[r], in the space of `features` with their `projections`
    (fit_projections); `graph` is a faiss IndexHNSWFlat over the same rows, or None for exact brute force."""

    ids: np.ndarray
    vectors: np.ndarray
    features: list[str]
    projections: dict[str, np.ndarray]
    graph: object | None = None

    def __post_init__(self):
        self.features = [str(name) for name in self.features]
        self.ids = np.asarray(self.ids).astype(str)
        self.vectors = np.ascontiguousarray(self.vectors, dtype=np.float32)
        self._id_list = self.ids.tolist()
        self._row = {song_id: row for row, song_id in enumerate(self._id_list)}
        if len(self._row) != len(self.ids):
            seen = set()
            dup = next(i for i in self.ids.tolist() if i in seen or seen.add(i))
            raise MusictagError(f"recommend: song id '{dup}' appears more than once")

    # --- building, saving, loading ---------------------------------------------------------------

    @classmethod
    def brute_force(cls, predictions, features: list[str], embedding_components: int = 0) -> "RecommendIndex":
        """A brute-force index over every song of `predictions` (Predictions: ids, probabilities, embeddings),
        published taggers' blocks projected on `embedding_components` dimensions (0: whole)."""
        ids = np.asarray(predictions.ids).astype(str)
        if len(ids) < 2:
            raise MusictagError(f"recommend: need at least 2 songs to recommend from, got {len(ids)}")
        projections = fit_projections(predictions, features, embedding_components)
        vectors = song_vectors(predictions, features, projections)
        if len(ids) != len(vectors):
            raise MusictagError(f"recommend: {len(ids)} ids but {len(vectors)} song vectors")
        return cls(ids, vectors, features, projections)

    @classmethod
    def build(cls, predictions, features: list[str], embedding_components: int, exact_max_songs: int, hnsw_m: int,
              ef_search: int) -> "RecommendIndex":
        """An index over every song of `predictions`: up to `exact_max_songs` songs exact, more an HNSW graph
        of `hnsw_m` links a song, searched with `ef_search` candidates (more: higher recall, slower)."""
        index = cls.brute_force(predictions, features, embedding_components)
        if len(index) <= exact_max_songs:
            return index
        ids, vectors = index.ids, index.vectors
        import faiss

        graph = faiss.IndexHNSWFlat(vectors.shape[1], hnsw_m, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        with _faiss_one_thread():
            graph.add(vectors)
        index = cls(ids, vectors, features, index.projections, graph)
        index.ef_search = ef_search
        return index

    @property
    def ef_search(self) -> int | None:
        """Candidates an approximate search keeps (None: exact search)."""
        return None if self.graph is None else int(self.graph.hnsw.efSearch)

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        if self.graph is not None:
            self.graph.hnsw.efSearch = int(value)

    def save(self, path: str | Path) -> None:
        """Write atomically to an .npz that `load` reads back without rebuilding."""
        graph = np.zeros(0, np.uint8)
        if self.graph is not None:
            import faiss

            graph = faiss.serialize_index(self.graph)
        projections = {PROJECTION_PREFIX + name: matrix for name, matrix in self.projections.items()}
        write_atomic(Path(path), lambda tmp: np.savez(tmp, format_version=FORMAT_VERSION, ids=self.ids,
                                                      vectors=self.vectors, features=np.array(self.features),
                                                      graph=graph, **projections))

    @classmethod
    def load(cls, path: str | Path) -> "RecommendIndex":
        try:
            with np.load(path, allow_pickle=False) as data:
                version = int(data["format_version"])
                if version != FORMAT_VERSION:
                    raise MusictagError(f"{path}: index format {version}, expected {FORMAT_VERSION} "
                                        "(run `dvc repro recommend`)")
                graph = None
                if len(data["graph"]):
                    import faiss

                    graph = faiss.deserialize_index(data["graph"])
                projections = {key[len(PROJECTION_PREFIX):]: data[key] for key in data.files
                               if key.startswith(PROJECTION_PREFIX)}
                return cls(data["ids"], data["vectors"], data["features"].tolist(), projections, graph)
        except FileNotFoundError:
            raise MusictagError(f"{path}: recommendation index not found (run `dvc repro recommend`)") from None
        except (OSError, ValueError, KeyError, EOFError, RuntimeError, zipfile.BadZipFile) as err:
            raise MusictagError(f"{path}: not a recommendation index ({err.__class__.__name__})") from None

    # --- queries -----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, song_id) -> bool:
        return str(song_id) in self._row

    @property
    def exact(self) -> bool:
        """Whether every query scans every song (brute force)."""
        return self.graph is None

    def row_of(self, song_id) -> int:
        try:
            return self._row[str(song_id)]
        except KeyError:
            raise MusictagError(f"recommend: unknown song id '{song_id}'") from None

    def _check_k(self, k) -> int:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise MusictagError(f"recommend: k must be a positive integer, got {k!r}")
        return min(int(k), len(self) - 1)

    def _search_row(self, row: int, k: int, skip: np.ndarray | None = None,
                    n_skipped: int = 0) -> list[tuple[int, float]]:
        """(row, distance) of the k nearest songs to stored row `row`, nearest first, leaving out
        itself and the rows where the boolean mask `skip` (of n_skipped True values) is set."""
        return self._search(self.vectors[row], k, skip, n_skipped, row)

    def _search(self, query: np.ndarray, k: int, skip: np.ndarray | None = None, n_skipped: int = 0,
                own_row: int | None = None) -> list[tuple[int, float]]:
        """(row, distance) of the k nearest songs to unit vector `query`, nearest first, leaving out
        `own_row` and the rows where `skip` is set. The HNSW graph is asked for as many more as it may
        have to leave out; where it finds too few, the query falls back on brute force."""
        need = k + (own_row is not None) + n_skipped
        if self.graph is not None and need <= len(self):
            with _faiss_one_thread():
                scores, rows = self.graph.search(query[np.newaxis], need)
            # a few candidates: plain Python is faster here than numpy's per-call overhead (~20 us a query)
            found = [(row, score) for row, score in zip(rows[0].tolist(), scores[0].tolist())
                     if row >= 0 and row != own_row and (skip is None or not skip[row])]
            if len(found) >= k:
                found.sort(key=lambda pair: (-pair[1], pair[0]))  # ties: lower row first, as brute force
                return [(row, min(max(1.0 - score, 0.0), 2.0)) for row, score in found[:k]]
        with _one_thread():
            scores = self.vectors @ query
        if own_row is not None:
            scores[own_row] = -np.inf
        if skip is not None:
            scores[skip] = -np.inf
        best = _top_k(scores, k)
        best = best[scores[best] > -np.inf]
        distances = np.clip(1.0 - scores[best].astype(np.float64), 0.0, 2.0)
        return list(zip(best.tolist(), distances.tolist()))

    def similar(self, song_id, k: int = 10) -> list[tuple[str, float]]:
        """The k songs nearest to `song_id` (never itself), nearest first, as (id, cosine distance)."""
        k = self._check_k(k)
        return [(self._id_list[r], d) for r, d in self._search_row(self.row_of(song_id), k)]

    def vectors_of(self, predictions) -> np.ndarray:
        """The vectors (n, D) of songs outside the index (Predictions with this index's blocks), in its space:
        its features, its projections."""
        return song_vectors(predictions, self.features, self.projections)

    def similar_to(self, vector: np.ndarray, k: int = 10) -> list[tuple[str, float]]:
        """The k songs nearest to a song outside the index, given its vector (vectors_of), nearest first, as
        (id, cosine distance)."""
        k = self._check_k(k)
        return [(self._id_list[r], d) for r, d in self._search(self._query(vector), k)]

    def _query(self, vector: np.ndarray) -> np.ndarray:
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        if vector.shape != (self.vectors.shape[1],):
            raise MusictagError(f"recommend: a query of {vector.size} features for an index of "
                                f"{self.vectors.shape[1]} ({self.features})")
        return vector

    def neighbours(self, k: int = 10, block_songs: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact k nearest songs of every stored song at once (blocked matrix products), whatever the
        cells: rows (n, k) into `ids` and cosine distances (n, k), nearest first, self excluded."""
        k = self._check_k(k)
        n = len(self)
        block = block_songs or max(1, _BLOCK_ELEMENTS // n)
        rows = np.empty((n, k), dtype=np.int64)
        distances = np.empty((n, k), dtype=np.float32)
        for start in range(0, n, block):
            stop = min(n, start + block)
            scores = self.vectors[start:stop] @ self.vectors.T
            scores[np.arange(stop - start), np.arange(start, stop)] = -np.inf
            part = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < n else np.argsort(-scores, axis=1)[:, :k]
            part_scores = np.take_along_axis(scores, part, axis=1)
            order = np.lexsort((part, -part_scores), axis=1)
            rows[start:stop] = np.take_along_axis(part, order, axis=1)
            distances[start:stop] = np.clip(1 - np.take_along_axis(part_scores, order, axis=1), 0, 2)
        return rows, distances

    def distance(self, a, b) -> float:
        """Cosine distance between two songs of the index, by id."""
        va, vb = self.vectors[self.row_of(a)], self.vectors[self.row_of(b)]
        return float(np.clip(1.0 - float(va @ vb), 0.0, 2.0))

    def playlist(self, seed, length: int = 10, lookahead: bool = True, width: int = 3) -> list[str]:
        """A playlist of `length` distinct songs starting at song id `seed`, each close to the previous
        one; `seed` may also be the vector of a song outside the index, whose nearest song starts it.

        Greedy walk: the next song is the nearest song not yet in the playlist. With `lookahead`,
        the next song is instead the one of the `width` nearest unplayed songs that minimises
        d(current, candidate) + d(candidate, its own nearest unplayed song): one step of look-ahead,
        so the walk avoids a corner from which the only way on is a long jump. On a synthetic
        3,000-song catalogue this shortened the mean step by about 7% and the longest step of a
        10-song playlist by about 5%, for 3 to 4 times the queries.
        """
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
            raise MusictagError(f"recommend: playlist length must be a positive integer, got {length!r}")
        if length > len(self):
            raise MusictagError(f"recommend: playlist length {length} exceeds the {len(self)} songs in the index")
        if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
            raise MusictagError(f"recommend: playlist width must be a positive integer, got {width!r}")
        if isinstance(seed, np.ndarray):
            current = self._search(self._query(seed), 1)[0][0]
        else:
            current = self.row_of(seed)
        played = [current]
        skip = np.zeros(len(self), dtype=bool)
        skip[current] = True
        while len(played) < length:
            remaining = len(self) - len(played)
            candidates = self._search_row(current, min(width if lookahead else 1, remaining), skip, len(played))
            if not candidates:  # an approximate index found nothing unplayed nearby: scan everything
                with _one_thread():
                    scores = self.vectors @ self.vectors[current]
                scores[skip] = -np.inf
                candidates = [(int(np.argmax(scores)), 0.0)]
            if lookahead and len(candidates) > 1 and remaining > 1:
                def cost(candidate):
                    row, d = candidate
                    skip[row] = True
                    onward = self._search_row(row, 1, skip, len(played) + 1)
                    skip[row] = False
                    return d + (onward[0][1] if onward else 0.0)

                current = min(candidates, key=cost)[0]
            else:
                current = candidates[0][0]
            played.append(current)
            skip[current] = True
        return [self._id_list[r] for r in played]


# --- evaluation ------------------------------------------------------------------------------------


def retrieval_metrics(predictions, manifest, k: int, split: str, seed: int, features: list[str],
                      embedding_components: int) -> dict:
    """How well neighbours in the tag space agree with the ground truth, against random songs.

    For each song of `split`, its k nearest neighbours are searched among the songs of the same
    split (exact). precision@k "shared_tag" is the share of those neighbours that have at least one
    ground-truth tag in common with the song; "same_artist" the share by the same artist (over songs
    whose artist is known; None when no artist is, as for MSD without its track metadata); and
    "tag_jaccard" the mean Jaccard overlap of the two songs' tag sets (0 when both have none),
    which still separates good from random neighbours when a few tags are on nearly every song
    and "shared_tag" is near 1 for any pair. The random baseline draws k other songs of the split
    per query (seeded) and scores them alike; `ratio_over_random` divides the two (None where the
    random value is 0).
    """
    keep = np.asarray(predictions.splits) == split
    ids = np.asarray(predictions.ids).astype(str)[keep]
    n = len(ids)
    if n < 2:
        raise MusictagError(f"recommend: split '{split}' has {n} predicted song(s); need at least 2")
    k_used = min(int(k), n - 1)
    row_in_manifest = {song_id: i for i, song_id in enumerate(manifest.clips["id"].astype(str).tolist())}
    missing = [i for i in ids.tolist() if i not in row_in_manifest]
    if missing:
        raise MusictagError(f"recommend: predicted song '{missing[0]}' is not in the manifest "
                            f"({len(missing)} missing)")
    rows = np.array([row_in_manifest[i] for i in ids.tolist()])
    tags = manifest.targets[rows].astype(np.float32)
    artists = manifest.clips["artist"].astype(str).to_numpy()[rows]

    index = RecommendIndex.brute_force(predictions.take(keep), features, embedding_components)
    deepest, _ = index.neighbours(min(max(k_used, *SAME_ARTIST_KS), n - 1))  # index rows == subset order
    neighbour_rows = deepest[:, :k_used]  # the nearest k_used of a longer list, in the same order

    rng = np.random.default_rng(seed)
    random_rows = np.empty((n, k_used), dtype=np.int64)
    for i in range(n):
        others = rng.choice(n - 1, size=k_used, replace=False)
        random_rows[i] = others + (others >= i)  # skip the song itself

    n_tags = tags.sum(axis=1)

    def shares(neighbours: np.ndarray) -> dict:
        common = np.einsum("it,ijt->ij", tags, tags[neighbours])
        union = n_tags[:, None] + n_tags[neighbours] - common
        jaccard = np.divide(common, union, out=np.zeros_like(common), where=union > 0)
        known = artists != ""  # MSD without its track metadata names no artist: no score, not a fake 1.0
        same_artist = (float((artists[neighbours] == artists[:, None])[known].mean()) if known.any() else None)
        return {"shared_tag": float((common > 0).mean()), "same_artist": same_artist,
                "tag_jaccard": float(jaccard.mean())}

    model, random = shares(neighbour_rows), shares(random_rows)
    return {
        "split": split,
        "n_songs": int(n),
        "k": int(k_used),
        "features": features,
        "precision_at_k": model,
        "random_precision_at_k": random,
        "ratio_over_random": {key: (model[key] / random[key] if model[key] is not None and random[key] else None)
                              for key in model},
        "same_artist": same_artist_precision(deepest, artists),
    }


def same_artist_precision(neighbour_rows: np.ndarray, artists: np.ndarray, level: float = 0.95) -> dict:
    """precision@k of "same artist" for each k of SAME_ARTIST_KS, from every song's nearest other songs
    (`neighbour_rows` (n, >= k), nearest first, as RecommendIndex.neighbours gives them), with the half width
    of its Student-t interval over queries ({"precision_at_5": ..., "precision_at_5_ci95": ...}), the scores
    the real-music benchmark uses; None for each where an artist is unknown or there are too few songs."""
    from musictag.evaluation.intervals import confidence_interval

    same = artists[neighbour_rows] == artists[:, None]
    scores = {}
    for k in SAME_ARTIST_KS:
        usable = (artists != "").all() and same.shape[1] >= k
        mean, half = confidence_interval(same[:, :k].mean(axis=1), level) if usable else (None, None)
        scores |= {f"precision_at_{k}": mean, f"precision_at_{k}_ci95": half}
    return scores


# --- the pipeline stage --------------------------------------------------------------------------------


def read_inputs(predictions, manifest):
    """Predictions and Manifest as given, or read from their file paths."""
    if isinstance(predictions, (str, os.PathLike)):
        predictions = Predictions.load(Path(predictions))
    if isinstance(manifest, (str, os.PathLike)):
        from musictag.datasets.manifest import Manifest

        manifest = Manifest.read(Path(manifest))
    return predictions, manifest


def build_recommendations(predictions, manifest, index_path, *, catalogue, features: list[str],
                          embedding_components: int, k: int, split: str, seed: int, exact_max_songs: int, hnsw_m: int,
                          ef_search: int) -> dict:
    """Build the index over `catalogue` (Predictions of the songs to recommend from, or its file;
    None: every song of `predictions`), save it to `index_path`, and return the retrieval metrics
    of `predictions`' `split`, scored against `manifest`'s tags (retrieval_metrics), with a summary
    of the index under "index"."""
    predictions, manifest = read_inputs(predictions, manifest)
    catalogue = predictions if catalogue is None else read_inputs(catalogue, None)[0]
    index = RecommendIndex.build(catalogue, features=features, embedding_components=embedding_components,
                                 exact_max_songs=exact_max_songs, hnsw_m=hnsw_m, ef_search=ef_search)
    index.save(Path(index_path))
    metrics = retrieval_metrics(predictions, manifest, k=k, split=split, seed=seed, features=features,
                                embedding_components=embedding_components)
    metrics["index"] = {"n_songs": len(index), "exact": index.exact, "dimensions": int(index.vectors.shape[1])}
    return metrics

