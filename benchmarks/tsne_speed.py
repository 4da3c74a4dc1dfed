"""t-SNE speed: scikit-learn's TSNE (what the seed used) against openTSNE, on tagger-like points.

    python benchmarks/tsne_speed.py                       # 2,000 and 10,000 points x 50 tags
    python benchmarks/tsne_speed.py --songs 2000 --tags 45

Both run as the pipeline runs them (musictag.inference.tag_map.embed): 1,000 iterations in all (250 of
early exaggeration), perplexity 30, PCA initialisation, all cores; openTSNE with its defaults
otherwise (approximate neighbours by Annoy; the FFT gradient from 10,000 points, Barnes-Hut
below). Prints seconds, the final KL divergence each reports, and how many of each point's 10
nearest neighbours in tag space stay among its 10 nearest on the map (higher is better), so that
speed is not bought with a worse map. The machine is shared: compare rows of one run.
"""
import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # tests/songs.py: tagger-like probabilities
from songs import synthetic_probabilities  # noqa: E402

from musictag.inference.tag_map import embed, neighbourhood_kept
from musictag.params import defaults  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--songs", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--tags", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    tsne = defaults("tsne")  # the pipeline's perplexity, metric and iterations
    print(f"t-SNE of synthetic tag probabilities ({args.tags} tags), {cores} cores")
    print(f"  {'points':>7s}  {'library':12s} {'seconds':>8s} {'KL':>7s} {'10-NN kept':>10s}")
    for n in args.songs:
        points = synthetic_probabilities(n, args.tags, seed=args.seed)
        for implementation, name in (("sklearn", "scikit-learn"), ("opentsne", "openTSNE")):
            started = time.perf_counter()
            coordinates, kl = embed(points, implementation, tsne["perplexity"], tsne["metric"], args.seed, cores,
                                    tsne["n_iter"])
            seconds = time.perf_counter() - started
            kept = neighbourhood_kept(points, coordinates, 10, seed=args.seed)
            print(f"  {n:7d}  {name:12s} {seconds:8.1f} {kl:7.3f} {kept:10.3f}", flush=True)


if __name__ == "__main__":
    main()
