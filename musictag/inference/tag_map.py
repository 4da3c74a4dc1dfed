"""A t-SNE map of the test songs' predicted tag vectors (dissertation 4.3.2, figures 4.10-4.12).

Up to `max_songs` songs of one split (the seed: 10,000 unseen test songs) are embedded in 2-D from
their predicted tag probabilities. Two outputs:

* map.png: points coloured by each song's top predicted tag (the `n_coloured_tags` most common top
  tags get colours, the rest are grey), with a legend; like figure 4.10.
* map.html: one self-contained page (inline CSS, JS and data; no network): hover a point for its
  artist, title and top 3 tags; search by artist or title; click a point to play its clip and list
  its nearest songs on the map (exact cosine neighbours from musictag.inference.recommendation), themselves
  clickable. Clips are linked by a URL relative to the page, or embedded as MP3 data URIs when the
  map has at most `embed_audio_max_songs` songs, so the page then works on its own anywhere.

The embedding runs on openTSNE (default) or scikit-learn's TSNE (what the seed used), picked by the
`implementation` param. benchmarks/tsne_speed.py measures both: on two cores openTSNE took half the
time for 10,000 songs (124 s against 249 s) and 0.7 of it for 2,000, with the same final KL
divergence and the same share of tag-space neighbours kept on the map.
"""
from __future__ import annotations

import base64
import html
import importlib.resources
import io
import json
import os
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from musictag.errors import MusictagError
from musictag.files import write_atomic, write_text

# Tableau 10 without its grey (grey means "other tag"), then three darker tones.
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22",
           "#17becf", "#393b79", "#637939", "#e7ba52", "#843c39", "#7b4173", "#3182bd", "#31a354"]
OTHER_COLOUR = "#c4c4c4"
ALIKE_SPREAD = 1e-6  # below this range of every tag's probability, all songs are one point: nothing to map
PLAYABLE = {".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".opus": "audio/ogg", ".wav": "audio/wav",
            ".flac": "audio/flac", ".m4a": "audio/mp4"}


# --- choosing songs and embedding them ---------------------------------------------------------------


def select_rows(splits, split: str, max_songs: int, seed: int) -> np.ndarray:
    """Rows of the songs of `split`: all of them, or a seeded sample of `max_songs`, in original order."""
    rows = np.flatnonzero(np.asarray(splits) == split)
    if len(rows) < 5:
        raise MusictagError(f"tsne: split '{split}' has {len(rows)} predicted song(s); a map needs at least 5")
    if len(rows) > max_songs:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=max_songs, replace=False))
    return rows


def all_alike(points) -> bool:
    """True when every row of `points` (n, d) is the same vector to within ALIKE_SPREAD in each column: a
    degenerate model (under-trained, collapsed) that predicts one tag vector for every song."""
    points = np.asarray(points, dtype=np.float64)
    return len(points) < 2 or float(np.ptp(points, axis=0).max()) < ALIKE_SPREAD


def embed(points, implementation: str, perplexity: float, metric: str, seed: int, n_jobs: int,
          n_iter: int) -> tuple[np.ndarray, float]:
    """2-D t-SNE coordinates (n, 2) of `points` and the final KL divergence.

    Both implementations run `n_iter` iterations in all (the first 250 with early exaggeration)
    from a PCA start. The perplexity is capped at (n - 1) / 3 so that tiny maps (tests) still run.
    openTSNE's map depends on the thread count `n_jobs` (0 = all cores), so the pipeline fixes it.
    Songs that are all alike (`all_alike`) are one point: all coordinates 0 and a KL divergence of 0, since
    a PCA start of identical points divides by a zero spread and t-SNE's result would be NaN or noise.
    """
    points = np.asarray(points, dtype=np.float32)
    if all_alike(points):
        return np.zeros((len(points), 2)), 0.0
    perplexity = float(min(perplexity, max(1.0, (len(points) - 1) / 3)))
    n_jobs = int(n_jobs) or os.cpu_count() or 1
    if implementation == "sklearn":
        from sklearn.manifold import TSNE

        model = TSNE(perplexity=perplexity, metric=metric, init="pca", learning_rate="auto", max_iter=int(n_iter),
                     random_state=seed, n_jobs=n_jobs)
        coordinates, kl_divergence = model.fit_transform(points).astype(np.float64), float(model.kl_divergence_)
    else:
        coordinates, kl_divergence = _opentsne(points, perplexity, metric, seed, n_jobs, n_iter)
    if not np.isfinite(coordinates).all():
        raise MusictagError(f"tsne: the {implementation} embedding of {len(points)} songs has NaN coordinates")
    return coordinates, kl_divergence


