"""Real-world container layouts: the tags, padding, chunks and junk around the audio that taggers and
rippers leave, built on real encodes. The header check defers to the decoders (musictag.audio.containers), so
every layout soundfile reads must be kept, and bytes that no decoder reads must still be refused."""
import io
import struct

import numpy as np
import pytest
import soundfile as sf
from audio_files import needs_mp3, write
from mutagen.apev2 import APEv2
from mutagen.flac import FLAC, Picture
from mutagen.id3 import ID3, TIT2, MakeID3v1
from mutagen.oggvorbis import OggVorbis

from musictag.audio import checks, containers
from musictag.params import defaults

CHECKS = {key: defaults("clean")[key] for key in ("min_duration_s", "silence_dbfs")}  # clean's thresholds
DURATION_S = 3.0
# MPEG-2 Layer III kbps by bitrate index: at 24 kHz a frame is 3 bytes a kbps, never padded, so each
# frame of a CBR stream there has one length
MPEG2_LAYER3_KBPS = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)


# --- the audio and the tags, as encoders and taggers write them -------------------------------------------

def lame_mp3(tmp_path) -> bytes:
    """An MP3 as LAME (libsndfile's encoder) writes it: VBR, its first frame a Xing frame holding the
    frame count, from which mpg123 knows the length exactly."""
    return write(tmp_path / "lame.mp3", DURATION_S, 22050, format="MP3").read_bytes()


def mp3_without_frame_count(tmp_path) -> bytes:
    """A CBR MP3 without the Xing/Info frame, as older encoders and stream rips are (the Bensound
    files): mpg123 then guesses its length from the file size, tags and junk included."""
    data = write(tmp_path / "cbr.mp3", DURATION_S, 24000, format="MP3", bitrate_mode="CONSTANT",
                 compression_level=0.5).read_bytes()  # without a level, libsndfile leaves LAME's VBR
    info_bytes = frame_bytes(data)
    assert data[info_bytes:info_bytes + 2] == data[:2]  # the next header: the Info frame is dropped whole
    return data[info_bytes:]


def free_format_mp3(tmp_path) -> bytes:
    """mp3_without_frame_count in free format (bitrate index 0), which mpg123 decodes: each frame's length
    shows only where the next header is."""
    data = bytearray(mp3_without_frame_count(tmp_path))
    for header in range(0, len(data), frame_bytes(data)):  # CBR: every frame of one length
        assert data[header:header + 2] == data[:2]
        data[header + 2] &= 0x0F
    return bytes(data)


def frame_bytes(header: bytes) -> int:
    """The length of the MPEG-2 Layer III frame at 24 kHz that `header` starts."""
    return 3 * MPEG2_LAYER3_KBPS[header[2] >> 4]


def id3v2(padding_bytes=0, version=3) -> bytes:
    """An ID3v2 tag as mutagen writes it, with a title and `padding_bytes` of padding (room a tagger
    leaves to edit the tag in place)."""
    file = io.BytesIO()
    titled().save(file, v2_version=version, padding=lambda info: padding_bytes)
    return file.getvalue()


def id3v2_with_footer() -> bytes:
    """An ID3v2.4 tag with a footer (flag 0x10): its header, a title frame, and the footer, which mirrors the header."""
    frame = b"TIT2" + struct.pack(">I", 8) + b"\x00\x00" + b"\x03A title"  # v2.4: sizes are syncsafe, 8 is 8
    size = bytes((len(frame) >> shift) & 0x7F for shift in (21, 14, 7, 0))
    return b"ID3\x04\x00\x10" + size + frame + b"3DI\x04\x00\x10" + size


def id3v1() -> bytes:
    """An ID3v1 tag: 128 bytes from "TAG"."""
    return MakeID3v1(titled())


def apev2() -> bytes:
    """An APEv2 tag as mutagen writes it: a 32-byte header, the items, a 32-byte footer, each from "APETAGEX"."""
    file = io.BytesIO()
    tags = APEv2()
    tags["Title"] = "A title"
    tags.save(file)
    return file.getvalue()


def titled() -> ID3:
    """ID3 tags with a title."""
    tags = ID3()
    tags.add(TIT2(encoding=3, text="A title"))
    return tags


def junk(n_bytes) -> bytes:
    return np.random.default_rng(3).bytes(n_bytes)


def assert_kept(path, duration_s, thresholds=CHECKS):
    """soundfile reads `path` whole (the layout is one a decoder reads) and check_audio keeps it, at `duration_s`."""
    with sf.SoundFile(path) as file:
        decoded_s = len(file.read(dtype="float32")) / file.samplerate
    assert decoded_s == pytest.approx(duration_s, abs=1e-6)
    check = checks.check_audio(path, **thresholds)
    assert (check.reason, check.detail) == (None, ""), check
    assert check.duration_s == pytest.approx(duration_s, abs=1e-6)


