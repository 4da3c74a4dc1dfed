"""A t-SNE map of the test songs' predicted tag vectors (dissertation 4.3.2, figures 4.10-4.12).

Up to `max_songs` songs of one split (the seed: 10,000 unseen test songs) are embedded in 2-D from
their predicted tag probabilities. Two outputs:

* map.png: points coloured by each song's top predicted tag (the `n_coloured_tags` most common top
  tags get colours, the rest are grey), with a legend; like figure 4.10.
* map.html: one self-contained page (inline CSS, JS and data; no network): hover a point for its
  artist, title and top 3 tags; search by artist or title; click a point to play its clip and list
  its nearest songs on the map (exact cosine neighbours from musictag.recommend), themselves
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
from musictag.paths import resolve

IMPLEMENTATIONS = ("sklearn", "opentsne")
METRICS = ("euclidean", "cosine")
# Tableau 10 without its grey (grey means "other tag"), then three darker tones.
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22",
           "#17becf", "#393b79", "#637939", "#e7ba52", "#843c39", "#7b4173", "#3182bd", "#31a354"]
OTHER_COLOUR = "#c4c4c4"
PLAYABLE = {".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".opus": "audio/ogg", ".wav": "audio/wav",
            ".flac": "audio/flac", ".m4a": "audio/mp4"}


# --- choosing songs and embedding them ---------------------------------------------------------------


def select_rows(splits, split: str = "test", max_songs: int = 10000, seed: int = 0) -> np.ndarray:
    """Rows of the songs of `split`: all of them, or a seeded sample of `max_songs`, in original order."""
    if isinstance(max_songs, bool) or not isinstance(max_songs, (int, np.integer)) or max_songs < 5:
        raise MusictagError(f"tsne.max_songs: expected an integer >= 5, got {max_songs!r}")
    rows = np.flatnonzero(np.asarray(splits) == split)
    if len(rows) < 5:
        raise MusictagError(f"tsne: split '{split}' has {len(rows)} predicted song(s); a map needs at least 5")
    if len(rows) > max_songs:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=max_songs, replace=False))
    return rows


def embed(points, implementation: str = "opentsne", perplexity: float = 30.0, metric: str = "euclidean",
          seed: int = 0, n_jobs: int = 2, n_iter: int = 1000) -> tuple[np.ndarray, float]:
    """2-D t-SNE coordinates (n, 2) of `points` and the final KL divergence.

    Both implementations run `n_iter` iterations in all (the first 250 with early exaggeration)
    from a PCA start. The perplexity is capped at (n - 1) / 3 so that tiny maps (tests) still run.
    openTSNE's map depends on the thread count `n_jobs` (0 = all cores), so the pipeline fixes it.
    """
    if implementation not in IMPLEMENTATIONS:
        raise MusictagError(f"tsne.implementation: expected one of {list(IMPLEMENTATIONS)}, got {implementation!r}")
    if metric not in METRICS:
        raise MusictagError(f"tsne.metric: expected one of {list(METRICS)}, got {metric!r}")
    if isinstance(perplexity, bool) or not isinstance(perplexity, (int, float)) or perplexity <= 0:
        raise MusictagError(f"tsne.perplexity: expected a positive number, got {perplexity!r}")
    if isinstance(n_iter, bool) or not isinstance(n_iter, (int, np.integer)) or n_iter < 250:
        raise MusictagError(f"tsne.n_iter: expected an integer >= 250, got {n_iter!r}")
    points = np.asarray(points, dtype=np.float32)
    perplexity = float(min(perplexity, max(1.0, (len(points) - 1) / 3)))
    n_jobs = int(n_jobs) or os.cpu_count() or 1
    if implementation == "sklearn":
        from sklearn.manifold import TSNE

        model = TSNE(perplexity=perplexity, metric=metric, init="pca", learning_rate="auto", max_iter=int(n_iter),
                     random_state=seed, n_jobs=n_jobs)
        return model.fit_transform(points).astype(np.float64), float(model.kl_divergence_)
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


def colour_by_top_tag(probabilities, tag_names: list[str], n_coloured: int = 12) -> Colouring:
    """Colour the `n_coloured` most common top predicted tags (ties: tag order), the rest grey."""
    if isinstance(n_coloured, bool) or not isinstance(n_coloured, (int, np.integer)) \
            or not 1 <= n_coloured <= len(PALETTE):
        raise MusictagError(f"tsne.n_coloured_tags: expected an integer from 1 to {len(PALETTE)}, got {n_coloured!r}")
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
    path = resolve(audio_path)
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


def write_html(path: Path, payload: dict, title: str) -> None:
    """The self-contained interactive page (template below) around `payload`."""
    page = (_TEMPLATE.replace("__TITLE__", html.escape(title))
            .replace("__STYLE__", _STYLE).replace("__SCRIPT__", _SCRIPT).replace("__DATA__", page_json(payload)))
    write_text(path, page)


def build_map(predictions, manifest, out_dir: str | Path, *, split: str = "test", max_songs: int = 10000,
              implementation: str = "opentsne", perplexity: float = 30.0, metric: str = "euclidean",
              seed: int = 0, k: int = 10, features: str = "tags", n_coloured_tags: int = 12,
              embed_audio_max_songs: int = 50, n_jobs: int = 2, n_iter: int = 1000) -> dict:
    """Write out_dir/map.png and out_dir/map.html for the songs of `split`; a summary for metrics/.

    `predictions` (musictag.predictions.Predictions, or the path of its .npz) gives the songs' predicted
    tags; `manifest` (musictag.manifest.Manifest, or its CSV path) their artist, title and audio.
    """
    from musictag.recommend import FEATURES, RecommendIndex, read_inputs

    if features not in FEATURES:
        raise MusictagError(f"recommend.features: expected one of {list(FEATURES)}, got {features!r}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise MusictagError(f"tsne.k: expected a positive integer, got {k!r}")
    predictions, manifest = read_inputs(predictions, manifest)
    out_dir = resolve(out_dir)
    if isinstance(embed_audio_max_songs, bool) or not isinstance(embed_audio_max_songs, (int, np.integer)) \
            or embed_audio_max_songs < 0:
        raise MusictagError(f"tsne.embed_audio_max_songs: expected an integer >= 0, got {embed_audio_max_songs!r}")
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
    title = f"t-SNE of {n} {split} songs' predicted tags"
    plot_png(coordinates, colouring, out_dir / "map.png", title + ", coloured by top tag")

    index = RecommendIndex.build(predictions.take(rows), features=features, exact_max_songs=n)
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
        "kl_divergence": round(kl_divergence, 4),
        "neighbourhood_kept_at_10": round(neighbourhood_kept(probabilities, coordinates, 10, seed=seed), 4),
        "tsne_seconds": round(tsne_seconds, 1),
        "audio": "embedded" if embed_audio else "linked",
        "missing_audio": int(sum(not resolve(a).is_file() for a in clips["audio_path"].tolist())),
        "coloured_tags": [tag for tag, _, _ in colouring.legend],
    }


# --- the page ----------------------------------------------------------------------------------------

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>__TITLE__</title>
<style>__STYLE__</style>
</head>
<body>
<header>
  <h1>__TITLE__</h1>
  <div class="search">
    <input id="search" type="search" placeholder="Find a song by artist or title" autocomplete="off"
           aria-label="Find a song by artist or title">
    <span id="search-status" role="status"></span>
  </div>
</header>
<main>
  <div id="map-wrap">
    <canvas id="map" aria-label="t-SNE map of songs; hover for tags, click to play"></canvas>
    <div id="tooltip" hidden></div>
    <button id="reset" type="button" title="Show the whole map">Reset view</button>
  </div>
  <aside>
    <ol id="search-results"></ol>
    <section id="details" aria-live="polite">
      <p class="hint">Hover over a point to see its song and top tags. Click it to play the clip and
      list its nearest songs. Scroll to zoom, drag to pan.</p>
    </section>
    <section id="legend-box">
      <h2>Top predicted tag</h2>
      <ul id="legend"></ul>
    </section>
  </aside>
</main>
<script type="application/json" id="map-data">__DATA__</script>
<script>__SCRIPT__</script>
</body>
</html>
"""