def _opentsne(points: np.ndarray, perplexity: float, metric: str, seed: int, n_jobs: int,
              n_iter: int) -> tuple[np.ndarray, float]:
    """openTSNE's map of `points` with `embed`'s settings (its early exaggeration counted in `n_iter`)."""
    try:
        from openTSNE import TSNE
    except ImportError:
        raise MusictagError("tsne.implementation: opentsne needs the openTSNE package "
                            "(pip install openTSNE), or use sklearn") from None
    embedding = TSNE(perplexity=perplexity, metric=metric, initialization="pca", n_iter=int(n_iter) - 250,
                     early_exaggeration_iter=250, n_jobs=n_jobs, random_state=seed).fit(points)
    return np.asarray(embedding, dtype=np.float64), float(embedding.kl_divergence)


def neighbourhood_kept(high, low, k: int = 10, sample: int = 1000, seed: int = 0) -> float:
    """Mean share of a point's k nearest neighbours in `high` that are among its k nearest in `low`
    (on a seeded sample of points): how much of the tag-space neighbourhood the map keeps."""
    from sklearn.neighbors import NearestNeighbors

    high, low = np.asarray(high, dtype=np.float32), np.asarray(low, dtype=np.float64)
    k = min(k, len(high) - 1)
    rows = np.random.default_rng(seed).choice(len(high), size=min(sample, len(high)), replace=False)
    near_high = NearestNeighbors(n_neighbors=k + 1).fit(high).kneighbors(high[rows], return_distance=False)
    near_low = NearestNeighbors(n_neighbors=k + 1).fit(low).kneighbors(low[rows], return_distance=False)
    kept = [len(set(a[a != r][:k]) & set(b[b != r][:k])) / k for r, a, b in zip(rows, near_high, near_low)]
    return float(np.mean(kept))


# --- colours -----------------------------------------------------------------------------------------


@dataclass
class Colouring:
    """Each song's top tag and legend entry (-1: grey "other"); legend = (tag, colour, count)."""

    top_tag: np.ndarray
    legend_of_song: np.ndarray
    legend: list[tuple[str, str, int]]
    n_other: int


def colour_by_top_tag(probabilities, tag_names: list[str], n_coloured: int) -> Colouring:
    """Colour the `n_coloured` (at most len(PALETTE)) most common top predicted tags (ties: tag order), the
    rest grey."""
    top = np.asarray(probabilities).argmax(axis=1)
    counts = np.bincount(top, minlength=len(tag_names))
    ranked = [int(t) for t in np.lexsort((np.arange(len(counts)), -counts)) if counts[t] > 0][:n_coloured]
    legend_index = np.full(len(tag_names), -1)
    legend_index[ranked] = np.arange(len(ranked))
    legend = [(str(tag_names[t]), PALETTE[i], int(counts[t])) for i, t in enumerate(ranked)]
    legend_of_song = legend_index[top]
    return Colouring(top, legend_of_song, legend, int((legend_of_song < 0).sum()))


# --- outputs -----------------------------------------------------------------------------------------


def _plain(text: str) -> str:
    """Text that matplotlib shows as it is: a '$' would otherwise start mathtext."""
    return text.replace("$", r"\$")


