"""The `musictag` command. Subcommands grow with the pipeline; each is a thin call into the library."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

from musictag import __version__
from musictag.datasets.adapters import DATASETS
from musictag.datasets.manifest import Manifest
from musictag.errors import MusictagError, run_main
from musictag.paths import DATA_DIR, REPO_ROOT, resolve

MODEL_HELP = ("a trained model's folder (default: the pipeline's, %(default)s), a published tagger: msd-crnn, "
              "msd-cnn (Choi et al.'s MSD taggers, last.fm's 50 tags), or an artifact of dvc.yaml: tagger, "
              "tagger@v1.0.0 (a registered version, fetched once)")

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ INFO/WARNING lines drown the messages that matter


def _manifest_summary(args: argparse.Namespace) -> None:
    print(json.dumps(Manifest.read(resolve(args.manifest)).summary(), indent=2))


def _list_datasets(_: argparse.Namespace) -> None:
    for name, adapter in DATASETS.items():
        print(f"{name:12s} {(adapter.__doc__ or '').strip().splitlines()[0]}")


def _tag(args: argparse.Namespace) -> None:
    """Tags for each file, and every audio file under each folder; a file that cannot be tagged gets
    one line on stderr and the run goes on (exit status 1 at the end if any was not tagged)."""
    from musictag.audio.workers import Failure
    from musictag.inference.audio_tagging import ResultWriter, find_audio, tag_files

    tagger = _tagger(args.model)
    paths = find_audio(args.audio)
    if not paths:
        raise MusictagError(f"no audio files in {', '.join(args.audio)}")
    writer = ResultWriter(args.output, tagger.tag_names, args.k, args.per_window, tagger.name) if args.output else None
    if not writer:  # a written file names the model in every record
        print(f"tagged by {tagger.name}" + (f" (approximate: {tagger.approximate})" if tagger.approximate else ""))
    failed = []
    with writer or contextlib.nullcontext():
        for path, tagged in tag_files(tagger, paths, **_tagging_options(args)):
            if isinstance(tagged, Failure):
                failed.append((path, tagged.message(path)))
                if len(paths) > 1:  # as it happens; a single file's reason is the error line itself
                    print(failed[-1][1], file=sys.stderr)
            elif writer:
                writer.write(tagged)
            else:
                print(path)
                for i in tagged.probabilities.argsort()[::-1][: args.k]:
                    print(f"  {tagger.tag_names[i]:24s} {tagged.probabilities[i]:.3f}")
    if len(paths) == 1 and failed:
        raise MusictagError(failed[0][1])
    if failed:
        names = ", ".join(path for path, _ in failed)
        raise MusictagError(f"{len(failed)} of {len(paths)} files not tagged (reasons above): {names}")


def _tagger(model: str):
    """The Tagger of --model: a published tagger's name, a trained model's folder, else an artifact that
    dvc.yaml declares (`tagger`, `tagger@v1.0.0`; musictag.inference.artifacts)."""
    from musictag.inference.artifacts import artifact_model, is_artifact_reference
    from musictag.inference.tagger import Tagger
    from musictag.pretrained import REFERENCE_TAGGERS

    if model in REFERENCE_TAGGERS:
        return Tagger(model)
    path = resolve(model)
    if not path.exists() and is_artifact_reference(model):
        path = artifact_model(model, REPO_ROOT)
    by_weights_file = {reference.weights_file: name for name, reference in REFERENCE_TAGGERS.items()}
    return Tagger(by_weights_file.get(path.name, path))  # a fetched version of msd-crnn is its weights file


def _catalogue_model() -> str:
    """The model that tagged the recommendation catalogue: the published tagger its tagging.json names,
    else the pipeline's trained model."""
    from musictag.pretrained import REFERENCE_TAGGERS

    try:
        model = json.loads((DATA_DIR / "catalogue" / "tagging.json").read_text()).get("model")
    except (OSError, ValueError):
        model = None
    return model if model in REFERENCE_TAGGERS else str(DATA_DIR / "model")


