"""Artifacts by name and the comparison report, on a small git + DVC project of their own (real `dvc`, no
pipeline): what each gives for two revisions, and the one-line errors for what is not there.
tests/test_readme.py runs both on the pipeline's own copy across two clones."""
from __future__ import annotations

import base64
import io
import json
import subprocess
import sys

import matplotlib
import pytest

from musictag.errors import MusictagError
from musictag.evaluation.revision_report import write_report
from musictag.inference.artifacts import artifact_model

matplotlib.use("Agg")

DVC_YAML = """\
params: [params.yaml]
metrics: [metrics/scores.json]
plots:
  - AUC per epoch:
      template: linear
      x: step
      y:
        live/train/auc.tsv: auc
        live/eval/auc.tsv: auc
  - per_tag.csv:
      template: bar_horizontal_sorted
      x: roc_auc
      y: tag
  - map.png
artifacts:
  tagger:
    path: model
    type: model
    desc: a folder tracked by DVC
    labels: [k2c1]
  weights:
    path: weights.h5
    type: model
"""


def run(cwd, *command: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.org", "DVC_NO_ANALYTICS": "1", "PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    done = subprocess.run(list(command), cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"
    return done.stdout


def png(colour: str) -> bytes:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(2, 2))
    axes.set_facecolor(colour)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def write_revision(root, auc: float, seed: int, with_map: bool) -> None:
    (root / "params.yaml").write_text(f"train:\n  seed: {seed}\n")
    (root / "metrics").mkdir(exist_ok=True)
    (root / "metrics" / "scores.json").write_text(json.dumps({"auc": auc, "n_test": 301}))
    for split, offset in (("train", 0.05), ("eval", 0.0)):
        (root / "live" / split).mkdir(parents=True, exist_ok=True)
        (root / "live" / split / "auc.tsv").write_text(
            "step\tauc\n" + "".join(f"{step}\t{auc + offset - 0.1 / (step + 1)}\n" for step in range(4)))
    (root / "per_tag.csv").write_text(f"tag,roc_auc\nrock,{auc}\njazz,{auc - 0.1}\n")
    if with_map:
        (root / "map.png").write_bytes(png("red" if seed == 3 else "blue"))
    (root / "model").mkdir(exist_ok=True)
    (root / "model" / "config.json").write_text(json.dumps({"seed": seed}))
    (root / "weights.h5").write_bytes(b"weights of seed %d" % seed)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """Two commits: seed 1 (AUC 0.8, no map.png) and seed 2 (AUC 0.9), the model folder tracked by DVC,
    the first commit registered as tagger@v1.0.0; then the workspace at seed 3, uncommitted."""
    root = tmp_path_factory.mktemp("sharing")
    run(root, "git", "init", "-q")
    run(root, sys.executable, "-m", "dvc", "init", "-q")
    (root / "dvc.yaml").write_text(DVC_YAML)
    for auc, seed in ((0.8, 1), (0.9, 2)):
        write_revision(root, auc, seed, with_map=seed > 1)
        run(root, sys.executable, "-m", "dvc", "add", "-q", "model", "weights.h5")
        run(root, "git", "add", "-A")
        run(root, "git", "commit", "-qm", f"seed {seed}")
        if seed == 1:
            run(root, "git", "tag", "-a", "tagger@v1.0.0", "-m", "first")
            run(root, "git", "tag", "-a", "weights@v1.0.0", "-m", "first")
    write_revision(root, 0.85, 3, with_map=True)
    return root


def test_the_report_compares_metrics_params_and_every_plot(project):
    page = write_report(["HEAD~1", "HEAD", "workspace"], project / "report", project)
    markdown = (project / "report" / "report.md").read_text()
    assert "## Metrics: HEAD~1" in markdown and "## Params: HEAD~1" in markdown
    assert "| metrics/scores.json | auc | 0.8 | 0.9 | 0.1 |" in markdown
    assert "| metrics/scores.json | auc | 0.8 | 0.85 | 0.05 |" in markdown
    assert "n_test" not in markdown  # unchanged metrics are left out, as `dvc metrics diff` does
    assert "| params.yaml | train.seed | 1 | 3 | 2 |" in markdown
    assert "HEAD~1" in markdown and "no map.png" in markdown  # the first revision has no picture: said, not fatal
    html = page.read_text()
    images = [base64.b64decode(data) for data in html.split('src="data:image/png;base64,')[1:]
              for data in [data.split('"', 1)[0]]]
    assert len(images) == 4  # the curves, the bars, and map.png at the two revisions that have it
    assert all(image.startswith(b"\x89PNG") for image in images)
    assert images[2:] == [png("blue"), png("red")]  # HEAD's map, then the workspace's
    assert 'src="http' not in html and "<table>" in html


def test_the_report_names_a_revision_it_cannot_resolve(project):
    with pytest.raises(MusictagError, match="no-such-experiment: not a revision or experiment"):
        write_report(["HEAD", "no-such-experiment"], project / "report", project)


def test_an_artifact_name_is_its_path_in_the_workspace(project):
    assert artifact_model("tagger", project) == project / "model"


def test_a_registered_version_is_fetched_once_from_the_dvc_cache(project):
    fetched = artifact_model("tagger@v1.0.0", project)
    assert fetched == project / "data" / "artifacts" / "tagger@v1.0.0"
    assert json.loads((fetched / "config.json").read_text()) == {"seed": 1}  # the tagged commit's, not the workspace's
    (fetched / "config.json").write_text("{}")  # fetched once: a second call does not fetch again
    assert artifact_model("tagger@v1.0.0", project) == fetched and (fetched / "config.json").read_text() == "{}"
    weights = artifact_model("weights@v1.0.0", project)  # a single file: inside its reference's folder
    assert weights == project / "data" / "artifacts" / "weights@v1.0.0" / "weights.h5"
    assert weights.read_bytes() == b"weights of seed 1"


@pytest.mark.parametrize("reference, message", [
    ("nothing", "nothing: no model folder, published tagger or artifact of that name (dvc.yaml declares: tagger, "
                "weights)"),
    ("tagger@v9.9.9", "tagger@v9.9.9: no such version or stage registered"),
])
def test_an_unknown_artifact_is_one_line(project, reference, message):
    with pytest.raises(MusictagError) as raised:
        artifact_model(reference, project)
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


def test_an_artifact_not_in_the_workspace_says_how_to_get_it(project, tmp_path):
    (project / "model").rename(tmp_path / "model")
    try:
        with pytest.raises(MusictagError, match=r"artifact tagger: model is not in this workspace \(`dvc pull model`"):
            artifact_model("tagger", project)
    finally:
        (tmp_path / "model").rename(project / "model")


def test_the_declared_artifacts_match_what_the_project_holds():
    """dvc.yaml's artifacts: the trained tagger's labels are params.yaml's defaults and the committed tag
    count; the published taggers point at the weights musictag.pretrained loads."""
    import yaml

    from musictag.paths import REPO_ROOT
    from musictag.pretrained import REFERENCE_TAGGERS, WEIGHTS_DIR

    artifacts = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["artifacts"]
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    front_end = params["spectrograms"]["front_end"]
    frames = 1 + int(front_end["duration_s"] * front_end["sample_rate_hz"]) // front_end["hop_length"]
    n_tags = json.loads((REPO_ROOT / "metrics" / "dataset.json").read_text())["n_tags"]
    tagger = artifacts["tagger"]
    assert tagger["type"] == "model" and tagger["path"] == "data/model"
    assert tagger["labels"] == [params["model"], params["data"]["source"], f"{n_tags}-tags",
                                f"log-mel-{front_end['n_mels']}x{frames}"]
    for name, reference in REFERENCE_TAGGERS.items():
        assert artifacts[name]["type"] == "model" and "50-tags" in artifacts[name]["labels"]
        assert REPO_ROOT / artifacts[name]["path"] == WEIGHTS_DIR / reference.weights_file