def plot_png(coordinates, colouring: Colouring, path: Path, title: str) -> None:
    """A scatter of the map: grey "other" songs under the coloured ones, legend outside, no ticks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    coordinates = np.asarray(coordinates)
    size = float(np.clip(12000 / len(coordinates), 3, 36))
    fig, ax = plt.subplots(figsize=(10, 7.5), dpi=100)
    other = colouring.legend_of_song < 0
    if other.any():
        ax.scatter(*coordinates[other].T, s=size, c=OTHER_COLOUR, alpha=0.6, linewidths=0,
                   label=f"other ({colouring.n_other})")
    for i, (tag, colour, count) in enumerate(colouring.legend):
        mine = colouring.legend_of_song == i
        ax.scatter(*coordinates[mine].T, s=size, c=colour, alpha=0.85, linewidths=0,
                   label=_plain(f"{tag} ({count})"))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(_plain(title))
    handles, labels = ax.get_legend_handles_labels()
    if other.any():  # "other" last in the legend
        handles, labels = handles[1:] + handles[:1], labels[1:] + labels[:1]
    ax.legend(handles, labels, title="top predicted tag", loc="upper left", bbox_to_anchor=(1.01, 1.0),
              frameon=False, markerscale=max(1.0, 40 / size) ** 0.5, fontsize=9)
    fig.tight_layout()
    try:
        write_atomic(path, fig.savefig)
    finally:
        plt.close(fig)


def audio_source(audio_path: str | Path, page_dir: Path, embed_audio: bool) -> str:
    """What an <audio> element on a page in `page_dir` plays for a clip: a relative URL to the file,
    or an MP3 data URI (a browser-playable file as it is, if the clip cannot be encoded to MP3)."""
    path = Path(audio_path)
    if not embed_audio:
        relative = os.path.relpath(path, page_dir)
        return urllib.parse.quote(relative.replace(os.sep, "/"))
    import soundfile

    if not path.is_file():
        raise MusictagError(f"{path}: clip not found for the t-SNE page")
    try:
        audio, sample_rate_hz = soundfile.read(path, dtype="float32", always_2d=True)
        buffer = io.BytesIO()
        soundfile.write(buffer, audio.mean(axis=1), sample_rate_hz, format="MP3", subtype="MPEG_LAYER_III")
        data, mime = buffer.getvalue(), "audio/mpeg"
    except (RuntimeError, ValueError, TypeError, soundfile.LibsndfileError):
        mime = PLAYABLE.get(path.suffix.lower())
        if mime is None:
            raise MusictagError(f"{path}: cannot embed this clip in the t-SNE page (not decodable)") from None
        data = path.read_bytes()
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def page_json(payload: dict) -> str:
    """JSON that is safe inside <script type="application/json">: no '<', '>' or '&' characters
    remain (they become \\u escapes, which JSON.parse turns back), so '</script>' cannot end it."""
    text = json.dumps(payload, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _asset(name: str) -> str:
    """The page's HTML template, stylesheet or script, package data in musictag/inference/assets/ (edited as what
    they are, with a browser's tools, rather than as Python strings)."""
    return importlib.resources.files("musictag.inference").joinpath("assets", name).read_text(encoding="utf-8")


def write_html(path: Path, payload: dict, title: str) -> None:
    """The self-contained interactive page (musictag/inference/assets/tsne_map.*) around `payload`."""
    page = (_asset("tsne_map.html").replace("__TITLE__", html.escape(title))
            .replace("__STYLE__", _asset("tsne_map.css")).replace("__SCRIPT__", _asset("tsne_map.js"))
            .replace("__DATA__", page_json(payload)))
    write_text(path, page)