def _report(args: argparse.Namespace) -> None:
    from musictag.evaluation.revision_report import write_report

    page = write_report(args.revisions, resolve(args.output_dir), REPO_ROOT)
    print(f"{page}\n{page.with_suffix('.md')}")


def _tagging_options(args: argparse.Namespace) -> dict:
    """How files are tagged: as the catalogue stage tags them (params.yaml's catalogue section, and the clean
    stage's rules for a usable file), but for what the command line sets."""
    from musictag.params import load_params

    catalogue, clean = load_params("catalogue"), load_params("clean")
    chosen = {key: getattr(args, key, None) for key in ("windows", "timeout_s", "memory_limit_mb")}
    return {**{key: catalogue[key] for key in chosen}, **{k: v for k, v in chosen.items() if v is not None},
            "min_duration_s": clean["min_duration_s"], "silence_dbfs": clean["silence_dbfs"]}


def _positive(text: str) -> float:
    """argparse type: a number > 0 (argparse then names the option in its one-line error)."""
    value = float(text)
    if not value > 0:
        raise ValueError(text)
    return value


def _dvc(*args: str) -> str:
    """stdout of `python -m dvc ARGS` run by this interpreter in the repository: the dvc installed beside
    musictag, whether or not a venv is activated or dvc is on PATH."""
    import importlib.util
    import subprocess
    import sys

    from musictag.paths import REPO_ROOT

    if importlib.util.find_spec("dvc") is None:
        raise MusictagError(f"dvc is not installed for {sys.executable}; install requirements.txt (`make venv`)")
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=REPO_ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise MusictagError(f"dvc {' '.join(args)} failed: {last}")
    return done.stdout


def _confidence_intervals(args: argparse.Namespace) -> None:
    from musictag.evaluation.experiments import confidence_intervals_from_experiments, format_intervals
    from musictag.params import load_params

    defaults = load_params("ci")
    source = [resolve(f) for f in args.metrics_files] if args.metrics_files else _dvc("exp", "show", "--json")
    names = [Path(f).name for f in args.metrics_files] or [Path(args.file).name]
    chosen = args.metric or (defaults["metrics"] if set(names) == {"evaluate.json"} else None)  # else every number
    table = confidence_intervals_from_experiments(source, chosen, level=args.level or defaults["level"],
                                                  metrics_file=args.file)
    print(format_intervals(table))


def _songs(ids_and_distances: list[tuple[str, float | None]]) -> None:
    """Print songs with artist and title from the recommendation catalogue."""
    from musictag.inference.catalogue import read_songs

    clips = read_songs(DATA_DIR / "catalogue")
    for position, (song_id, distance) in enumerate(ids_and_distances, start=1):
        artist, title = clips.loc[song_id, ["artist", "title"]] if song_id in clips.index else ("?", "?")
        shown = f"{distance:.3f}  " if distance is not None else ""
        print(f"{position:3d}. {shown}{song_id}  {artist} - {title}")


def _recommend_index():
    from musictag.inference.recommendation import RecommendIndex

    return RecommendIndex.load(DATA_DIR / "recommend" / "index.npz")


def _similar(args: argparse.Namespace) -> None:
    index = _recommend_index()
    if _is_audio_file(args.song_id, index):
        _songs(index.similar_to(_song_vector(args.song_id, index, args), args.k))
    else:
        _songs(index.similar(args.song_id, args.k))


def _playlist(args: argparse.Namespace) -> None:
    index = _recommend_index()
    seed = _song_vector(args.seed, index, args) if _is_audio_file(args.seed, index) else args.seed
    _songs([(song_id, None) for song_id in index.playlist(seed, args.length, lookahead=not args.greedy)])


