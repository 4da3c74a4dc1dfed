"""Dataset adapters: every catalogue becomes one canonical manifest (musictag.datasets.manifest).

Each adapter reads its dataset's own tag and split files; `DATASETS` is the registry `data.source` picks
from. A missing or malformed file stops with one line naming it (musictag.files.reading).
"""
from __future__ import annotations

import csv
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from musictag.datasets.manifest import BASE_COLUMNS, SPLITS, Manifest, grouped_split
from musictag.errors import MusictagError
from musictag.files import reading


def build_embedded(**options) -> Manifest:
    """The default catalogue: real scores from music21's corpus rendered to audio (musictag.datasets.corpus)."""
    from musictag.datasets.corpus import build_corpus  # music21 is slow to import; only this adapter needs it

    return build_corpus(**options)


# --- shared readers: every parse or I/O fault becomes one MusictagError line naming the file ---------------

def _read_lines(path) -> list[str]:
    """Values of a one-per-line text file (LF or CRLF). A blank line inside would silently misalign
    files that are read line for line together, so it is an error; trailing blank lines are not."""
    with reading(path):
        lines = [line.strip() for line in Path(path).read_text(encoding="utf-8-sig").splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if "" in lines:
        raise MusictagError(f"{path}: line {lines.index('') + 1} is blank")
    return lines


def _read_tag_list(path) -> list[str]:
    """A tag vocabulary file, one tag per line, in the dataset's own order and spelling."""
    tags = _read_lines(path)
    if not tags:
        raise MusictagError(f"{path}: lists no tags")
    _require_unique(tags, path, "tag")
    return tags


def _read_rows(path, delimiter: str) -> list[tuple[int, list[str]]]:
    """(line number, fields) of every non-blank row; csv undoes the quoting and CRLF endings, and
    utf-8-sig drops the byte-order mark that Excel puts at the start of a CSV."""
    with reading(path), open(path, newline="", encoding="utf-8-sig") as file:
        reader = csv.reader(file, delimiter=delimiter)
        rows = [(reader.line_num, row) for row in reader if row]
    if not rows:
        raise MusictagError(f"{path}: file is empty")
    return rows


def _load_npy(path) -> np.ndarray:
    """np.load of a plain (pickle-free) array; a non-npy or truncated file is named, not traced back."""
    with reading(path), open(path, "rb") as file:
        if file.read(6) != b"\x93NUMPY":
            raise MusictagError(f"{path}: not an .npy file")
        file.seek(0)
        return np.load(file, allow_pickle=False)


class _NoGlobalsUnpickler(pickle.Unpickler):
    """The split pickles hold only lists of strings; refusing globals means loading one runs no code."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only plain lists are expected")


def _load_py2_pickle(path):
    """A Python 2 cPickle (protocol 0, py2 `str`); latin1 maps those byte strings to `str` losslessly."""
    with reading(path), open(path, "rb") as file:
        return _NoGlobalsUnpickler(file, encoding="latin1").load()


def _require_unique(values, where, what: str) -> None:
    seen = set()
    for value in values:
        if value in seen:
            raise MusictagError(f"{where}: {what} '{value}' appears more than once")
        seen.add(value)


def _manifest(where, clips: dict[str, list[str]], tag_names: Sequence[str], targets) -> Manifest:
    """Assemble the Manifest, naming `where` (the input) if two clips share an id."""
    _require_unique(clips["id"], where, "clip id")
    frame = pd.DataFrame({column: clips[column] for column in BASE_COLUMNS}, dtype=str)
    targets = np.asarray(targets, dtype=np.uint8).reshape(len(frame), len(tag_names))
    return Manifest(frame, list(tag_names), targets)


def _targets_from_tag_lists(tag_lists: list[list[str]], tag_names: Sequence[str]) -> np.ndarray:
    """Binary (n_clips, n_tags) matrix from each clip's tag names (all must be in `tag_names`)."""
    column_of = {tag: i for i, tag in enumerate(tag_names)}
    targets = np.zeros((len(tag_lists), len(tag_names)), dtype=np.uint8)
    for row, tags in enumerate(tag_lists):
        targets[row, [column_of[tag] for tag in tags]] = 1
    return targets


def _audio_path(audio_dir, relative_path: str) -> str:
    """Where the clip's audio should be; existence is checked later, by the clean stage."""
    return os.path.join(os.fspath(audio_dir), relative_path)


# --- folder: your own audio plus a CSV ------------------------------------------------------------------------


def folder(audio_dir, tags_csv, split_column, id_column, path_column, artist_column, title_column, tags_column,
           tag_separator, seed, split_fractions) -> Manifest:
    """A folder of your own audio plus a CSV: path (relative to audio_dir) and separator-joined tags are
    required; id (default: path without extension), artist, title and split are optional. Without a split
    column, splits are drawn by artist (seeded). The vocabulary is the sorted set of tags seen."""
    rows = _read_rows(tags_csv, delimiter=",")
    (_, header), data = rows[0], rows[1:]
    header = [name.strip() for name in header]
    _require_unique(header, tags_csv, "column")
    for line, row in data:
        if len(row) != len(header):
            raise MusictagError(f"{tags_csv}: line {line} has {len(row)} fields but the header has {len(header)}")
    lines = [line for line, _ in data]

    def column(name, param: str, required: bool) -> list[str] | None:
        if name and name in header:
            index = header.index(name)
            return [row[index].strip() for _, row in data]
        if required:
            raise MusictagError(f"{tags_csv}: no column '{name}' (set data.folder.{param} to the right name)")
        return None

    paths = column(path_column, "path_column", required=True)
    for line, path in zip(lines, paths):
        if not path:
            raise MusictagError(f"{tags_csv}: line {line} has an empty '{path_column}'")
    tag_cells = column(tags_column, "tags_column", required=True)
    tag_lists = [[tag.strip() for tag in cell.split(tag_separator) if tag.strip()] for cell in tag_cells]
    given_ids = column(id_column, "id_column", required=False) or [""] * len(data)
    ids = [id_ or os.path.splitext(path)[0] for id_, path in zip(given_ids, paths)]  # default: path sans extension
    artists = column(artist_column, "artist_column", required=False) or [""] * len(data)
    titles = column(title_column, "title_column", required=False) or [""] * len(data)
    splits = column(split_column, "split_column", required=False)
    if splits is None:
        groups = [f"artist:{artist}" if artist else f"id:{id_}" for artist, id_ in zip(artists, ids)]
        splits = grouped_split(groups, split_fractions, seed)
    for line, split in zip(lines, splits):
        if split not in SPLITS:
            raise MusictagError(f"{tags_csv}: line {line} has split '{split}'; use one of {', '.join(SPLITS)}")
    tag_names = sorted({tag for tags in tag_lists for tag in tags})
    clips = {
        "id": ids,
        "audio_path": [_audio_path(audio_dir, path) for path in paths],
        "split": splits,
        "artist": artists,
        "title": titles,
    }
    return _manifest(tags_csv, clips, tag_names, _targets_from_tag_lists(tag_lists, tag_names))


# --- MSD: Choi's last.fm top-50 split -------------------------------------------------------------------------

MSD_TOP50_TAGS = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock", "soul",
    "indie rock", "Mellow", "electronica", "80s", "folk", "90s", "chill", "instrumental", "punk", "oldies",
    "blues", "hard rock", "ambient", "acoustic", "experimental", "female vocalist", "guitar", "Hip-Hop", "70s",
    "party", "country", "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal",
    "Progressive rock", "60s", "rnb", "indie pop", "sad", "House", "happy",
)  # the order of the label columns in {split}_y.npy (keunwoochoi/MSD_split_for_tagging tags.py)
MSD_TAG_LIST_FILES = ("50tagList.txt", "top50_tags.txt")


