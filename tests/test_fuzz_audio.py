"""Fuzzing the front door: real files of every container, damaged by seeded property-based mutations.

For every case, `clean` (check_audio in a bounded worker, as check_many runs it) either keeps the file,
and spectrogram_of then gives a finite 96 x 1366 array, or rejects it with a reason of REJECT_REASONS:
no exception escapes, no file outlives its time limit unnoticed. MUSICTAG_FUZZ_CASES sets the number of
cases (300 by default; thousands for a long run); `pytest -s` prints the counts, the slowest case and
the workers' peak memory, and MUSICTAG_FUZZ_REPORT=path.json writes them.
"""
import collections
import functools
import json
import os
import resource
import time

import audio_fuzz
import numpy as np
import pytest
from conftest import FRONT_END
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from musictag.audio.checks import REJECT_REASONS, check_audio, check_window
from musictag.audio.decoding import spectrogram_of
from musictag.audio.frontend import warm_up
from musictag.audio.workers import BoundedPool, Failure
from musictag.errors import MusictagError
from musictag.params import defaults

CASES = int(os.environ.get("MUSICTAG_FUZZ_CASES", "300"))
TIMEOUT_S, MEMORY_LIMIT_MB = 30.0, 1024.0  # clean's and extraction's defaults are 120 s / 60 s and 1024 MB
CHECKS = {key: defaults("clean")[key] for key in ("min_duration_s", "silence_dbfs")}  # clean's thresholds


@pytest.fixture(scope="module")
def base_files(tmp_path_factory):
    return audio_fuzz.write_base_files(tmp_path_factory.mktemp("base"))


@pytest.fixture(scope="module")
def pool(base_files, tmp_path_factory):
    """Two bounded workers, forked once the decoders' one-off set-up is done (as extraction forks), so
    the slowest case is a case and not a worker's first call."""
    warm_up(**FRONT_END)
    folder = tmp_path_factory.mktemp("warm")
    for name, data in base_files.items():
        (folder / name).write_bytes(data)
        check_audio(folder / name, **CHECKS)
    with BoundedPool(2, TIMEOUT_S, MEMORY_LIMIT_MB) as bounded:
        yield bounded


@pytest.fixture(scope="module")
def stats():
    """Counts over the module's cases, printed (and written to MUSICTAG_FUZZ_REPORT) at the end."""
    collected = {"cases": 0, "kept": 0, "rejected": collections.Counter(), "window_rejected": collections.Counter(), "per_container": collections.Counter(),
                 "slowest_s": 0.0, "slowest_case": None, "peak_worker_rss_mb": 0.0, "peak_above_start_mb": 0.0}
    yield collected
    summary = {**collected, "rejected": dict(collected["rejected"].most_common()),
               "window_rejected": dict(collected["window_rejected"].most_common()),
               "per_container": dict(collected["per_container"])}
    print("\naudio fuzz:", json.dumps(summary, indent=2))
    if report := os.environ.get("MUSICTAG_FUZZ_REPORT"):
        with open(report, "w") as handle:
            json.dump(summary, handle, indent=2)


def _measured(function, path):
    """function(path) in a worker, with its wall time, the worker's peak RSS and its RSS before the call."""
    with open("/proc/self/statm") as statm:
        before_mb = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    started = time.perf_counter()
    result = function(path)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result, time.perf_counter() - started, peak_mb, before_mb


def _extract(path):
    """What extraction does with a kept file, reduced to what the property needs."""
    try:
        spectrogram = spectrogram_of(path, **FRONT_END)
    except MusictagError as err:
        return f"spectrogram_of raised: {err}"
    return spectrogram.shape, bool(np.isfinite(spectrogram).all())


def _window(path):
    """What tagging the middle window does (check_window), reduced to what the property needs."""
    verdict, spectrogram = check_window(path, **CHECKS, **FRONT_END)
    return verdict.reason, None if spectrogram is None else (spectrogram.shape, bool(np.isfinite(spectrogram).all()))


def _run(pool, function, path, stats, case):
    (_, outcome), = pool.imap(functools.partial(_measured, function), [path])
    if isinstance(outcome, Failure):
        return outcome
    result, elapsed_s, peak_mb, before_mb = outcome
    if elapsed_s > stats["slowest_s"]:
        stats["slowest_s"], stats["slowest_case"] = round(elapsed_s, 3), case
    stats["peak_worker_rss_mb"] = round(max(stats["peak_worker_rss_mb"], peak_mb), 1)
    stats["peak_above_start_mb"] = round(max(stats["peak_above_start_mb"], peak_mb - before_mb), 1)
    return result


@st.composite
def damaged(draw, base_files):
    """(file name, mutations, fix Ogg checksums) for one case."""
    name = draw(st.sampled_from(sorted(base_files)))
    data = base_files[name]
    header_fields = audio_fuzz.fields(data)
    at = st.floats(0, 1, exclude_max=True)
    n_bytes = st.sampled_from([1, 2, 4, 16, 256, 4096])

    @st.composite
    def field(draw_field):
        index = draw_field(st.integers(0, len(header_fields) - 1))
        original = audio_fuzz.read_field(data, header_fields[index])
        values = st.sampled_from(audio_fuzz.interesting_values(header_fields[index], original))
        return "field", index, draw_field(values | st.integers(0, header_fields[index].max_value))

    mutation = st.one_of(
        st.tuples(st.just("truncate"), at),
        st.tuples(st.just("flip"), at, n_bytes),
        st.tuples(st.just("zero"), at, n_bytes),
        st.tuples(st.just("noise"), at, n_bytes, st.integers(0, 2**16)),
        field(), field(),  # headers are where the lies that cost memory and time live
    )
    return name, draw(st.lists(mutation, min_size=1, max_size=3)), draw(st.booleans())


def test_every_damaged_file_is_kept_and_extracted_or_rejected_with_a_reason(base_files, pool, stats,
                                                                             tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzzed")

    @settings(max_examples=CASES, derandomize=True, database=None, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(damaged(base_files))
    def case(drawn):
        name, mutations, fix_checksums = drawn
        path = folder / f"case{stats['cases']:05d}{os.path.splitext(name)[1]}"
        path.write_bytes(audio_fuzz.mutate(base_files[name], mutations, fix_checksums))
        description = f"{name} {mutations} fix_checksums={fix_checksums}"
        stats["cases"] += 1
        stats["per_container"][name] += 1
        # an AudioCheck, or a Failure where the worker was stopped (its reasons are REJECT_REASONS too)
        reason = _run(pool, functools.partial(check_audio, **CHECKS), path, stats, description).reason
        assert reason is None or reason in REJECT_REASONS, description
        if reason is None:
            extracted = _run(pool, _extract, path, stats, description)
            assert extracted == ((96, 1366), True), f"{description}: clean kept it, extraction gave {extracted}"
            stats["kept"] += 1
        else:
            stats["rejected"][reason] += 1
        # tagging the middle window decodes only the window: the same two outcomes, and whatever clean keeps
        window = _run(pool, _window, path, stats, description)
        window_reason = window.reason if isinstance(window, Failure) else window[0]
        assert window_reason in REJECT_REASONS or window == (None, ((96, 1366), True)), f"{description}: {window}"
        assert reason is not None or window_reason is None, f"{description}: clean kept it, check_window: {window}"
        stats["window_rejected"][window_reason or "kept"] += 1
        path.unlink()

    case()
    assert stats["cases"] >= CASES
    assert stats["kept"] > 0 and len(stats["rejected"]) >= 4  # the mutations reach both outcomes, many reasons
    assert stats["peak_above_start_mb"] < MEMORY_LIMIT_MB