def build_map(predictions, manifest, out_dir: str | Path, *, split: str, max_songs: int, implementation: str,
              perplexity: float, metric: str, seed: int, k: int, features: list[str], embedding_components: int,
              n_coloured_tags: int, embed_audio_max_songs: int, n_jobs: int, n_iter: int) -> dict:
    """Write out_dir/map.png and out_dir/map.html for the songs of `split`; a summary for metrics/.

    `predictions` (musictag.inference.predictions.Predictions, or the path of its .npz) gives the songs' predicted
    tags; `manifest` (musictag.datasets.manifest.Manifest, or its CSV path) their artist, title and audio.
    """
    from musictag.inference.recommendation import RecommendIndex, read_inputs

    predictions, manifest = read_inputs(predictions, manifest)
    out_dir = Path(out_dir)
    rows = select_rows(predictions.splits, split, max_songs, seed)
    ids = np.asarray(predictions.ids).astype(str)[rows]
    probabilities = np.asarray(predictions.probabilities, dtype=np.float32)[rows]
    tag_names = [str(t) for t in predictions.tag_names]
    clips = manifest.clips.set_index(manifest.clips["id"].astype(str))
    missing = [i for i in ids.tolist() if i not in clips.index]
    if missing:
        raise MusictagError(f"tsne: predicted song '{missing[0]}' is not in the manifest ({len(missing)} missing)")
    clips = clips.loc[ids]

    started = time.perf_counter()
    coordinates, kl_divergence = embed(probabilities, implementation, perplexity, metric, seed, n_jobs, n_iter)
    tsne_seconds = time.perf_counter() - started
    colouring = colour_by_top_tag(probabilities, tag_names, n_coloured_tags)
    n = len(ids)
    alike = all_alike(probabilities)
    title = f"t-SNE of {n} {split} songs' predicted tags"
    if alike:
        title = f"{n} {split} songs, all predicted the same tags: one point (a degenerate model)"
        print(f"tsne: {title}")
    plot_png(coordinates, colouring, out_dir / "map.png", title + ", coloured by top tag")

    index = RecommendIndex.brute_force(predictions.take(rows), features, embedding_components)
    k = min(int(k), n - 1)
    neighbour_rows, neighbour_distances = index.neighbours(k)  # brute-force index rows == map order

    low, high = coordinates.min(axis=0), coordinates.max(axis=0)
    unit = (coordinates - (low + high) / 2) / max(float((high - low).max()), 1e-12) + 0.5  # fit [0,1], aspect kept
    top3 = np.argsort(-probabilities, axis=1, kind="stable")[:, :3]
    embed_audio = n <= embed_audio_max_songs
    payload = {
        "title": title,
        "split": split,
        "k": k,
        "features": features,
        "tags": tag_names,
        "legend": [{"tag": tag, "colour": colour, "count": count} for tag, colour, count in colouring.legend],
        "other": {"colour": OTHER_COLOUR, "count": colouring.n_other},
        "songs": {
            "id": ids.tolist(),
            "artist": clips["artist"].astype(str).tolist(),
            "title": clips["title"].astype(str).tolist(),
            "x": np.round(unit[:, 0], 5).tolist(),
            "y": np.round(unit[:, 1], 5).tolist(),
            "colour": colouring.legend_of_song.astype(int).tolist(),
            "top": [[[int(t), round(float(p[t]), 3)] for t in top] for top, p in zip(top3, probabilities)],
            "audio": [audio_source(a, out_dir, embed_audio) for a in clips["audio_path"].tolist()],
            "neighbours": neighbour_rows.tolist(),
            "distances": np.round(neighbour_distances.astype(np.float64), 4).tolist(),
        },
    }
    write_html(out_dir / "map.html", payload, title)
    return {
        "split": split,
        "n_songs": int(n),
        "implementation": implementation,
        "perplexity": float(min(perplexity, max(1.0, (n - 1) / 3))),
        "metric": metric,
        "all_songs_alike": alike,
        "kl_divergence": round(kl_divergence, 4),
        "neighbourhood_kept_at_10": round(neighbourhood_kept(probabilities, coordinates, 10, seed=seed), 4),
        "tsne_seconds": round(tsne_seconds, 1),
        "audio": "embedded" if embed_audio else "linked",
        "missing_audio": int(sum(not Path(a).is_file() for a in clips["audio_path"].tolist())),
        "coloured_tags": [tag for tag, _, _ in colouring.legend],
    }
