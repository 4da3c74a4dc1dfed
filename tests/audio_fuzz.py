"""Damaged audio for the fuzz tests: real files of each container the pipeline reads, and mutations of
their bytes (cuts, flipped or zeroed ranges, header fields rewritten to lies), as plain data.

A mutation is a tuple: ("truncate", at), ("flip", at, n_bytes), ("zero", at, n_bytes), ("noise", at,
n_bytes, seed) or ("field", field_index, value), with `at` a fraction of the file's length. `fields`
lists each base file's header fields (WAV fmt/data/chunk sizes, FLAC STREAMINFO, Xing/LAME counts, Ogg
page sizes and the Vorbis rate and channels); an Ogg file's page checksums may be recomputed after
its mutations, so that a lying header reaches the decoder instead of being dropped as a bad page.
"""
from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

BASE_FILES = {  # name: (soundfile format, subtype, sample rate, channels)
    "pcm16.wav": ("WAV", "PCM_16", 22050, 2),
    "pcm24.wav": ("WAV", "PCM_24", 44100, 1),
    "float.wav": ("WAV", "FLOAT", 16000, 2),
    "song.flac": ("FLAC", "PCM_16", 22050, 2),
    "song.ogg": ("OGG", "VORBIS", 22050, 2),
    "song.mp3": ("MP3", "MPEG_LAYER_III", 22050, 2),
}
DURATION_S = 2.0


@dataclass(frozen=True)
class Field:
    """A header field: `n_bytes` at `offset` in `byteorder`, of which bits [shift, shift + bits) hold it."""

    name: str
    offset: int
    n_bytes: int
    byteorder: str = "little"
    shift: int = 0
    bits: int = 0  # 0: all of them

    @property
    def max_value(self) -> int:
        return (1 << (self.bits or 8 * self.n_bytes)) - 1


def write_base_files(folder: Path) -> dict[str, bytes]:
    """The real files to mutate (each container the pipeline reads that libsndfile here writes), by name."""
    base = {}
    for name, (container, subtype, sample_rate_hz, channels) in BASE_FILES.items():
        if container not in sf.available_formats():
            continue
        t = np.arange(round(DURATION_S * sample_rate_hz)) / sample_rate_hz
        rng = np.random.default_rng(len(base))
        chord = sum(0.15 * np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6))
        audio = np.stack([chord + 0.02 * rng.standard_normal(len(t)) for _ in range(channels)], axis=1)
        sf.write(folder / name, audio.astype(np.float32), sample_rate_hz, format=container, subtype=subtype)
        base[name] = (folder / name).read_bytes()
    return base


def fields(data: bytes) -> list[Field]:
    """The header fields of a base file, by its container."""
    if data[:4] == b"RIFF":
        return _wav_fields(data)
    if data[:4] == b"fLaC":
        return _flac_fields()
    if data[:4] == b"OggS":
        return _ogg_fields(data)
    return _mp3_fields(data)


def _wav_fields(data: bytes) -> list[Field]:
    found = [Field("RIFF size", 4, 4)]
    position = 12
    while position + 8 <= len(data):
        chunk_id, size = struct.unpack_from("<4sI", data, position)
        found.append(Field(f"{chunk_id.decode(errors='replace')} chunk size", position + 4, 4))
        if chunk_id == b"fmt ":
            found += [Field(name, position + 8 + at, n) for name, at, n in (
                ("format tag", 0, 2), ("channels", 2, 2), ("sample rate", 4, 4), ("byte rate", 8, 4),
                ("block align", 12, 2), ("bits per sample", 14, 2))]
        position += 8 + size + size % 2
    return found


def _flac_fields() -> list[Field]:
    """STREAMINFO, the first metadata block: its length, block and frame sizes, then a 64-bit word of
    20 bits rate, 3 bits channels - 1, 5 bits bits-per-sample - 1 and 36 bits total samples."""
    return [Field("metadata block length", 5, 3, "big"), Field("min block size", 8, 2, "big"),
            Field("max block size", 10, 2, "big"), Field("max frame size", 15, 3, "big"),
            Field("sample rate", 18, 8, "big", shift=44, bits=20), Field("channels", 18, 8, "big", shift=41, bits=3),
            Field("bits per sample", 18, 8, "big", shift=36, bits=5),
            Field("total samples", 18, 8, "big", shift=0, bits=36)]


def _ogg_fields(data: bytes) -> list[Field]:
    found = []
    for page, position in enumerate(_ogg_pages(data)[:4]):
        found += [Field(f"page {page} granule", position + 6, 8), Field(f"page {page} segments", position + 26, 1),
                  Field(f"page {page} first segment size", position + 27, 1)]
        if page == 0:  # the Vorbis identification packet follows the page's one-entry segment table
            body = position + 27 + data[position + 26]
            found += [Field("vorbis channels", body + 11, 1), Field("vorbis sample rate", body + 12, 4)]
    return found


