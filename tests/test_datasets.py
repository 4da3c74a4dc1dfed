"""Dataset adapters: fixtures written here in each dataset's real format, plus the shared real samples."""
from __future__ import annotations

import ast
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from musictag.datasets.adapters import (
    DATASETS,
    MSD_TOP50_TAGS,
    SPLITS,
    Manifest,
    build_manifest,
    msd,
    mtat,
    mtg_jamendo,
)
from musictag.errors import MusictagError
from musictag.params import defaults

# copied from ../shared/dataset-samples (its README.md describes each file), so a plain clone runs these tests
SAMPLES = Path(__file__).resolve().parent / "data" / "dataset-samples"
AUDIO = os.path.join("music", "audio")  # relative on purpose: audio paths must keep it as given
FOLDER = defaults("data")["folder"]  # params.yaml's column names, tag separator, seed and split fractions


def sample(*parts: str) -> Path:
    return SAMPLES.joinpath(*parts)


def one_line_error(call, *needles: str) -> str:
    """Run `call`, expect a MusictagError of one line that mentions every needle."""
    with pytest.raises(MusictagError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


def write_crlf(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(line + "\r\n" for line in lines).encode("ascii"))
    return path


def folder_options(tags_csv, **options) -> dict:
    """The folder adapter's keyword arguments: params.yaml's, with AUDIO, `tags_csv` and `options`."""
    return {**FOLDER, "audio_dir": AUDIO, "tags_csv": tags_csv, **options}


def rows_of(manifest: Manifest, tag: str) -> list[str]:
    """Ids of the clips tagged `tag`."""
    column = manifest.tag_names.index(tag)
    return list(manifest.clips["id"][manifest.targets[:, column] == 1])


def test_registry_names_every_adapter():
    assert {"folder", "msd", "mtat", "mtg-jamendo"} <= set(DATASETS)
    assert DATASETS["mtg-jamendo"] is mtg_jamendo


# --- folder ---------------------------------------------------------------------------------------------------

FOLDER_CSV = """id,path,artist,title,split,tags
a1,rock/a1.mp3,Ann,"Song, One",train,rock|loud
a2,rock/a2.wav,Ann,Two,valid, rock | soft
b1,jazz/b1.mp3,Bob,Three,test,jazz
b2,jazz/b2.mp3,Bob,Four,train,
"""


def test_folder_reads_every_column(tmp_path):
    csv_path = tmp_path / "tags.csv"
    csv_path.write_text(FOLDER_CSV)
    manifest = DATASETS["folder"](**folder_options(csv_path))
    assert list(manifest.clips["id"]) == ["a1", "a2", "b1", "b2"]
    assert list(manifest.clips["split"]) == ["train", "valid", "test", "train"]
    assert manifest.clips["title"][0] == "Song, One"
    assert manifest.clips["audio_path"][1] == os.path.join(AUDIO, "rock/a2.wav")
    assert manifest.tag_names == ["jazz", "loud", "rock", "soft"]
    assert manifest.targets.tolist() == [[0, 1, 1, 0], [0, 0, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0]]


def test_folder_accepts_excel_bom_and_crlf(tmp_path):
    csv_path = tmp_path / "tags.csv"
    csv_path.write_bytes(b"\xef\xbb\xbfid,path,tags\r\nx1,x.mp3,rock\r\n")
    manifest = DATASETS["folder"](**folder_options(csv_path))
    assert list(manifest.clips["id"]) == ["x1"] and manifest.tag_names == ["rock"]


def test_folder_defaults_id_from_path_and_draws_splits_by_artist(tmp_path):
    csv_path = tmp_path / "tags.csv"
    lines = ["path,artist,tags"] + [f"{artist}/{n}.mp3,{artist},pop" for artist in "ABCDEFGH" for n in range(3)]
    csv_path.write_text("\n".join(lines) + "\n")
    options = folder_options(csv_path, seed=3, split_fractions=[0.5, 0.25, 0.25])
    manifest = build_manifest("folder", options)
    assert manifest.clips["id"][0] == "A/0"
    assert set(manifest.clips["title"]) == {""}
    assert manifest.summary()["clips_per_split"] == {"train": 12, "valid": 6, "test": 6}
    assert (manifest.clips.groupby("artist")["split"].nunique() == 1).all()
    assert list(build_manifest("folder", options).clips["split"]) == list(manifest.clips["split"])


def test_folder_without_artist_groups_by_id(tmp_path):
    csv_path = tmp_path / "tags.csv"
    csv_path.write_text("path,tags\n" + "".join(f"{n}.mp3,pop\n" for n in range(10)))
    manifest = DATASETS["folder"](**folder_options(csv_path))
    assert manifest.summary()["clips_per_split"] == {"train": 8, "valid": 1, "test": 1}


def test_folder_errors_name_csv_and_column(tmp_path):
    csv_path = tmp_path / "tags.csv"
    csv_path.write_text("path,labels\nx.mp3,rock\n")
    one_line_error(lambda: DATASETS["folder"](**folder_options(csv_path)), str(csv_path), "'tags'", "tags_column")
    csv_path.write_text("path,tags\nx.mp3,rock,extra\n")
    one_line_error(lambda: DATASETS["folder"](**folder_options(csv_path)), str(csv_path), "line 2", "3 fields")
    csv_path.write_text("path,tags,split\nx.mp3,rock,validation\n")
    one_line_error(lambda: DATASETS["folder"](**folder_options(csv_path)), str(csv_path), "'validation'")
    csv_path.write_text("path,tags\nx.mp3,rock\nx.ogg,pop\n")
    one_line_error(lambda: DATASETS["folder"](**folder_options(csv_path)), str(csv_path), "'x'", "more than once")
    one_line_error(lambda: DATASETS["folder"](**folder_options(tmp_path / "nope.csv")), "nope.csv", "not found")


def test_build_manifest_folder_round_trips_through_write_and_read(tmp_path):
    csv_path = tmp_path / "tags.csv"
    csv_path.write_text(FOLDER_CSV.replace("a1,", "007,", 1))
    built = build_manifest("folder", folder_options(str(csv_path)))
    built.write(tmp_path / "out" / "manifest.csv")
    read = Manifest.read(tmp_path / "out" / "manifest.csv")
    assert read.clips["id"][0] == "007"
    pd.testing.assert_frame_equal(read.clips, built.clips)
    assert read.tag_names == built.tag_names
    np.testing.assert_array_equal(read.targets, built.targets)


# --- MSD ------------------------------------------------------------------------------------------------------

MSD_FIXTURE = {  # split: [(msd id, feature file name)]
    "train": [("TRAAAAK128F9318786", "5/5/5504670.npy"), ("TRAAAAW128F429D538", "3/4/3401791.npy")],
    "valid": [("TRYLROL128F931C1A7", "3/9/3974574.npy")],
    "test": [("TRAADIN128F931D672", "6/0/6010476.npy"), ("TRAADQW128F427CE68", "2/3/2351046.npy")],
}


def write_msd_fixture(split_dir: Path) -> dict[str, np.ndarray]:
    """Choi's layout: LF text lists, bool (N, 50) labels; label row i tags clip i with tag i and tag 49."""
    split_dir.mkdir(parents=True, exist_ok=True)
    labels = {}
    for split, clips in MSD_FIXTURE.items():
        (split_dir / f"{split}_x_msd_id.txt").write_text("".join(f"{id_}\n" for id_, _ in clips))
        (split_dir / f"{split}_x_filename.txt").write_text("".join(f"{name}\n" for _, name in clips))
        labels[split] = np.zeros((len(clips), 50), dtype=bool)
        labels[split][np.arange(len(clips)), np.arange(len(clips))] = True
        labels[split][:, 49] = True
        np.save(split_dir / f"{split}_y.npy", labels[split])
    return labels


def test_msd_fixture_uses_builtin_tag_order(tmp_path):
    write_msd_fixture(tmp_path / "split")
    manifest = msd(split_dir=tmp_path / "split", audio_dir=AUDIO)
    assert manifest.tag_names == list(MSD_TOP50_TAGS)
    assert manifest.tag_names[17] == "Mellow" and manifest.tag_names[33] == "Hip-Hop"
    assert list(manifest.clips["id"]) == [id_ for clips in MSD_FIXTURE.values() for id_, _ in clips]
    assert list(manifest.clips["split"]) == ["train", "train", "valid", "test", "test"]
    assert manifest.clips["audio_path"][0] == os.path.join(AUDIO, "5/5/5504670.clip.mp3")
    assert rows_of(manifest, "pop") == ["TRAAAAW128F429D538", "TRAADQW128F427CE68"]
    assert rows_of(manifest, "happy") == list(manifest.clips["id"])
    assert manifest.targets.sum() == 10
    as_params = msd(tmp_path / "split", AUDIO, tags_file="", keep_lists=[], tracks_file="")  # params.yaml: none
    pd.testing.assert_frame_equal(as_params.clips, manifest.clips)
    assert as_params.tag_names == manifest.tag_names
    np.testing.assert_array_equal(as_params.targets, manifest.targets)


def test_msd_track_metadata_names_artists_and_titles(tmp_path):
    write_msd_fixture(tmp_path / "split")
    tracks = tmp_path / "unique_tracks.txt"
    tracks.write_text("TRAAAAK128F9318786<SEP>SOBLFFE12AF72AA5BA<SEP>Adelitas Way<SEP>Scream\n"
                      "TRAADIN128F931D672<SEP>SOMZWCG12A8C13C480<SEP>Lou Reed<SEP>Femme Fatale\n"
                      "TRXXXXX128F000000<SEP>SOXX<SEP>Not In The Split<SEP>Song\n")
    clips = msd(tmp_path / "split", AUDIO, tracks_file=tracks).clips.set_index("id")
    assert tuple(clips.loc["TRAADIN128F931D672", ["artist", "title"]]) == ("Lou Reed", "Femme Fatale")
    assert tuple(clips.loc["TRAAAAW128F429D538", ["artist", "title"]]) == ("", "TRAAAAW128F429D538")  # not listed
    tracks.write_text("TRAAAAK128F9318786<SEP>Adelitas Way<SEP>Scream\n")
    one_line_error(lambda: msd(tmp_path / "split", AUDIO, tracks_file=tracks), "unique_tracks.txt", "line 1",
                   "expected 4")
    one_line_error(lambda: msd(tmp_path / "split", AUDIO, tracks_file=tmp_path / "none.txt"), "none.txt",
                   "not found")


def test_msd_tag_list_file_then_tags_file_take_precedence(tmp_path):
    write_msd_fixture(tmp_path / "split")
    listed = [f"tag{i}" for i in range(50)]
    (tmp_path / "split" / "top50_tags.txt").write_text("\n".join(listed) + "\n")
    assert msd(tmp_path / "split", AUDIO).tag_names == listed
    (tmp_path / "mine.txt").write_text("\r\n".join(reversed(listed)) + "\r\n")
    assert msd(tmp_path / "split", AUDIO, tags_file=tmp_path / "mine.txt").tag_names == listed[::-1]


def test_msd_keep_lists_reads_py2_protocol0_pickle(tmp_path):
    write_msd_fixture(tmp_path / "split")
    keep = tmp_path / "filtered_list_test.cP"  # py2 cPickle.dump(list_of_str, f) bytes, protocol 0
    keep.write_bytes(b"(lp1\nS'TRAAAAW128F429D538'\np2\naS'TRAADIN128F931D672'\np3\na.")
    manifest = msd(tmp_path / "split", AUDIO, keep_lists=[str(keep)])
    assert list(manifest.clips["id"]) == ["TRAAAAW128F429D538", "TRAADIN128F931D672"]
    assert rows_of(manifest, "pop") == ["TRAAAAW128F429D538"]  # label rows stay with their ids


def test_msd_errors_name_the_file(tmp_path):
    split_dir = tmp_path / "split"
    write_msd_fixture(split_dir)
    np.save(split_dir / "valid_y.npy", np.zeros((2, 50), dtype=bool))
    one_line_error(lambda: msd(split_dir, AUDIO), "valid_y.npy", "2 label rows", "valid_x_msd_id.txt", "1 ids")
    np.save(split_dir / "valid_y.npy", np.zeros((1, 49), dtype=bool))
    one_line_error(lambda: msd(split_dir, AUDIO), "valid_y.npy", "49 label columns")
    np.save(split_dir / "valid_y.npy", np.full((1, 50), 2))
    one_line_error(lambda: msd(split_dir, AUDIO), "valid_y.npy", "0/1")
    write_msd_fixture(split_dir)
    good = (split_dir / "test_y.npy").read_bytes()
    (split_dir / "test_y.npy").write_bytes(good[:-30])
    one_line_error(lambda: msd(split_dir, AUDIO), "test_y.npy", "cannot read")
    (split_dir / "test_y.npy").write_bytes(b"TRAADIN128F931D672\n")
    one_line_error(lambda: msd(split_dir, AUDIO), "test_y.npy", "not an .npy file")
    write_msd_fixture(split_dir)
    (split_dir / "train_x_filename.txt").write_text("5/5/5504670.npy\n")
    one_line_error(lambda: msd(split_dir, AUDIO), "train_x_filename.txt", "1 lines", "has 2")
    (split_dir / "train_x_filename.txt").write_text("5/5/5504670.mp3\n3/4/3401791.npy\n")
    one_line_error(lambda: msd(split_dir, AUDIO), "train_x_filename.txt", "line 1")
    write_msd_fixture(split_dir)
    (tmp_path / "evil.cP").write_bytes(b"cos\nsystem\n(S'true'\ntR.")
    one_line_error(lambda: msd(split_dir, AUDIO, keep_lists=tmp_path / "evil.cP"), "evil.cP", "os.system")
    (tmp_path / "cut.cP").write_bytes(b"(lp1\nS'TRAAAAW128F429D538'\np2\na")
    one_line_error(lambda: msd(split_dir, AUDIO, keep_lists=tmp_path / "cut.cP"), "cut.cP", "cannot read")
    one_line_error(lambda: msd(split_dir, AUDIO, tags_file=tmp_path / "none.txt"), "none.txt", "not found")


def test_msd_raw_sample_lacks_train_labels():
    message = one_line_error(lambda: msd(sample("msd"), AUDIO), "train_y.npy", "not found")
    assert message.startswith(str(SAMPLES / "msd" / "train_y.npy"))


def test_msd_samples_with_written_train_labels(tmp_path):
    split_dir = tmp_path / "msd"
    shutil.copytree(sample("msd"), split_dir, ignore=shutil.ignore_patterns("filtered-cP", "*.md"))
    os.chmod(split_dir, 0o755)
    train_labels = np.zeros((20, 50), dtype=bool)  # same dtype and shape as valid_y.npy / test_y.npy
    train_labels[:, 0] = True
    np.save(split_dir / "train_y.npy", train_labels)
    manifest = msd(split_dir, AUDIO)
    assert manifest.tag_names == list(MSD_TOP50_TAGS)  # from top50_tags.txt, the same order as tags.py
    assert manifest.summary()["clips_per_split"] == {"train": 20, "valid": 20, "test": 20}
    for split in ("valid", "test"):
        part = manifest.split(split)
        assert list(part.clips["id"]) == (split_dir / f"{split}_x_msd_id.txt").read_text().split()
        np.testing.assert_array_equal(part.targets, np.load(sample("msd", f"{split}_y.npy")))
    assert manifest.split("test").clips["audio_path"][6] == os.path.join(AUDIO, "3/3/332272.clip.mp3")
    kept = msd(split_dir, AUDIO, keep_lists=sample("msd", "filtered-cP", "filtered_list_test.cP"))
    assert kept.summary()["clips_per_split"] == {"train": 0, "valid": 0, "test": 20}


# --- MagnaTagATune --------------------------------------------------------------------------------------------

MTAT_TAGS = ["no voice", "guitar", "female vocal", "classical", "rock", "beat"]
MTAT_ROWS = [  # clip_id, flags in MTAT_TAGS order, mp3_path
    ("2", "001100", "f/artist_a-album-01-first_song-0-29.mp3"),
    ("6", "010010", "0/artist_b-album-02-second-29-58.mp3"),
    ("10", "100010", "c/artist_c-album-03-third-0-29.mp3"),
    ("11", "000101", "b/artist_d-album-04-fourth-0-29.mp3"),
    ("12", "010000", ""),  # no audio: dropped
    ("15", "010011", "d/artist_e-album-05-fifth-58-87.mp3"),
]


def write_mtat_annotations(path: Path, rows=MTAT_ROWS) -> Path:
    """annotations_final.csv layout: tab-separated, every field double-quoted, CRLF after every line."""
    quoted = lambda fields: "\t".join(f'"{field}"' for field in fields)  # noqa: E731
    lines = [quoted(["clip_id", *MTAT_TAGS, "mp3_path"])]
    lines += [quoted([clip_id, *flags, mp3_path]) for clip_id, flags, mp3_path in rows]
    return write_crlf(path, lines)


def test_mtat_folders_split_with_top_tags_by_frequency(tmp_path):
    csv_path = write_mtat_annotations(tmp_path / "annotations_final.csv")
    manifest = mtat(csv_path, AUDIO, split="folders")
    assert list(manifest.clips["id"]) == ["2", "6", "10", "11", "15"]
    assert list(manifest.clips["split"]) == ["test", "train", "valid", "train", "test"]
    # counts over all rows, the dropped one too: guitar 3, rock 3, classical 2, beat 2, no voice 1,
    # female vocal 1; ties keep column order
    assert manifest.tag_names == ["guitar", "rock", "classical", "beat", "no voice", "female vocal"]
    assert manifest.targets[0].tolist() == [0, 0, 1, 0, 0, 1]
    assert manifest.targets[4].tolist() == [1, 1, 0, 1, 0, 0]
    assert manifest.clips["audio_path"][2] == os.path.join(AUDIO, "c/artist_c-album-03-third-0-29.mp3")
    assert (manifest.clips["artist"][0], manifest.clips["title"][0]) == ("artist_a", "first_song")


def test_mtat_won2020_split_and_tag_order(tmp_path):
    csv_path = write_mtat_annotations(tmp_path / "annotations_final.csv")
    won = tmp_path / "won2020"
    won.mkdir()
    np.save(won / "tags.npy", np.array(["rock", "female vocal", "guitar"]))
    entries = {"train": [1], "valid": [2, 5], "test": [0]}  # row 3 ('11') is in no split: dropped
    for split, rows in entries.items():
        np.save(won / f"{split}.npy", np.array([f"{row}\t{MTAT_ROWS[row][2]}" for row in rows]))
    manifest = mtat(csv_path, AUDIO, split="won2020", split_dir=won)
    assert manifest.tag_names == ["rock", "female vocal", "guitar"]
    assert list(manifest.clips["id"]) == ["2", "6", "10", "15"]
    assert list(manifest.clips["split"]) == ["test", "train", "valid", "valid"]
    assert manifest.targets.tolist() == [[0, 1, 0], [1, 0, 1], [1, 0, 0], [1, 0, 1]]


def test_mtat_lee_camelcase_tag_list_maps_to_header_spelling(tmp_path):
    csv_path = write_mtat_annotations(tmp_path / "annotations_final.csv")
    (tmp_path / "lee").mkdir()
    (tmp_path / "lee" / "top50_tags.txt").write_text("femaleVocal\nnoVoice\n")
    manifest = mtat(csv_path, AUDIO, split="folders", split_dir=tmp_path / "lee")
    assert manifest.tag_names == ["female vocal", "no voice"]
    assert rows_of(manifest, "no voice") == ["10"]


def test_mtat_errors_name_the_file(tmp_path):
    csv_path = write_mtat_annotations(tmp_path / "annotations_final.csv")
    won = tmp_path / "won2020"
    won.mkdir()
    np.save(won / "tags.npy", np.array(["rock", "male vocal"]))
    for split in SPLITS:
        np.save(won / f"{split}.npy", np.array([f"0\t{MTAT_ROWS[0][2]}"] if split == "test" else [], dtype="<U60"))

    def won2020():
        return mtat(csv_path, AUDIO, split="won2020", split_dir=won)

    one_line_error(won2020, "tags.npy", "male vocal", str(csv_path))
    np.save(won / "tags.npy", np.array(["rock"]))
    np.save(won / "valid.npy", np.array([f"1\t{MTAT_ROWS[2][2]}"]))
    one_line_error(won2020, "valid.npy", "element 0", "row 1")
    np.save(won / "valid.npy", np.array(["9\ty"]))
    one_line_error(won2020, "valid.npy", "row 9", "6 data rows")
    np.save(won / "valid.npy", np.array([f"0\t{MTAT_ROWS[0][2]}"]))
    one_line_error(won2020, "test.npy", "row 0", "valid.npy")
    np.save(won / "valid.npy", np.array([2, 5]))
    one_line_error(won2020, "valid.npy", "ROW<tab>PATH")
    bad_value = [("2", "001200", MTAT_ROWS[0][2])]
    write_mtat_annotations(csv_path, bad_value)
    one_line_error(lambda: mtat(csv_path, AUDIO, split="folders"), str(csv_path), "line 2", "'2'", "classical")
    write_crlf(csv_path, csv_path.read_text().splitlines()[:1] + ['"2"\t"0"\t"x.mp3"'])
    one_line_error(lambda: mtat(csv_path, AUDIO, split="folders"), str(csv_path), "line 2", "3 fields")
    write_crlf(csv_path, ['"id"\t"rock"\t"mp3_path"'])
    one_line_error(lambda: mtat(csv_path, AUDIO, split="folders"), str(csv_path), "clip_id")


def test_mtat_reconstructed_sample_with_won_split(tmp_path):
    annotations = sample("mtat", "annotations_final.RECONSTRUCTED.csv")
    won_sample = sample("mtat", "won2020")
    assert annotations.read_bytes().endswith(b'.mp3"\r\n')
    won = tmp_path / "won2020"
    won.mkdir()
    shutil.copy(won_sample / "tags.npy", won)
    test_entries = np.load(won_sample / "test.npy")
    np.save(won / "test.npy", test_entries[:5])  # only annotation rows 0-4 were recovered
    for split in ("train", "valid"):
        np.save(won / f"{split}.npy", test_entries[:0])
    manifest = mtat(annotations, AUDIO, split="won2020", split_dir=won)
    won_tags = [str(tag) for tag in np.load(won_sample / "tags.npy")]
    assert manifest.tag_names == won_tags and len(won_tags) == 50
    assert list(manifest.clips["id"]) == ["2", "6", "10", "11", "12"]
    assert set(manifest.clips["split"]) == {"test"}
    np.testing.assert_array_equal(manifest.targets, np.load(won_sample / "binary.RECONSTRUCTED.npy"))
    pons = {}  # Pons' ground truth uses the same (Won) tag order
    for line in sample("mtat", "pons", "test_gt_mtt.tsv").read_text().splitlines():
        clip_id, flags = line.split("\t")
        pons[clip_id] = ast.literal_eval(flags)
    for row, clip_id in enumerate(manifest.clips["id"]):
        if clip_id in pons:
            assert manifest.targets[row].tolist() == pons[clip_id]
    assert rows_of(manifest, "opera") == ["2", "6", "10", "11"]


def test_mtat_real_won_files_against_the_short_sample(tmp_path):
    annotations = sample("mtat", "annotations_final.RECONSTRUCTED.csv")
    won_sample = sample("mtat", "won2020")
    one_line_error(lambda: mtat(annotations, AUDIO, split="won2020", split_dir=won_sample), "train.npy", "not found")
    won = tmp_path / "won2020"
    shutil.copytree(won_sample, won)
    os.chmod(won, 0o755)
    np.save(won / "train.npy", np.load(won_sample / "test.npy")[:0])
    # the real valid.npy starts at annotation row 5, which the 5-row sample does not have
    one_line_error(lambda: mtat(annotations, AUDIO, split="won2020", split_dir=won), "valid.npy", "row 5",
                   "5 data rows")
    lee = mtat(annotations, AUDIO, split="folders", split_dir=sample("mtat", "lee2017"))
    assert lee.tag_names[-3:] == ["female voice", "metal", "choral"]  # Lee's order, header spelling


# --- MTG-Jamendo ----------------------------------------------------------------------------------------------

JAMENDO_HEADER = "TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS"
JAMENDO_VOCABULARY = ["genre---rock", "instrument---piano", "mood/theme---film", "genre---pop"]


def write_jamendo(splits_dir: Path, split_number=0, vocabulary=JAMENDO_VOCABULARY) -> None:
    """MTG layout: data/splits/split-N/*.tsv (CRLF, one tag per extra field) and data/tags/top50.txt (LF)."""
    rows = {
        "train": ["track_0000215\tartist_000001\talbum_000001\t15/215.mp3\t151.4\tgenre---pop\tgenre---rock",
                  "track_1048592\tartist_000002\talbum_000002\t92/1048592.mp3\t60.0\tmood/theme---film"],
        "validation": ["track_0000301\tartist_000003\talbum_000003\t01/301.mp3\t12.5\tgenre---rock"
                       "\tinstrument---piano\tmood/theme---film"],
        "test": ["track_0000400\tartist_000001\talbum_000004\t00/400.mp3\t99.9\tinstrument---piano"],
    }
    for split, lines in rows.items():
        tsv_path = splits_dir / f"split-{split_number}" / f"autotagging_top50tags-{split}.tsv"
        write_crlf(tsv_path, [JAMENDO_HEADER, *lines])
    if vocabulary:
        (splits_dir.parent / "tags").mkdir(exist_ok=True)
        (splits_dir.parent / "tags" / "top50.txt").write_text("\n".join(vocabulary) + "\n")


def test_mtg_jamendo_fixture(tmp_path):
    write_jamendo(tmp_path / "data" / "splits", split_number=2)
    manifest = build_manifest("mtg-jamendo", {"split_dir": str(tmp_path / "data" / "splits"), "audio_dir": AUDIO,
                                              "split_number": 2})
    assert list(manifest.clips["id"]) == ["track_0000215", "track_1048592", "track_0000301", "track_0000400"]
    assert list(manifest.clips["split"]) == ["train", "train", "valid", "test"]
    assert list(manifest.clips["artist"]) == ["artist_000001", "artist_000002", "artist_000003", "artist_000001"]
    assert list(manifest.clips["title"]) == list(manifest.clips["id"])
    assert manifest.clips["audio_path"][1] == os.path.join(AUDIO, "92/1048592.mp3")
    assert manifest.tag_names == JAMENDO_VOCABULARY  # top50.txt order, not sorted
    assert manifest.targets.tolist() == [[1, 0, 0, 1], [0, 0, 1, 0], [1, 1, 1, 0], [0, 1, 0, 0]]


def test_mtg_jamendo_without_tag_file_uses_sorted_tags_seen(tmp_path):
    write_jamendo(tmp_path / "splits", vocabulary=None)
    manifest = mtg_jamendo(tmp_path / "splits", AUDIO, split_number=0)
    assert manifest.tag_names == sorted(JAMENDO_VOCABULARY)
    assert rows_of(manifest, "instrument---piano") == ["track_0000301", "track_0000400"]


def test_mtg_jamendo_errors_name_the_file(tmp_path):
    splits_dir = tmp_path / "data" / "splits"
    write_jamendo(splits_dir, vocabulary=JAMENDO_VOCABULARY[:3])

    def split0():
        return mtg_jamendo(splits_dir, AUDIO, split_number=0)

    one_line_error(split0, "-train.tsv", "line 2", "'genre---pop'", "top50.txt")
    write_jamendo(splits_dir)
    one_line_error(lambda: mtg_jamendo(splits_dir, AUDIO, split_number=1), "split-1", "-train.tsv", "not found")
    test_tsv = splits_dir / "split-0" / "autotagging_top50tags-test.tsv"
    write_crlf(test_tsv, [JAMENDO_HEADER, "track_0000400\tartist_000001\talbum_000004\t00/400.mp3\t99.9"])
    one_line_error(split0, str(test_tsv), "line 2", "5 fields")
    write_crlf(test_tsv, ["TRACK_ID,ARTIST_ID,ALBUM_ID,PATH,DURATION,TAGS"])
    one_line_error(split0, str(test_tsv), "header")
    duplicate = "track_0000215\tartist_000001\talbum_000001\t15/215.mp3\t1.0\tgenre---pop"  # also in train
    write_crlf(test_tsv, [JAMENDO_HEADER, duplicate])
    one_line_error(split0, "split-0", "'track_0000215'", "more than once")


def test_mtg_jamendo_split0_samples():
    splits_dir = sample("mtg-jamendo", "splits")
    manifest = mtg_jamendo(splits_dir, AUDIO, split_number=0)
    assert manifest.summary()["clips_per_split"] == {"train": 20, "valid": 20, "test": 20}
    assert manifest.tag_names == sample("mtg-jamendo", "tags", "top50.txt").read_text().split("\n")[:50]
    for split, file_split in (("train", "train"), ("valid", "validation"), ("test", "test")):
        part = manifest.split(split)
        lines = (splits_dir / "split-0" / f"autotagging_top50tags-{file_split}.tsv").read_bytes().split(b"\r\n")
        assert lines[-1] == b""  # CRLF after the last line too
        for row, line in enumerate(lines[1:-1]):
            track_id, artist_id, _, path, _, *tags = line.decode().split("\t")
            assert part.clips["id"][row] == track_id and part.clips["artist"][row] == artist_id
            assert part.clips["audio_path"][row] == os.path.join(AUDIO, path)
            assert {part.tag_names[i] for i in np.flatnonzero(part.targets[row])} == set(tags)
    assert max(manifest.targets.sum(axis=1)) > 1  # rows really do carry several tag fields