def _is_audio_file(song: str, index) -> bool:
    """Whether a song argument names an audio file to tag rather than a catalogue id: it is not an id of
    the index (a folder catalogue's ids are paths such as `album/song.flac`) and it is an existing file
    or has an audio extension (so that a missing file is reported as one)."""
    from musictag.audio.decoding import AUDIO_EXTENSIONS

    if song in index:
        return False
    return Path(song).is_file() or Path(song).suffix.lower() in AUDIO_EXTENSIONS


def _song_vector(path: str, index, args: argparse.Namespace):
    """The vector of an audio file outside the catalogue in `index`'s space, as the catalogue stage makes a
    song's: tagged by the catalogue's model (or --model) and by each published tagger the index's features
    join, then projected as the index's songs were (RecommendIndex.vectors_of)."""
    import numpy as np

    from musictag.audio.workers import Failure
    from musictag.inference.audio_tagging import tag_files
    from musictag.inference.predictions import Predictions
    from musictag.pretrained import reference_names

    tagger = _tagger(args.model or _catalogue_model())
    references = reference_names(index.features)
    ((_, tagged),) = tag_files(tagger, [path], **_tagging_options(args), references=references)
    if isinstance(tagged, Failure):
        raise MusictagError(tagged.message(path))
    query = Predictions(np.array([path]), np.array(["query"]), tagged.probabilities[np.newaxis],
                        tagged.embedding[np.newaxis], tagger.tag_names,
                        {name: vector[np.newaxis] for name, vector in tagged.reference_embeddings.items()})
    return index.vectors_of(query)[0]


