"""The `musictag` command. Subcommands grow with the pipeline; each is a thin call into the library."""
from __future__ import annotations

import argparse
import json

from musictag import __version__
from musictag.datasets import DATASETS, Manifest
from musictag.errors import run_main
from musictag.paths import DATA_DIR, resolve


def _manifest_summary(args: argparse.Namespace) -> None:
    print(json.dumps(Manifest.read(resolve(args.manifest)).summary(), indent=2))


def _list_datasets(_: argparse.Namespace) -> None:
    for name, adapter in DATASETS.items():
        print(f"{name:12s} {(adapter.__doc__ or '').strip().splitlines()[0]}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="musictag", description=__doc__)
    parser.add_argument("--version", action="version", version=f"musictag {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    summary = commands.add_parser("manifest", help="clips, tags and splits of a manifest")
    summary.add_argument("manifest", nargs="?", default=str(DATA_DIR / "manifest.csv"))
    summary.set_defaults(run=_manifest_summary)
    datasets = commands.add_parser("datasets", help="list the dataset adapters data.source can name")
    datasets.set_defaults(run=_list_datasets)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    run_main(lambda: args.run(args))


if __name__ == "__main__":
    main()