def _msd_tag_names(split_dir: Path, tags_file) -> tuple[list[str], str]:
    """The 50 tag names and where they came from: tags_file, a list file in split_dir, or the built-in order."""
    if tags_file:  # None or "" (params.yaml): not given
        return _read_tag_list(tags_file), str(tags_file)
    for name in MSD_TAG_LIST_FILES:
        if (split_dir / name).is_file():
            return _read_tag_list(split_dir / name), str(split_dir / name)
    return list(MSD_TOP50_TAGS), "MSD_TOP50_TAGS"


def _msd_keep_ids(keep_lists) -> set[str] | None:
    """Union of the ids in jongpillee's filtered_list_*.cP pickles (clips of at least 29.1 s), or None."""
    if not keep_lists:  # None, "" or []: keep every clip
        return None
    keep: set[str] = set()
    for path in [keep_lists] if isinstance(keep_lists, (str, os.PathLike)) else keep_lists:
        ids = _load_py2_pickle(path)
        if not isinstance(ids, list) or not all(isinstance(id_, str) for id_ in ids):
            raise MusictagError(f"{path}: expected a pickled list of MSD ids, got {type(ids).__name__}")
        keep.update(ids)
    return keep


def _msd_labels(labels_path: Path, n_ids: int, ids_path: Path, tag_names: list[str], tags_from: str):
    """{split}_y.npy checked against its id list and the tag list: (n_ids, n_tags) of 0/1."""
    labels = _load_npy(labels_path)
    if labels.ndim != 2:
        raise MusictagError(f"{labels_path}: expected a 2-D label matrix, got shape {labels.shape}")
    if labels.shape[0] != n_ids:
        raise MusictagError(f"{labels_path}: {labels.shape[0]} label rows but {ids_path} lists {n_ids} ids")
    if labels.shape[1] != len(tag_names):
        raise MusictagError(
            f"{labels_path}: {labels.shape[1]} label columns but {len(tag_names)} tags in {tags_from}"
        )
    if labels.dtype.kind not in "biuf" or not np.isin(labels, (0, 1)).all():
        raise MusictagError(f"{labels_path}: labels must be 0/1 or bool, got dtype {labels.dtype}")
    return labels.astype(np.uint8)