_STYLE = """
* { box-sizing: border-box; }
html, body { height: 100%; margin: 0; }
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; background: #fafafa;
       display: flex; flex-direction: column; }
header { display: flex; align-items: center; gap: 1.5em; padding: 0.5em 1em; border-bottom: 1px solid #ddd;
         background: #fff; flex-wrap: wrap; }
h1 { font-size: 1.15em; margin: 0; font-weight: 600; }
h2 { font-size: 1em; margin: 0.8em 0 0.4em; }
.search { display: flex; align-items: center; gap: 0.6em; }
#search { width: 22em; padding: 0.35em 0.6em; font: inherit; border: 1px solid #bbb; border-radius: 4px; }
#search-status { color: #666; }
main { flex: 1; display: flex; min-height: 0; }
#map-wrap { position: relative; flex: 1; min-width: 0; }
#map { width: 100%; height: 100%; display: block; cursor: crosshair; background: #fff; }
#map.dragging { cursor: grabbing; }
#reset { position: absolute; right: 0.8em; top: 0.8em; font: inherit; padding: 0.2em 0.6em; }
#tooltip { position: absolute; pointer-events: none; background: rgba(255,255,255,0.96); border: 1px solid #999;
           border-radius: 4px; padding: 0.4em 0.6em; box-shadow: 0 2px 6px rgba(0,0,0,0.15); max-width: 22em;
           font-size: 13px; z-index: 2; }
#tooltip .artist, #details .artist { color: #555; }
#tooltip .song-title, #details .song-title { font-weight: 600; }
aside { width: 24em; overflow-y: auto; border-left: 1px solid #ddd; background: #fff; padding: 0.6em 1em; }
ol, ul { padding-left: 1.4em; margin: 0.3em 0; }
#search-results:empty { display: none; }
#search-results { border-bottom: 1px solid #eee; padding-bottom: 0.5em; }
button.song { font: inherit; background: none; border: none; padding: 0.1em 0; color: #0645ad; cursor: pointer;
              text-align: left; }
button.song:hover, button.song:focus { text-decoration: underline; }
.tags { list-style: none; padding: 0; margin: 0.2em 0; }
.tags li { display: flex; justify-content: space-between; gap: 1em; }
.tags .score, .distance { color: #666; font-variant-numeric: tabular-nums; }
audio { width: 100%; margin: 0.5em 0; }
.hint { color: #666; }
#legend { list-style: none; padding: 0; }
#legend li { display: flex; align-items: center; gap: 0.5em; }
.swatch { width: 0.9em; height: 0.9em; border-radius: 50%; display: inline-block; flex: none; }
.highlight { background: #fff3b0; }
"""