def decoded_s(tmp_path, name, data) -> float:
    """What soundfile decodes of `data`, in seconds."""
    (tmp_path / name).write_bytes(data)
    with sf.SoundFile(tmp_path / name) as file:
        return len(file.read(dtype="float32")) / file.samplerate


# --- MP3: tags and junk before and after the frames --------------------------------------------------------

MP3_LAYOUTS = [  # (the file's bytes from the stream's, id)
    pytest.param(lambda audio: id3v2(padding_bytes=300_000) + audio, id="ID3v2 with 300 KB of padding"),
    pytest.param(lambda audio: id3v2(padding_bytes=5_000) + id3v1() + audio,
                 id="ID3v2 then ID3v1 before the first frame (the Bensound files)"),
    pytest.param(lambda audio: id3v2() + id3v2(version=4) + audio, id="two ID3v2 tags"),
    pytest.param(lambda audio: id3v2_with_footer() + audio, id="ID3v2.4 with a footer"),
    pytest.param(lambda audio: id3v1() + audio, id="ID3v1 at the start"),
    pytest.param(lambda audio: audio + id3v1(), id="ID3v1 at the end"),
    pytest.param(lambda audio: apev2() + audio, id="APEv2 at the start"),
    pytest.param(lambda audio: audio + apev2(), id="APEv2 at the end"),
    pytest.param(lambda audio: id3v2(padding_bytes=1_000) + audio + apev2() + id3v1(),
                 id="ID3v2, then APEv2 and ID3v1 at the end"),
    pytest.param(lambda audio: b"\xff\xfb\x90\x64" + junk(300) + audio,  # MPEG-1 Layer III, 128 kbps, 44.1 kHz
                 id="a junk frame before the first"),
    pytest.param(lambda audio: junk(60_000) + audio, id="60,000 junk bytes before the first frame"),
]


@needs_mp3
@pytest.mark.parametrize("stream", [lame_mp3, mp3_without_frame_count, free_format_mp3],
                         ids=["LAME VBR with its Xing frame", "CBR without a frame count", "free format"])
@pytest.mark.parametrize("layout", MP3_LAYOUTS)
def test_an_mp3_between_tags_and_junk_is_kept(tmp_path, stream, layout):
    """Where mpg123 guesses the length (no frame count), tags and junk inflate the guess (by 2.5 times with
    300 KB of padding): such a guess promises no length, so the file is not 'truncated' for it."""
    audio = stream(tmp_path)
    path = tmp_path / "song.mp3"
    path.write_bytes(layout(audio))
    assert_kept(path, decoded_s(tmp_path, "bare.mp3", audio))


@needs_mp3
@pytest.mark.parametrize("junk_bytes, reason", [(containers.MAX_JUNK_BYTES, None),
                                                (containers.MAX_JUNK_BYTES + 1, "wrong header")])
def test_the_junk_searched_for_the_first_frame_is_what_mpg123_searches(tmp_path, junk_bytes, reason):
    path = tmp_path / "song.mp3"
    path.write_bytes(id3v2(padding_bytes=100_000) + bytes(junk_bytes) + lame_mp3(tmp_path))
    if reason is None:
        assert_kept(path, DURATION_S)
    else:
        with pytest.raises(sf.LibsndfileError):  # "Giving up searching valid MPEG header after 65536 bytes of junk"
            sf.info(path)
        assert checks.check_audio(path, **CHECKS).reason == reason


@needs_mp3
@pytest.mark.parametrize("after", [b"", id3v1()], ids=["at the end of the file", "before an ID3v1 tag"])
def test_a_stream_of_two_frames_is_kept_as_mpg123_decodes_it(tmp_path, after):
    """Fewer than FRAMES_IN_A_ROW frames make a stream where they end it; one frame does not, as for mpg123."""
    audio = mp3_without_frame_count(tmp_path)
    two_frames = audio[:2 * frame_bytes(audio)]
    path = tmp_path / "two.mp3"
    path.write_bytes(two_frames + after)
    assert_kept(path, decoded_s(tmp_path, "bare.mp3", two_frames), thresholds={**CHECKS, "min_duration_s": 0.0})
    path.write_bytes(audio[:frame_bytes(audio)] + after)
    with pytest.raises(sf.LibsndfileError):
        sf.info(path)
    assert checks.check_audio(path, **CHECKS).reason == "wrong header"