MSD_TRACKS_SEPARATOR = "<SEP>"


def _msd_names(tracks_file) -> dict[str, tuple[str, str]]:
    """{track id: (artist, title)} from MSD's `unique_tracks.txt` (track id<SEP>song id<SEP>artist<SEP>title,
    one million lines), so tables and maps can name the songs."""
    path = Path(tracks_file)
    names = {}
    with reading(path):
        with open(path, encoding="utf-8", errors="replace") as file:
            for line_number, line in enumerate(file, start=1):
                fields = line.rstrip("\n").split(MSD_TRACKS_SEPARATOR)
                if len(fields) != 4:
                    raise MusictagError(f"{path}: line {line_number} has {len(fields)} '<SEP>'-separated fields, "
                                        "expected 4 (track id, song id, artist, title)")
                names[fields[0]] = (fields[2], fields[3])
    return names


def msd(split_dir, audio_dir, tags_file=None, keep_lists=None, tracks_file=None) -> Manifest:
    """Choi's MSD last.fm top-50 split (keunwoochoi/MSD_split_for_tagging): per split, line-aligned
    `{split}_x_msd_id.txt` and `{split}_x_filename.txt`, and a bool (N, 50) `{split}_y.npy`.
    Audio is the 7digital preview: the feature name with `.npy` replaced by `.clip.mp3`.
    keep_lists (optional): filtered_list_*.cP pickles; only their ids are kept (drops clips under 29.1 s).
    tracks_file (optional): MSD's unique_tracks.txt, for artists and titles; without it the artist is
    unknown (empty) and the title is the track id."""
    split_dir = Path(split_dir)
    tag_names, tags_from = _msd_tag_names(split_dir, tags_file)
    keep = _msd_keep_ids(keep_lists)
    names = _msd_names(tracks_file) if tracks_file else {}
    clips: dict[str, list[str]] = {column: [] for column in BASE_COLUMNS}
    targets = []
    for split in SPLITS:
        ids_path, names_path = split_dir / f"{split}_x_msd_id.txt", split_dir / f"{split}_x_filename.txt"
        ids, feature_names = _read_lines(ids_path), _read_lines(names_path)
        if len(feature_names) != len(ids):
            raise MusictagError(f"{names_path}: {len(feature_names)} lines but {ids_path} has {len(ids)}")
        labels = _msd_labels(split_dir / f"{split}_y.npy", len(ids), ids_path, tag_names, tags_from)
        for line, (id_, feature_name, label_row) in enumerate(zip(ids, feature_names, labels), start=1):
            if not feature_name.endswith(".npy"):
                raise MusictagError(f"{names_path}: line {line} '{feature_name}' does not end in .npy")
            if keep is not None and id_ not in keep:
                continue
            clips["id"].append(id_)
            clips["audio_path"].append(_audio_path(audio_dir, feature_name[: -len(".npy")] + ".clip.mp3"))
            clips["split"].append(split)
            artist, title = names.get(id_, ("", id_))  # not in the split files: unknown, the id stands in
            clips["artist"].append(artist)
            clips["title"].append(title)
            targets.append(label_row)
    return _manifest(split_dir, clips, tag_names, np.array(targets, dtype=np.uint8))