_SCRIPT = r"""
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("map-data").textContent);
  var S = data.songs, n = S.id.length;
  var canvas = document.getElementById("map"), ctx = canvas.getContext("2d");
  var wrap = document.getElementById("map-wrap"), tooltip = document.getElementById("tooltip");
  var details = document.getElementById("details"), searchBox = document.getElementById("search");
  var results = document.getElementById("search-results"), status = document.getElementById("search-status");
  var colourOf = S.colour.map(function (c) { return c >= 0 ? data.legend[c].colour : data.other.colour; });
  var order = [];  // grey songs first, so coloured ones are drawn on top
  for (var i = 0; i < n; i++) if (S.colour[i] < 0) order.push(i);
  for (i = 0; i < n; i++) if (S.colour[i] >= 0) order.push(i);
  var lower = S.artist.map(function (a, j) { return (a + " \u2014 " + S.title[j]).toLowerCase(); });
  var view = { cx: 0.5, cy: 0.5, zoom: 1 }, width = 0, height = 0;
  var state = { hovered: -1, selected: -1, highlighted: -1, matches: [] };
  var radius = Math.max(2, Math.min(6, 120 / Math.sqrt(n)));

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function label(j) { return S.artist[j] + " \u2014 " + S.title[j]; }
  var xRange = Math.max(1e-6, Math.max.apply(null, S.x) - Math.min.apply(null, S.x));
  var yRange = Math.max(1e-6, Math.max.apply(null, S.y) - Math.min.apply(null, S.y));
  function scale() { return 0.92 * Math.min(width / xRange, height / yRange) * view.zoom; }
  function screen(j) {
    var s = scale();
    return [(S.x[j] - view.cx) * s + width / 2, (view.cy - S.y[j]) * s + height / 2];
  }
  function resize() {
    var ratio = window.devicePixelRatio || 1, box = canvas.getBoundingClientRect();
    width = box.width; height = box.height;
    canvas.width = Math.max(1, Math.round(width * ratio));
    canvas.height = Math.max(1, Math.round(height * ratio));
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    draw();
  }
  function ring(j, colour, size, lineWidth) {
    var p = screen(j);
    ctx.beginPath(); ctx.arc(p[0], p[1], size, 0, 2 * Math.PI);
    ctx.lineWidth = lineWidth; ctx.strokeStyle = colour; ctx.stroke();
  }
  function draw() {
    ctx.clearRect(0, 0, width, height);
    var r = radius * Math.min(3, Math.sqrt(view.zoom));
    for (var o = 0; o < n; o++) {
      var j = order[o], p = screen(j);
      if (p[0] < -r || p[1] < -r || p[0] > width + r || p[1] > height + r) continue;
      ctx.globalAlpha = S.colour[j] < 0 ? 0.55 : 0.85;
      ctx.fillStyle = colourOf[j];
      ctx.beginPath(); ctx.arc(p[0], p[1], r, 0, 2 * Math.PI); ctx.fill();
    }
    ctx.globalAlpha = 1;
    if (state.selected >= 0) {
      var a = screen(state.selected);
      ctx.strokeStyle = "rgba(0,0,0,0.35)"; ctx.lineWidth = 1;
      S.neighbours[state.selected].forEach(function (m) {
        var b = screen(m);
        ctx.beginPath(); ctx.moveTo(a[0], a[1]); ctx.lineTo(b[0], b[1]); ctx.stroke();
        ring(m, "#333", r + 2, 1.5);
      });
    }
    state.matches.slice(0, 200).forEach(function (m) { ring(m, "#f5a800", r + 3, 2); });
    if (state.highlighted >= 0) {
      ring(state.highlighted, "#000", r + 7, 2.5);
      ring(state.highlighted, "#f5a800", r + 4, 2.5);
    }
    if (state.selected >= 0) ring(state.selected, "#d00", r + 4, 2.5);
    if (state.hovered >= 0) ring(state.hovered, "#000", r + 2, 1.5);
  }
  function nearest(x, y) {
    var best = -1, bestD = Math.pow(Math.max(8, radius + 4), 2);
    for (var j = 0; j < n; j++) {
      var p = screen(j), d = (p[0] - x) * (p[0] - x) + (p[1] - y) * (p[1] - y);
      if (d <= bestD) { bestD = d; best = j; }
    }
    return best;
  }
  function tagList(j) {
    var list = el("ul", "tags");
    S.top[j].forEach(function (pair) {
      var item = el("li");
      item.appendChild(el("span", "tag", data.tags[pair[0]]));
      item.appendChild(el("span", "score", pair[1].toFixed(2)));
      list.appendChild(item);
    });
    return list;
  }
  function songButton(j, extra) {
    var button = el("button", "song", label(j));
    button.type = "button";
    button.setAttribute("data-index", String(j));
    button.setAttribute("data-id", S.id[j]);
    button.addEventListener("click", function () { select(j, { centre: true, play: extra !== "noplay" }); });
    return button;
  }
  function showTooltip(j, x, y) {
    tooltip.textContent = "";
    tooltip.appendChild(el("div", "song-title", S.title[j]));
    tooltip.appendChild(el("div", "artist", S.artist[j]));
    tooltip.appendChild(tagList(j));
    tooltip.hidden = false;
    var left = x + 14, top = y + 14;
    if (left + tooltip.offsetWidth > width) left = x - tooltip.offsetWidth - 14;
    if (top + tooltip.offsetHeight > height) top = y - tooltip.offsetHeight - 14;
    tooltip.style.left = Math.max(0, left) + "px";
    tooltip.style.top = Math.max(0, top) + "px";
  }
  function centre(j) {
    view.cx = S.x[j]; view.cy = S.y[j]; view.zoom = Math.max(view.zoom, 3);
  }
  function select(j, options) {
    options = options || {};
    state.selected = j;
    if (options.centre) centre(j);
    details.textContent = "";
    details.setAttribute("data-id", S.id[j]);
    details.appendChild(el("div", "song-title", S.title[j]));
    details.appendChild(el("div", "artist", S.artist[j]));
    details.appendChild(tagList(j));
    var audio = el("audio");
    audio.controls = true;
    audio.preload = "none";
    audio.src = S.audio[j];
    audio.addEventListener("error", function () {
      var note = details.querySelector(".audio-error") ||
        details.insertBefore(el("p", "hint audio-error"), audio.nextSibling);
      note.textContent = "This clip cannot be played here.";
    });
    details.appendChild(audio);
    if (options.play !== false) {
      var playing = audio.play();
      if (playing && playing.catch) playing.catch(function () { /* autoplay refused: the controls remain */ });
    }
    details.appendChild(el("h2", null, "Nearest songs (cosine distance)"));
    var list = el("ol");
    list.id = "neighbours";
    S.neighbours[j].forEach(function (m, rank) {
      var item = el("li");
      item.appendChild(songButton(m));
      item.appendChild(document.createTextNode(" "));
      item.appendChild(el("span", "distance", S.distances[j][rank].toFixed(3)));
      list.appendChild(item);
    });
    details.appendChild(list);
    draw();
  }
  function search(text) {
    var query = String(text || "").trim().toLowerCase();
    results.textContent = "";
    state.matches = [];
    state.highlighted = -1;
    if (query) {
      for (var j = 0; j < n; j++) if (lower[j].indexOf(query) >= 0) state.matches.push(j);
      status.textContent = state.matches.length === 1 ? "1 match" : state.matches.length + " matches";
      state.matches.slice(0, 20).forEach(function (m) {
        var item = el("li");
        item.appendChild(songButton(m));
        results.appendChild(item);
      });
      if (state.matches.length) {
        state.highlighted = state.matches[0];
        centre(state.highlighted);
        results.firstChild.classList.add("highlight");
      }
    } else {
      status.textContent = "";
    }
    draw();
    return state.matches.map(function (m) { return S.id[m]; });
  }
  function legend() {
    var box = document.getElementById("legend");
    data.legend.forEach(function (entry) {
      var item = el("li"), swatch = el("span", "swatch");
      swatch.style.background = entry.colour;
      item.appendChild(swatch);
      item.appendChild(el("span", null, entry.tag + " (" + entry.count + ")"));
      box.appendChild(item);
    });
    if (data.other.count) {
      var item = el("li"), swatch = el("span", "swatch");
      swatch.style.background = data.other.colour;
      item.appendChild(swatch);
      item.appendChild(el("span", null, "other (" + data.other.count + ")"));
      box.appendChild(item);
    }
  }

  var drag = null;
  canvas.addEventListener("mousedown", function (e) {
    drag = { x: e.clientX, y: e.clientY, cx: view.cx, cy: view.cy, moved: false };
  });
  window.addEventListener("mouseup", function () {
    canvas.classList.remove("dragging");
    setTimeout(function () { drag = null; }, 0);
  });
  canvas.addEventListener("mousemove", function (e) {
    var box = canvas.getBoundingClientRect(), x = e.clientX - box.left, y = e.clientY - box.top;
    if (drag && (e.buttons & 1)) {
      var dx = e.clientX - drag.x, dy = e.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) { drag.moved = true; canvas.classList.add("dragging"); }
      if (drag.moved) {
        view.cx = drag.cx - dx / scale(); view.cy = drag.cy + dy / scale();
        tooltip.hidden = true; draw(); return;
      }
    }
    var j = nearest(x, y);
    if (j !== state.hovered) { state.hovered = j; draw(); }
    if (j >= 0) showTooltip(j, x, y); else tooltip.hidden = true;
  });
  canvas.addEventListener("mouseleave", function () { state.hovered = -1; tooltip.hidden = true; draw(); });
  canvas.addEventListener("click", function (e) {
    if (drag && drag.moved) return;
    var box = canvas.getBoundingClientRect(), j = nearest(e.clientX - box.left, e.clientY - box.top);
    if (j >= 0) select(j, { play: true });
  });
  canvas.addEventListener("wheel", function (e) {
    e.preventDefault();
    var box = canvas.getBoundingClientRect(), x = e.clientX - box.left, y = e.clientY - box.top;
    var s = scale(), px = view.cx + (x - width / 2) / s, py = view.cy - (y - height / 2) / s;
    view.zoom = Math.min(200, Math.max(0.5, view.zoom * Math.exp(-e.deltaY * 0.0015)));
    s = scale();
    view.cx = px - (x - width / 2) / s; view.cy = py + (y - height / 2) / s;
    draw();
  }, { passive: false });
  document.getElementById("reset").addEventListener("click", function () {
    view.cx = 0.5; view.cy = 0.5; view.zoom = 1; draw();
  });
  searchBox.addEventListener("input", function () { search(searchBox.value); });
  searchBox.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && state.matches.length) select(state.matches[0], { play: true });
  });
  window.addEventListener("resize", resize);

  legend();
  resize();
  window.tsneMap = {
    data: data, state: state, view: view, select: select, search: search,
    screenPosition: function (j) { return screen(j); },
    indexOf: function (id) { return S.id.indexOf(String(id)); }
  };
  document.body.setAttribute("data-ready", "true");
})();
"""
