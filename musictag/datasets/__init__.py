"""Datasets: the adapters that turn a dataset's tag and split files into the canonical manifest, the embedded
corpus rendered from scores, the clean step, and the tag families."""