def _paper_cost(args: argparse.Namespace) -> None:
    """The expected wall time of `dvc repro paper/dvc.yaml` under each recipe, from the examples/s its last runs
    measured (metrics/paper/runs/, in git) and the training clips of the shards (metrics/shards_details.json)."""
    from musictag.evaluation.paper.runs import RECIPES, describe_cost, expected_seconds
    from musictag.params import load_params
    from musictag.paths import METRICS_DIR

    params = load_params()
    paper, patience = params["paper"], params["train"]["early_stopping_patience"]
    max_epochs = args.max_epochs or paper["max_epochs"]
    runs: dict[str, list[dict]] = {}
    for path in sorted((METRICS_DIR / "paper" / "runs").glob("*.json")):
        run = json.loads(path.read_text())
        if run.get("examples_per_s"):
            runs.setdefault(run["model"], []).append(run)
    measured = {model: {key: sum(r[key] for r in mine) / len(mine) for key in
                        ("examples_per_s", "epoch_time_s", "train_time_s")} | {"hardware": mine[0]["hardware"]}
                for model, mine in runs.items()}  # the mean over the architecture's runs
    try:
        train_examples = json.loads((METRICS_DIR / "shards_details.json").read_text())["splits"]["train"]["n_examples"]
    except (OSError, ValueError, KeyError):
        raise MusictagError(f"{METRICS_DIR / 'shards_details.json'}: no shards summary; run `dvc repro shards` first") from None
    for recipe in sorted(RECIPES, key=lambda r: r != paper["recipe"]):
        chosen = " (params.yaml's paper.recipe)" if recipe == paper["recipe"] else ""
        print(f"recipe {recipe}{chosen}, {len(paper['seeds'])} seeds, {train_examples} training clips: "
              + describe_cost(expected_seconds(measured, paper["architectures"], len(paper["seeds"]), recipe,
                                               max_epochs, patience, train_examples)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="musictag", description=__doc__)
    parser.add_argument("--version", action="version", version=f"musictag {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    summary = commands.add_parser("manifest", help="clips, tags and splits of a manifest")
    summary.add_argument("manifest", nargs="?", default=str(DATA_DIR / "manifest.csv"))
    summary.set_defaults(run=_manifest_summary)
    datasets = commands.add_parser("datasets", help="list the dataset adapters data.source can name")
    datasets.set_defaults(run=_list_datasets)
    tag = commands.add_parser("tag", help="top tags of audio files or folders (any length, any format librosa reads)")
    tag.add_argument("audio", nargs="+", help="audio files, and folders searched recursively for them")
    tag.add_argument("-k", type=int, default=5, help="tags to print per file")
    tag.add_argument("--windows", choices=["all", "middle"], default="all",
                     help="all: the whole track in 29.12 s windows, averaged; middle: the middle window only")
    tag.add_argument("--output", help="write results to this .jsonl or .csv (path, top tags, every probability)")
    tag.add_argument("--per-window", action="store_true", help="with --output: a timeline, one entry per window")
    tag.add_argument("--model", default=str(DATA_DIR / "model"), help=MODEL_HELP)
    tag.add_argument("--timeout-s", type=_positive, help="per file: slower decoding is given up "
                                                          "(default: params.yaml catalogue.timeout_s)")
    tag.add_argument("--memory-limit-mb", type=_positive,
                     help="per file, for decoding the whole track (about 250 MB for 10 minutes at 48 kHz; "
                          "default: params.yaml catalogue.memory_limit_mb)")
    tag.set_defaults(run=_tag)
    similar = commands.add_parser("similar", help="the catalogue's nearest songs to a song (predicted tags)")
    similar.add_argument("song_id", help="a catalogue song id, or an audio file (tagged first, then searched)")
    similar.add_argument("-k", type=int, default=10)
    playlist = commands.add_parser("playlist", help="a smooth playlist from a seed song, no repeats")
    playlist.add_argument("--seed", required=True, help="song id to start from, or an audio file")
    playlist.add_argument("--length", type=int, default=20)
    playlist.add_argument("--greedy", action="store_true", help="nearest unplayed song each step, no look-ahead")
    for command in (similar, playlist):  # for a seed that is an audio file
        command.add_argument("--model", help="the model that tags the file: a trained model's folder, msd-crnn, "
                                              "msd-cnn or an artifact of dvc.yaml (default: the one that tagged the catalogue, whose vectors "
                                              "the file's are compared with)")
        command.add_argument("--windows", choices=["all", "middle"],
                             help="the file's windows to tag: middle or all, averaged (default: as the catalogue "
                                  "is tagged, params.yaml catalogue.windows)")
    similar.set_defaults(run=_similar)
    playlist.set_defaults(run=_playlist)
    ci = commands.add_parser("ci", help="mean and Student-t confidence interval of metrics over N runs "
                                        "(dvc experiments, or metrics JSON files given here)")
    ci.add_argument("metrics_files", nargs="*", help="one metrics/evaluate.json per run; default: dvc exp show")
    ci.add_argument("--metric", action="append", help="dotted metric name or pattern (repeatable)")
    ci.add_argument("--level", type=float, help="confidence level, default params.yaml ci.level")
    ci.add_argument("--file", default="metrics/evaluate.json",
                    help="each experiment's metrics file to read, e.g. metrics/shift.json (default %(default)s; "
                         "its metrics: params.yaml ci.metrics for evaluate.json, else every number)")
    ci.set_defaults(run=_confidence_intervals)
    report = commands.add_parser("report", help="Markdown and self-contained HTML comparison of revisions or "
                                                "experiments: metrics and params that differ, every plot overlaid")
    report.add_argument("revisions", nargs="*", metavar="REV",
                        help="commits, branches, tags or experiment names; none: HEAD against the workspace; one: it "
                             "against the workspace; more: the first against each other")
    report.add_argument("-o", "--output-dir", default="report", help="folder written whole (default %(default)s/)")
    report.set_defaults(run=_report)
    cost = commands.add_parser("paper-cost", help="expected wall time of `dvc repro paper/dvc.yaml`, per recipe")
    cost.add_argument("--max-epochs", type=int, help="the converged recipe's cap (default: params.yaml paper.max_epochs)")
    cost.set_defaults(run=_paper_cost)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    run_main(lambda: args.run(args))


if __name__ == "__main__":
    main()
