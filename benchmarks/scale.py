"""Scale simulation: time and peak memory of each stage at 1x, 4x and 16x a base catalogue size.

    python benchmarks/scale.py --base 25            # 25, 100 and 400 clips of the embedded corpus

Every stage runs in its own process on a fresh temporary catalogue, so its peak resident memory
(the stage's own process, and separately its largest worker) is its alone. Time should grow
linearly and memory stay flat; the last lines extrapolate every stage after the corpus to MSD's
242k songs from its marginal time per clip.
"""
import argparse
import json
import subprocess
import sys
import tempfile

MSD_SONGS = 242_000
STAGES = {
    "corpus": """
from musictag.datasets.corpus import build_corpus
m = build_corpus(**{{**defaults('data')['embedded'], 'n_clips': {n}, 'audio_dir': r'{tmp}/corpus'}})
m.write(Path(r'{tmp}/manifest.csv'))""",
    "clean": """
from musictag.datasets.cleaning import clean_manifest
clean_manifest(Path(r'{tmp}/manifest.csv'), Path(r'{tmp}/clean.csv'), Path(r'{tmp}/rejects.csv'),
               Path(r'{tmp}/rejects_per_reason.csv'), **defaults('clean'))""",
    "spectrograms": """
from musictag.datasets.manifest import Manifest
from musictag.features.extraction import extract
m = Manifest.read(Path(r'{tmp}/clean.csv'))
extract(list(m.clips['id']), list(m.clips['audio_path']), Path(r'{tmp}/spectrograms'),
        **defaults('spectrograms', chunk_size=64))""",
    "shards": """
from musictag.datasets.manifest import Manifest
from musictag.features.shard_writer import write_shards
write_shards(Path(r'{tmp}/spectrograms'), Manifest.read(Path(r'{tmp}/clean.csv')), Path(r'{tmp}/shards'),
             **defaults('shards', examples_per_shard=64, compression=''))""",
    "train (1 epoch k2c1)": """
from musictag.model.training import train
train(Path(r'{tmp}/shards'), Path(r'{tmp}/model'), Path(r'{tmp}/recovery'), Path(r'{tmp}/live'), model='k2c1',
      hyperparameters={{}}, **defaults('train', epochs=1, batch_size=16, learning_rate=1e-3))""",
}
MEASURE = """
import resource, sys, time
from pathlib import Path  # the stage bodies build paths
from musictag.params import defaults  # and take params.yaml's values
started = time.perf_counter()
{body}
print('RESULT', time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
      resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def run_stage(body: str) -> tuple[float, float, float]:
    """Seconds, peak RSS of the stage's process and of its largest child, in MiB."""
    done = subprocess.run([sys.executable, "-c", MEASURE.format(body=body)], capture_output=True, text=True)
    result = [line for line in done.stdout.splitlines() if line.startswith("RESULT")]
    if done.returncode != 0 or not result:
        raise SystemExit(f"stage failed:\n{done.stderr[-2000:]}")
    seconds, self_kib, child_kib = map(float, result[0].split()[1:])
    return seconds, self_kib / 1024, child_kib / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=int, default=25, help="clips at 1x")
    args = parser.parse_args()
    sizes = [args.base, 4 * args.base, 16 * args.base]
    rows = {}
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            for stage, body in STAGES.items():
                rows[stage, n] = run_stage(body.format(n=n, tmp=tmp))
                seconds, self_mib, child_mib = rows[stage, n]
                print(f"{stage:22s} {n:6d} clips  {seconds:8.1f} s  {seconds / n * 1000:7.1f} ms/clip  "
                      f"peak {self_mib:6.0f} MiB (largest worker {child_mib:5.0f} MiB)", flush=True)
    print(f"\nextrapolation to MSD ({MSD_SONGS:,} songs) on this machine, from the marginal time per clip between "
          f"{sizes[1]} and {sizes[2]} clips (fixed costs such as imports and pools left out):")
    total_h = 0.0
    for stage in list(STAGES)[1:]:  # MSD brings its own audio: no corpus to render
        (t_mid, _, _), (t_big, _, _) = rows[stage, sizes[1]], rows[stage, sizes[2]]
        per_clip_s = (t_big - t_mid) / (sizes[2] - sizes[1])
        total_h += per_clip_s * MSD_SONGS / 3600
        growth = rows[stage, sizes[-1]][1] / rows[stage, sizes[0]][1]
        print(f"  {stage:22s} {per_clip_s * 1000:7.1f} ms/clip  {per_clip_s * MSD_SONGS / 3600:8.1f} h   "
              f"peak memory x{growth:.2f} for 16x the clips")
    print(f"  {'total':22s} {'':15s}{total_h:8.1f} h")
    print(json.dumps({f"{stage}@{n}": rows[stage, n] for stage, n in rows}))


if __name__ == "__main__":
    main()
