"""Drop the clips whose audio cannot be used, keeping a reason for each (the `clean` stage)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from musictag.audio.checks import REJECT_REASONS, check_many
from musictag.datasets.manifest import SPLITS, Manifest
from musictag.files import write_csv


def clean_manifest(manifest_path: Path, kept_path: Path, rejects_path: Path, reasons_path: Path,
                   min_duration_s: float, silence_dbfs: float, workers: int, timeout_s: float,
                   memory_limit_mb: float) -> dict:
    """Check every clip's audio, each file within `timeout_s` and `memory_limit_mb`; write the usable
    clips' manifest, a CSV of rejects and their counts per reason and split (`rejects_per_reason`).

    Returns the headline counts for metrics: checked, kept, rejected, rejected per split.
    """
    manifest = Manifest.read(manifest_path)
    checks = check_many([Path(p) for p in manifest.clips["audio_path"]], workers=workers, timeout_s=timeout_s,
                        memory_limit_mb=memory_limit_mb, min_duration_s=min_duration_s, silence_dbfs=silence_dbfs)
    usable = [c.ok for c in checks]
    kept = Manifest(manifest.clips[usable], manifest.tag_names, manifest.targets[usable])
    kept.write(kept_path)

    rejects = manifest.clips.loc[[not ok for ok in usable], ["id", "split", "audio_path"]].copy()
    rejects["reason"] = [c.reason for c in checks if not c.ok]
    rejects["detail"] = [c.detail for c in checks if not c.ok]
    write_csv(rejects_path, rejects)
    write_csv(reasons_path, rejects_per_reason(rejects))
    return {
        "checked": len(manifest),
        "kept": len(kept),
        "rejected": len(rejects),
        "rejected_per_split": {s: int((rejects["split"] == s).sum()) for s in SPLITS},
    }


def rejects_per_reason(rejects: pd.DataFrame) -> pd.DataFrame:
    """One row per reject reason (every reason, in REJECT_REASONS order): its files per split and in all."""
    counts = pd.crosstab(rejects["reason"], rejects["split"]).reindex(index=list(REJECT_REASONS), columns=list(SPLITS),
                                                                      fill_value=0)
    counts["all"] = counts.sum(axis=1)
    return counts.rename_axis(index="reason", columns=None).reset_index()
