"""What an audio file's bytes are, before any decoding: the container its header names, found past what
decoders skip, and what the header promises (a WAV's data size; whether an MP3's length is only a guess).

A file is refused for its container bytes only when no decoder would read it as the format its extension
names (musictag.audio.checks' "wrong header"): the check defers to the decoders, libsndfile and its mpg123,
and skips what they skip (ID3v2 tags, then ID3v1, APEv2 and junk before an MPEG or ADTS stream's first frame).
"""
from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from musictag.audio.decoding import CONTAINER_OF_EXTENSION

# The containers whose first four bytes are their magic; the rest _container reads from their headers.
_CONTAINER_OF_MAGIC = {b"fLaC": "flac", b"OggS": "ogg", b"caff": "caf", b".snd": "au", b"wvpk": "wavpack"}

# A frame stream (MPEG audio, ADTS AAC) has no magic: the header check defers to its decoder, mpg123
# (libsndfile's), and looks for frames where mpg123 looks. Past the ID3v2 tags it parses, mpg123 searches
# this much junk for the first frame: 65,535 bytes decode, 65,536 do not ("Giving up searching valid MPEG
# header after 65536 bytes of junk"). ID3v1 and APEv2 tags at the start are junk to it, and so here.
MAX_JUNK_BYTES = 65_535
# Frame headers in a row, each where the frame before ends and of the same stream, that make a stream. A
# random 4 bytes are an MPEG header 1 time in ~5,000 and the next header of its stream 1 in ~150,000, so
# random bytes hold 3 in a row within MAX_JUNK_BYTES about once in 10^9 files (in free format, where a
# frame ends at the next header found, once in ~400,000). Two make a stream where the second frame ends
# it (the file, or a tag after it): mpg123 decodes a stream of two frames, though not of one.
FRAMES_IN_A_ROW = 3
# The longest frame: ADTS's 13-bit length field; an MPEG frame, mpg123's MAXFRAMESIZE (free format's bound).
MAX_FRAME_BYTES = 8_191
MAX_MPEG_FRAME_BYTES = 3_456
# What _stream_start reads: a stream found in it reaches the end of these bytes only at the file's end.
_SEARCHED_BYTES = MAX_JUNK_BYTES + FRAMES_IN_A_ROW * MAX_FRAME_BYTES
_SYNC = re.compile(rb"(?=\xff[\xe0-\xff])")  # 11 set bits: where an MPEG or ADTS header may start
_TAG_MARKERS = (b"TAG", b"APETAGEX", b"ID3")  # ID3v1, APEv2, ID3v2: a tag after the last frame
# kbps by bitrate index, for (MPEG-1, layer bits: 3 is Layer I, 2 Layer II, 1 Layer III); 0 is free format
_MPEG_KBPS = {
    (True, 3): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 1): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 3): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 1): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MPEG_RATES_HZ = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}  # MPEG-1, 2, 2.5


