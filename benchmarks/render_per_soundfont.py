"""What a clip of the embedded corpus costs to render, per soundfont: score parsing against synthesis.

    python benchmarks/render_per_soundfont.py --clips 40
    python benchmarks/render_per_soundfont.py --clips 40 --soundfonts TimGM6mb.sf2 FluidR3_GM.sf2

One process, the first `--clips` usable works of the seeded order (as the dataset stage takes them), each
parsed once (music21: parse, notes, tempo, meter), then synthesised with every soundfont (a fresh
synthesiser and soundfont load per clip, as musictag.datasets.corpus.render does). Prints ms per clip for
the parse, and per soundfont for loading it and for the synthesis (the render less the load), medians
over the clips, so one sees what dominates. Shared
machines are noisy: compare the rows of one run.
"""
import argparse
import time

import numpy as np

from musictag.datasets import corpus
from musictag.params import defaults


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--soundfonts", nargs="+", help="default: params.yaml's data.embedded and shift soundfonts")
    args = parser.parse_args()
    embedded = defaults("data")["embedded"]
    names = args.soundfonts or embedded["soundfonts"] + defaults("shift")["soundfonts"]
    soundfonts = [corpus.find_soundfont(name, "--soundfonts") for name in names]
    sample_rate_hz, clip_duration_s = embedded["sample_rate_hz"], embedded["clip_duration_s"]
    n_samples = int(round(clip_duration_s * sample_rate_hz))
    from music21 import corpus as scores

    parse_s, load_s, synth_s = [], {s.name: [] for s in soundfonts}, {s.name: [] for s in soundfonts}
    for work in corpus.interleave_by_collection(corpus.list_works(), embedded["seed"]):
        if len(parse_s) == args.clips:
            break
        started = time.perf_counter()
        rng = corpus.clip_rng(embedded["seed"], work.clip_id)
        try:
            score = scores.parse(work.source_path, number=work.number)
            notes_ql = corpus.score_notes(score)
            qpm = corpus.playback_tempo_qpm(score, rng)
            corpus.meter_of(score)
        except Exception:  # an unusable score, as the dataset stage skips it
            continue
        if not len(notes_ql):
            continue
        notes_s = corpus.excerpt(notes_ql, float(score.highestTime), qpm, clip_duration_s, rng)
        programs = corpus.choose_programs(int(notes_ql[:, 3].max()) + 1, rng)
        parse_s.append(time.perf_counter() - started)
        for soundfont in soundfonts:
            import tinysoundfont

            started = time.perf_counter()
            corpus.render(notes_s, programs, sample_rate_hz, n_samples, np.random.default_rng(0), soundfont)
            render_s = time.perf_counter() - started
            started = time.perf_counter()  # the load alone, just after: the same file cache
            tinysoundfont.Synth(samplerate=sample_rate_hz).sfload(str(soundfont))
            load_s[soundfont.name].append(time.perf_counter() - started)
            synth_s[soundfont.name].append(render_s - load_s[soundfont.name][-1])
    print(f"{len(parse_s)} clips of {clip_duration_s} s at {sample_rate_hz} Hz, one process")
    print(f"  score parsing (music21)          {1000 * np.median(parse_s):7.1f} ms/clip")
    for name in load_s:
        print(f"  {name:22s} load {1000 * np.median(load_s[name]):7.1f} ms/clip, synthesis "
              f"{1000 * np.median(synth_s[name]):7.1f} ms/clip")


if __name__ == "__main__":
    main()