# --- MagnaTagATune --------------------------------------------------------------------------------------------

MTAT_TOP_N_TAGS = 50
MTAT_SPLIT_OF_FOLDER = {**dict.fromkeys("0123456789ab", "train"), "c": "valid", **dict.fromkeys("def", "test")}
MTAT_TAG_LIST_FILES = ("tags.npy", "top50_tags.txt")  # Won 2020 (spaces) or Lee 2017 (camelCase)


@dataclass
class _MtatAnnotations:
    """annotations_final.csv: one data row per clip, all 188 tag columns."""

    path: str
    clip_ids: list[str]
    mp3_paths: list[str]
    tag_names: list[str]
    flags: np.ndarray  # uint8, (n_rows, n_all_tags)


def _read_mtat_annotations(path) -> _MtatAnnotations:
    """Tab-separated, every field double-quoted, CRLF: clip_id, 188 tag flags ("0"/"1"), mp3_path."""
    rows = _read_rows(path, delimiter="\t")
    (_, header), data = rows[0], rows[1:]
    if len(header) < 3 or header[0] != "clip_id" or header[-1] != "mp3_path":
        raise MusictagError(f"{path}: header must be clip_id, the tags, mp3_path (tab-separated)")
    _require_unique(header, path, "column")
    for line, row in data:
        if len(row) != len(header):
            raise MusictagError(f"{path}: line {line} has {len(row)} fields but the header has {len(header)}")
    values = np.array([row[1:-1] for _, row in data], dtype=str).reshape(len(data), len(header) - 2)
    bad = np.argwhere(~np.isin(values, ("0", "1")))
    if len(bad):
        row, column = bad[0]
        raise MusictagError(
            f"{path}: line {data[row][0]} has '{values[row, column]}' for tag '{header[column + 1]}'; "
            "expected 0 or 1"
        )
    return _MtatAnnotations(
        path=str(path),
        clip_ids=[row[0].strip() for _, row in data],
        mp3_paths=[row[-1].strip() for _, row in data],
        tag_names=header[1:-1],
        flags=(values == "1").astype(np.uint8),
    )