def container_of(file) -> str | None:
    """The format that the bytes of `file` hold, looking past ID3v2 tags as libsndfile and mpg123 do, and
    for an MPEG audio or ADTS stream past the junk mpg123 skips (_stream_start); None if unknown."""
    offset = _past_id3v2(file)
    file.seek(offset)
    head = file.read(12)
    if head[:4] in (b"RIFF", b"RIFX", b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head[4:8] == b"ftyp":
        return "mp4"
    if container := _CONTAINER_OF_MAGIC.get(head[:4]):
        return container
    file.seek(offset)
    data = file.read(_SEARCHED_BYTES)
    # ADTS first: its headers' buffer fullness 0x7FF (VBR) makes bytes FF FC, a free-format MPEG header
    for container, header_at in (("aac", _adts_header_at), ("mpeg", _mpeg_header_at)):
        if _stream_start(data, header_at) is not None:
            return container
    return None


def _past_id3v2(file) -> int:
    """The offset after the ID3v2 tags at the start of `file` (none, one or several, each with its optional
    footer), where libsndfile and mpg123 look for the audio."""
    offset = 0
    while True:
        file.seek(offset)
        head = file.read(10)
        if head[:3] != b"ID3" or len(head) < 10:
            return offset
        tag_bytes = sum((byte & 0x7F) << (7 * (3 - i)) for i, byte in enumerate(head[6:10]))  # syncsafe
        offset += 10 + tag_bytes + (10 if head[5] & 0x10 else 0)  # header, tag, optional footer


@dataclass(frozen=True)
class _FrameHeader:
    """A frame header of an MPEG audio or ADTS stream: what stays the same through one stream (version,
    layer or profile, sample rate), and the frame's length, 0 in free format, which only the next header shows."""

    stream: tuple[int, ...]
    length_bytes: int


def _mpeg_header_at(data: bytes, position: int) -> _FrameHeader | None:
    """The MPEG audio frame header at `position` of `data`, or None where the 4 bytes there are none: what
    mpg123 accepts (sync, a version, a layer, a bitrate index but 15, a sample rate index but 3)."""
    head = data[position:position + 4]
    if len(head) < 4:
        return None
    word = int.from_bytes(head, "big")
    version, layer, bitrate_index, rate_index = (word >> 19) & 3, (word >> 17) & 3, (word >> 12) & 15, (word >> 10) & 3
    if word >> 21 != 0x7FF or version == 1 or layer == 0 or bitrate_index == 15 or rate_index == 3:
        return None
    bits_per_s = 1000 * _MPEG_KBPS[version == 3, layer][bitrate_index]
    rate_hz, padding = _MPEG_RATES_HZ[version][rate_index], (word >> 9) & 1
    if layer == 3:  # Layer I: slots of 4 bytes, 384 samples
        length_bytes = (12 * bits_per_s // rate_hz + padding) * 4
    else:  # 1,152 samples, but 576 in Layer III of MPEG-2 and 2.5
        length_bytes = (72 if layer == 1 and version != 3 else 144) * bits_per_s // rate_hz + padding
    return _FrameHeader((version, layer, rate_index, bitrate_index == 0), length_bytes if bits_per_s else 0)


def _adts_header_at(data: bytes, position: int) -> _FrameHeader | None:
    """The ADTS (AAC) frame header at `position` of `data`, or None where the 7 bytes there are none (a
    12-bit sync, layer 0, a sampling frequency index up to 12, a frame length that holds the header)."""
    head = data[position:position + 7]
    if len(head) < 7 or head[0] != 0xFF or head[1] & 0xF6 != 0xF0:
        return None
    rate_index = (head[2] >> 2) & 15
    length_bytes = (head[3] & 3) << 11 | head[4] << 3 | head[5] >> 5
    if rate_index > 12 or length_bytes < 7:
        return None
    return _FrameHeader((head[1] & 0x08, head[2] >> 6, rate_index), length_bytes)


def _stream_start(data: bytes, header_at) -> int | None:
    """Where the first frame of a stream starts in `data` (the bytes past a file's ID3v2 tags): the first
    offset up to MAX_JUNK_BYTES where FRAMES_IN_A_ROW headers of `header_at` follow one another (fewer
    where they end the stream); None if there is none."""
    for sync in _SYNC.finditer(data):
        if sync.start() > MAX_JUNK_BYTES:
            return None
        if _frames_follow(data, sync.start(), header_at):
            return sync.start()
    return None


def _frames_follow(data: bytes, position: int, header_at) -> bool:
    """Whether FRAMES_IN_A_ROW frames of one stream follow one another from `position` of `data`, or at
    least two that end the stream: at the end of `data` (then the file's) or at a tag."""
    first = header = header_at(data, position)
    headers = 0
    while header is not None and header.stream == first.stream:
        headers += 1
        if headers == FRAMES_IN_A_ROW:
            return True
        position = _frame_end(data, position, header, header_at)
        if position is None:
            return False
        if headers >= 2 and (position == len(data) or data.startswith(_TAG_MARKERS, position)):
            return True
        header = header_at(data, position)
    return False


def _frame_end(data: bytes, position: int, header: _FrameHeader, header_at) -> int | None:
    """Where the frame at `position` of `data` ends: by its header's length, or in free format at the next
    header of its stream within MAX_MPEG_FRAME_BYTES (as mpg123 finds it); None if there is none."""
    if header.length_bytes:
        return position + header.length_bytes
    for sync in _SYNC.finditer(data, position + 4, position + MAX_MPEG_FRAME_BYTES + 2):
        following = header_at(data, sync.start())
        if following is not None and following.stream == header.stream:
            return sync.start()
    return None


def length_is_guessed(path: Path) -> bool:
    """Whether the frame count the decoder gives for `path` is a guess: an MPEG stream whose first frame is
    no Xing/Info frame with the stream's frame count (only Layer III has them). mpg123 then extrapolates
    from the file's size and first bitrate, tags and junk included, so it overshoots a file with a large
    ID3v2 picture by far (33% for 100 KB on 30 s), and a cut file shrinks the guess with it."""
    if CONTAINER_OF_EXTENSION.get(path.suffix.lower()) != "mpeg":
        return False
    with open(path, "rb") as file:
        file.seek(_past_id3v2(file))
        data = file.read(_SEARCHED_BYTES)
    start = _stream_start(data, _mpeg_header_at)
    return start is not None and not _counts_its_frames(data, start)


def _counts_its_frames(data: bytes, position: int) -> bool:
    """Whether the MPEG frame at `position` of `data` is a Layer III Xing/Info frame with the stream's frame
    count (flag 1), where mpg123 looks for one: after the header and the side information."""
    word = int.from_bytes(data[position:position + 4], "big")
    layer3, mpeg1, mono = (word >> 17) & 3 == 1, (word >> 19) & 3 == 3, (word >> 6) & 3 == 3
    tag = position + 4 + ((17 if mono else 32) if mpeg1 else (9 if mono else 17))
    return layer3 and data[tag:tag + 4] in (b"Xing", b"Info") and bool(int.from_bytes(data[tag + 4:tag + 8], "big") & 1)


def wav_missing_bytes(file) -> int:
    """Bytes the RIFF data chunk declares beyond the end of the file. libsndfile quietly reads
    what is there, so only the header shows that a WAV was cut short."""
    size = file.seek(0, os.SEEK_END)
    position = 12
    while position + 8 <= size:
        file.seek(position)
        chunk_id, chunk_size = struct.unpack("<4sI", file.read(8))
        if chunk_id == b"data":  # 0xFFFFFFFF: size unknown (streamed or RF64)
            return 0 if chunk_size == 0xFFFFFFFF else max(0, position + 8 + chunk_size - size)
        position += 8 + chunk_size + chunk_size % 2  # chunks are word-aligned
    return 0