@needs_mp3
def test_random_bytes_behind_one_frame_header_are_no_mp3(tmp_path):
    """One header is no stream: random bytes hold one every ~5,000 bytes, and mpg123 takes a header only
    where the next one lies at the frame's length (and decodes no stream of one frame). So no decoder
    reads these bytes as MPEG audio: like any bytes of no known format named .mp3, a 'wrong header'
    (undecodable is for a file in its extension's format that then fails to decode)."""
    path = tmp_path / "lone.mp3"
    path.write_bytes(lame_mp3(tmp_path)[:4] + junk(20_000))
    with pytest.raises(sf.LibsndfileError):
        sf.info(path)
    assert checks.check_audio(path, **CHECKS).reason == "wrong header"


@needs_mp3
def test_a_cut_mp3_with_a_frame_count_behind_tags_is_still_truncated(tmp_path):
    audio = lame_mp3(tmp_path)
    path = tmp_path / "half.mp3"
    path.write_bytes(id3v2(padding_bytes=50_000) + id3v1() + audio[:len(audio) // 2])
    assert checks.check_audio(path, **CHECKS).reason == "truncated"


def adts_frames(n_frames, payload_bytes=200) -> bytes:
    """`n_frames` ADTS frames of AAC LC, 44.1 kHz stereo, with an empty payload."""
    length = 7 + payload_bytes
    header = bytes([0xFF, 0xF1, 1 << 6 | 4 << 2, 2 << 6 | length >> 11, length >> 3 & 0xFF,
                    (length & 7) << 5 | 0x1F, 0xFC])  # buffer fullness 0x7FF: VBR
    return (header + bytes(payload_bytes)) * n_frames


@pytest.mark.parametrize("data, passes", [
    pytest.param(id3v2() + junk(1_000) + adts_frames(10), True, id="ADTS behind ID3v2 and junk"),
    pytest.param(adts_frames(1) + junk(20_000), False, id="one ADTS header, then random bytes"),
])
def test_an_adts_stream_is_found_past_tags_and_junk(tmp_path, data, passes):
    """Nothing here decodes AAC, so a stream that passes the header check is then 'undecodable'."""
    path = tmp_path / "song.aac"
    path.write_bytes(data)
    assert (checks.check_audio(path, **CHECKS).reason != "wrong header") == passes


# --- WAV, FLAC, Ogg: metadata inside the container -------------------------------------------------------

def riff_chunk(chunk_id: bytes, payload: bytes) -> bytes:
    return chunk_id + struct.pack("<I", len(payload)) + payload + b"\x00" * (len(payload) % 2)  # word-aligned


def wav_with_chunks(path):
    """A WAV as broadcast and tagging software leave it: JUNK, bext and LIST (with an odd-sized, padded
    item) before fmt, and an id3 chunk after data."""
    data = path.read_bytes()
    body = (riff_chunk(b"JUNK", bytes(28)) + riff_chunk(b"bext", bytes(602))
            + riff_chunk(b"LIST", b"INFO" + riff_chunk(b"INAM", b"A title")) + data[12:]
            + riff_chunk(b"id3 ", id3v2()))
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body)


def flac_with_picture(path):
    """A FLAC with 300 KB of cover art in a PICTURE metadata block."""
    picture = Picture()
    picture.type, picture.mime, picture.data = 3, "image/jpeg", junk(300_000)
    tags = FLAC(path)
    tags.add_picture(picture)
    tags.save()


def ogg_with_large_comment(path):
    """An Ogg Vorbis file whose comment header holds 200 KB (lyrics, a cover in base64): many pages."""
    tags = OggVorbis(path)
    tags["comment"] = "la " * 70_000
    tags.save()


def id3v2_before(path):
    """An ID3v2 tag before another container's magic, as some taggers write it on any file."""
    path.write_bytes(id3v2(padding_bytes=10_000) + path.read_bytes())


@pytest.mark.parametrize("name, options, alter", [
    pytest.param("song.wav", {"subtype": "PCM_16"}, wav_with_chunks, id="WAV with JUNK, bext, LIST and id3 chunks"),
    pytest.param("song.flac", {}, flac_with_picture, id="FLAC with a 300 KB picture"),
    pytest.param("song.ogg", {}, ogg_with_large_comment, id="Ogg Vorbis with a 200 KB comment"),
    pytest.param("song.flac", {}, id3v2_before, id="FLAC behind an ID3v2 tag"),
])
def test_a_container_with_large_or_extra_metadata_is_kept(tmp_path, name, options, alter):
    path = write(tmp_path / name, DURATION_S, 22050, **options)
    alter(path)
    assert_kept(path, DURATION_S)


def test_a_cut_wav_behind_extra_chunks_is_still_truncated(tmp_path):
    path = write(tmp_path / "song.wav", DURATION_S, 22050, subtype="PCM_16")
    wav_with_chunks(path)
    data = path.read_bytes()
    path.write_bytes(data[:data.index(b"data") + len(data) // 2])
    assert checks.check_audio(path, **CHECKS).reason == "truncated"