def _tag_key(name: str) -> str:
    """Spelling-insensitive tag key, so Won's 'female vocal' and Lee's 'femaleVocal' both find their column."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _mtat_listed_columns(split_dir: Path, annotations: _MtatAnnotations) -> list[int]:
    """Annotation columns of the tag list a split folder ships (tags.npy or top50_tags.txt), in its order."""
    list_path = next((split_dir / n for n in MTAT_TAG_LIST_FILES if (split_dir / n).is_file()), None)
    if list_path is None:
        raise MusictagError(f"{split_dir}: has no tag list ({' or '.join(MTAT_TAG_LIST_FILES)})")
    if list_path.suffix == ".npy":
        names = _load_npy(list_path)
        if names.ndim != 1 or names.dtype.kind != "U":
            raise MusictagError(f"{list_path}: expected a 1-D array of tag names, got {names.dtype} {names.shape}")
        names = [str(name) for name in names]
        _require_unique(names, list_path, "tag")
    else:
        names = _read_tag_list(list_path)
    column_of = {_tag_key(name): i for i, name in enumerate(annotations.tag_names)}
    unmatched = [name for name in names if _tag_key(name) not in column_of]
    if unmatched:
        raise MusictagError(f"{list_path}: tag(s) {unmatched} are not columns of {annotations.path}")
    return [column_of[_tag_key(name)] for name in names]


def _mtat_top_columns(annotations: _MtatAnnotations) -> list[int]:
    """The MTAT_TOP_N_TAGS most frequent tag columns over all clips; ties keep column order."""
    counts = annotations.flags.sum(axis=0)
    return [int(i) for i in np.argsort(-counts, kind="stable")[:MTAT_TOP_N_TAGS]]


def _mtat_won_splits(split_dir: Path, annotations: _MtatAnnotations) -> list[str | None]:
    """Split of each annotation row from Won's {split}.npy, whose elements are 'ROW<tab>mp3_path'."""
    split_of_row: list[str | None] = [None] * len(annotations.clip_ids)
    for split in SPLITS:
        path = split_dir / f"{split}.npy"
        entries = _load_npy(path)
        if entries.ndim != 1 or entries.dtype.kind != "U":
            raise MusictagError(f"{path}: expected a 1-D array of 'ROW<tab>PATH' strings, got {entries.dtype}")
        for index, entry in enumerate(entries):
            row_text, tab, mp3_path = str(entry).partition("\t")
            if not tab or not row_text.isdigit():
                raise MusictagError(f"{path}: element {index} {str(entry)!r} is not 'ROW<tab>PATH'")
            row = int(row_text)
            if row >= len(split_of_row):
                raise MusictagError(
                    f"{path}: element {index} names row {row} but {annotations.path} "
                    f"has {len(split_of_row)} data rows"
                )
            if mp3_path != annotations.mp3_paths[row]:
                raise MusictagError(
                    f"{path}: element {index} says row {row} is '{mp3_path}' but {annotations.path} "
                    f"has '{annotations.mp3_paths[row]}' (wrong annotations file?)"
                )
            if split_of_row[row] is not None:
                raise MusictagError(f"{path}: row {row} is also in {split_of_row[row]}.npy")
            split_of_row[row] = split
    return split_of_row


def _mtat_artist_title(mp3_path: str) -> tuple[str, str]:
    """MTAT names are folder/artist-album-track-title-start-end.mp3, with inner hyphens turned into '_'."""
    parts = Path(mp3_path).stem.split("-")
    title = "-".join(parts[3:-2]) if len(parts) >= 6 else Path(mp3_path).stem
    return parts[0], title


def mtat(annotations_csv, audio_dir, split, split_dir=None) -> Manifest:
    """MagnaTagATune from annotations_final.csv. split='won2020': Won et al.'s split_dir/{split}.npy and the
    tag order of split_dir/tags.npy. split='folders': the classic audio-folder split (0-b train, c valid,
    d-f test) with the 50 most frequent tags, or split_dir's tag list if given. Clips with no mp3_path or in
    no split are dropped; ids are clip_ids."""
    annotations = _read_mtat_annotations(annotations_csv)
    if split == "won2020":
        split_of_row = _mtat_won_splits(Path(split_dir), annotations)
    else:
        split_of_row = [MTAT_SPLIT_OF_FOLDER.get(path[:1]) for path in annotations.mp3_paths]
    if split_dir:
        columns = _mtat_listed_columns(Path(split_dir), annotations)
    else:
        columns = _mtat_top_columns(annotations)
    keep = [row for row, (path, split_name) in enumerate(zip(annotations.mp3_paths, split_of_row))
            if path and split_name is not None]
    artists_titles = [_mtat_artist_title(annotations.mp3_paths[row]) for row in keep]
    clips = {
        "id": [annotations.clip_ids[row] for row in keep],
        "audio_path": [_audio_path(audio_dir, annotations.mp3_paths[row]) for row in keep],
        "split": [split_of_row[row] for row in keep],
        "artist": [artist for artist, _ in artists_titles],
        "title": [title for _, title in artists_titles],
    }
    tag_names = [annotations.tag_names[column] for column in columns]
    return _manifest(annotations_csv, clips, tag_names, annotations.flags[np.ix_(keep, columns)])