def _mp3_fields(data: bytes) -> list[Field]:
    found = [Field("first frame header", 0, 4, "big")]
    xing = max(data.find(b"Xing"), data.find(b"Info"))
    if xing >= 0:
        found += [Field("Xing flags", xing + 4, 4, "big"), Field("Xing frame count", xing + 8, 4, "big"),
                  Field("Xing byte count", xing + 12, 4, "big")]
    lame = data.find(b"LAME")
    if lame >= 0:
        found += [Field("LAME encoder delay and padding", lame + 21, 3, "big"),
                  Field("LAME music length", lame + 28, 4, "big")]
    return found


def interesting_values(field: Field, original: int) -> list[int]:
    """Lies a broken writer or a bit error tells in a field."""
    top = field.max_value
    values = {0, 1, 2, 3, 7, 255, 8_000, 44_100, 96_000, 1 << 20, top, top - 1, original + 1,
              max(0, original - 1), original * 2, original // 2, original * 1000}
    return sorted(value for value in values if value <= top)


def read_field(data: bytes, field: Field) -> int:
    word = int.from_bytes(data[field.offset:field.offset + field.n_bytes], field.byteorder)
    return (word >> field.shift) & field.max_value


def mutate(data: bytes, mutations: list[tuple], fix_ogg_checksums: bool = False) -> bytes:
    """`data` with each mutation applied in turn (see the module docstring)."""
    out = bytearray(data)
    header_fields = fields(data)
    for kind, *args in mutations:
        if kind == "field":
            index, value = args
            field = header_fields[index % len(header_fields)]
            if field.offset + field.n_bytes <= len(out):
                word = int.from_bytes(out[field.offset:field.offset + field.n_bytes], field.byteorder)
                word &= ~(field.max_value << field.shift)
                word |= (value & field.max_value) << field.shift
                out[field.offset:field.offset + field.n_bytes] = word.to_bytes(field.n_bytes, field.byteorder)
            continue
        start = int(args[0] * len(out))
        if kind == "truncate":
            del out[start:]
            continue
        stop = min(len(out), start + args[1])
        if kind == "flip":
            out[start:stop] = bytes(byte ^ 0xFF for byte in out[start:stop])
        elif kind == "zero":
            out[start:stop] = bytes(stop - start)
        elif kind == "noise":
            out[start:stop] = random.Random(args[2]).randbytes(stop - start)
    if fix_ogg_checksums and out[:4] == b"OggS":
        _fix_ogg_checksums(out)
    return bytes(out)


def random_mutations(rng: random.Random, data: bytes) -> tuple[list[tuple], bool]:
    """A random list of 1-3 mutations for `data` and whether to fix Ogg checksums (for tests that
    want a few damaged files without Hypothesis)."""
    header_fields = fields(data)
    mutations = []
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(["truncate", "flip", "zero", "noise", "field", "field"])
        if kind == "field":
            index = rng.randrange(len(header_fields))
            field = header_fields[index]
            mutations.append(("field", index, rng.choice(interesting_values(field, read_field(data, field)))))
        elif kind == "truncate":
            mutations.append(("truncate", rng.random()))
        elif kind == "noise":
            mutations.append(("noise", rng.random(), rng.choice([1, 4, 64, 1024]), rng.randrange(1 << 16)))
        else:
            mutations.append((kind, rng.random(), rng.choice([1, 4, 64, 1024])))
    return mutations, rng.random() < 0.5


def _ogg_pages(data) -> list[int]:
    """Byte offsets of the Ogg pages from the start, up to the first that does not parse."""
    pages, position = [], 0
    while data[position:position + 4] == b"OggS" and position + 27 <= len(data):
        n_segments = data[position + 26]
        body = sum(data[position + 27:position + 27 + n_segments])
        pages.append(position)
        position += 27 + n_segments + body
    return pages


def _fix_ogg_checksums(data: bytearray) -> None:
    """Recompute the CRC-32 (polynomial 0x04C11DB7, MSB first, no reflection) of every Ogg page."""
    for position in _ogg_pages(data):
        n_segments = data[position + 26]
        end = position + 27 + n_segments + sum(data[position + 27:position + 27 + n_segments])
        data[position + 22:position + 26] = bytes(4)  # the checksum covers the page with its own field zeroed
        data[position + 22:position + 26] = struct.pack("<I", _ogg_crc(bytes(data[position:end])))


def _ogg_crc(page: bytes) -> int:
    crc = 0
    for byte in page:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc
