"""Time the embedded corpus build: clips rendered per second (parse + excerpt + synthesis + FLAC).

    python benchmarks/corpus_build.py --clips 300 --workers 0

The first clips of the seeded order include the slowest scores (whole string-quartet movements),
so small runs understate the rate of a full build; the full default build prints its own rate too.
"""
import argparse
import tempfile
import time

from musictag.datasets.corpus import build_corpus
from musictag.params import defaults


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=300)
    parser.add_argument("--workers", type=int, default=0, help="0 = all cores")
    parser.add_argument("--sample-rate-hz", type=int, default=16000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        build_corpus(args.clips, seed=2018, sample_rate_hz=args.sample_rate_hz, clip_duration_s=29.12,
                     split_fractions=[0.8, 0.1, 0.1], audio_dir=f"{tmp}/audio",
                     soundfonts=defaults("data")["embedded"]["soundfonts"],
                     timbre_variation=defaults("data")["embedded"]["timbre_variation"], workers=args.workers)
        elapsed_s = time.perf_counter() - started
    print(f"corpus build: {args.clips} clips in {elapsed_s:.1f} s = {args.clips / elapsed_s:.2f} clips/s "
          f"(workers={args.workers or 'all'}, {args.sample_rate_hz} Hz, includes music21 corpus indexing)")


if __name__ == "__main__":
    main()