# --- MTG-Jamendo top-50 ---------------------------------------------------------------------------------------

JAMENDO_HEADER = ["TRACK_ID", "ARTIST_ID", "ALBUM_ID", "PATH", "DURATION", "TAGS"]
JAMENDO_FILE_SPLIT = {"train": "train", "valid": "validation", "test": "test"}  # our name -> theirs


def _read_jamendo_split(path: Path) -> list[tuple[int, list[str]]]:
    """Data rows of one split TSV: 5 fixed fields, then one tag per extra field (a variable count)."""
    rows = _read_rows(path, delimiter="\t")
    (_, header), data = rows[0], rows[1:]
    if header != JAMENDO_HEADER:
        raise MusictagError(f"{path}: header must be {' '.join(JAMENDO_HEADER)} (tab-separated)")
    for line, row in data:
        if len(row) < len(JAMENDO_HEADER):
            raise MusictagError(
                f"{path}: line {line} has {len(row)} fields; "
                f"expected {len(JAMENDO_HEADER) - 1} plus at least one tag"
            )
    return data


def mtg_jamendo(split_dir, audio_dir, split_number) -> Manifest:
    """MTG-Jamendo top-50: split_dir/split-N/autotagging_top50tags-{train,validation,test}.tsv, where
    split_dir is the repository's data/splits. The vocabulary is data/tags/top50.txt beside split_dir if
    present, else the sorted set of tags seen. Ids are TRACK_IDs, artists ARTIST_IDs (no titles exist)."""
    split_folder = Path(split_dir) / f"split-{split_number}"
    vocabulary_path = Path(split_dir).resolve().parent / "tags" / "top50.txt"
    vocabulary = _read_tag_list(vocabulary_path) if vocabulary_path.is_file() else None
    known_tags = set(vocabulary or ())
    clips: dict[str, list[str]] = {column: [] for column in BASE_COLUMNS}
    tag_lists = []
    for split, file_split in JAMENDO_FILE_SPLIT.items():
        path = split_folder / f"autotagging_top50tags-{file_split}.tsv"
        for line, row in _read_jamendo_split(path):
            track_id, artist_id, _album_id, relative_path, _duration_s, *tags = (field.strip() for field in row)
            tags = [tag for tag in tags if tag]
            unknown = [tag for tag in tags if vocabulary is not None and tag not in known_tags]
            if unknown:
                raise MusictagError(f"{path}: line {line} has tag '{unknown[0]}', which {vocabulary_path} lacks")
            clips["id"].append(track_id)
            clips["audio_path"].append(_audio_path(audio_dir, relative_path))
            clips["split"].append(split)
            clips["artist"].append(artist_id)
            clips["title"].append(track_id)
            tag_lists.append(tags)
    tag_names = vocabulary or sorted({tag for tags in tag_lists for tag in tags})
    return _manifest(split_folder, clips, tag_names, _targets_from_tag_lists(tag_lists, tag_names))


DATASETS: dict[str, Callable[..., Manifest]] = {
    "embedded": build_embedded,
    "folder": folder,
    "msd": msd,
    "mtat": mtat,
    "mtg-jamendo": mtg_jamendo,
}


def build_manifest(source: str, options: dict) -> Manifest:
    """Run the adapter named `source` with its params section (checked by musictag.params) as keyword
    arguments."""
    return DATASETS[source](**options)
