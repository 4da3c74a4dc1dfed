"""Models by artifact name: the `artifacts:` section of dvc.yaml, DVC's model registry, for `--model`.

`tagger` names the workspace's own declared path (data/model, once trained or `dvc pull`ed); `tagger@v1.2.0`
or `tagger#prod` names a registered version or stage (a Git tag that `gto register` / `gto assign` wrote),
fetched once from the DVC cache or remote into data/artifacts/. Why: a trained model gets a name a team
shares across machines and revisions, not a folder that exists on one of them.
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

from musictag.errors import MusictagError
from musictag.files import first_line, replace_dir

REFERENCE = re.compile(r"(?P<name>[a-z0-9][a-z0-9-]*)(?:@(?P<version>v?\d[\w.+-]*)|#(?P<stage>[\w-]+))?")
FETCHED_DIR = Path("data") / "artifacts"  # registered versions, one folder each, under the repository root


def is_artifact_reference(text: str) -> bool:
    """Whether `text` has an artifact reference's form: `name`, `name@version` or `name#stage`."""
    return REFERENCE.fullmatch(text) is not None


def artifact_model(reference: str, repo_root: Path) -> Path:
    """The local path of the model that artifact `reference` names in the DVC project at `repo_root`:
    a name alone is its declared path in the workspace (which must exist), a version or stage is that
    revision's file or folder, fetched into data/artifacts/<reference> unless already there.
    MusictagError (one line) when dvc.yaml declares no such artifact or its files are not here."""
    from dvc.exceptions import ArtifactNotFoundError, DvcException
    from dvc.repo import Repo

    parts = REFERENCE.fullmatch(reference)
    if parts is None:
        raise MusictagError(f"{reference}: not an artifact name (name, name@version or name#stage)")
    name, version, stage = parts["name"], parts["version"], parts["stage"]
    try:
        with Repo(str(repo_root)) as repo:
            declared = repo.artifacts.read().get("dvc.yaml", {})
            if name not in declared:
                raise MusictagError(f"{reference}: no model folder, published tagger or artifact of that name "
                                    f"(dvc.yaml declares: {', '.join(declared) or 'none'})")
            if not version and not stage:
                path = repo_root / declared[name].path
                if not path.exists():
                    raise MusictagError(f"artifact {name}: {declared[name].path} is not in this workspace "
                                        f"(`dvc pull {declared[name].path}`, or `dvc repro` to build it)")
                return path
            fetched = repo_root / FETCHED_DIR / reference.replace("#", "@")
            if not fetched.exists():
                fetched.parent.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryDirectory(dir=fetched.parent) as scratch:
                    folder = Path(scratch) / "fetched"  # a model folder as it is; a weights file inside one
                    single_file = Path(declared[name].path).suffix != ""
                    if single_file:
                        folder.mkdir()
                    repo.artifacts.download(name, version=version, stage=stage,
                                            out=str(folder / Path(declared[name].path).name if single_file else folder))
                    replace_dir(folder, fetched)  # whole or not at all: an interrupted fetch leaves nothing
            return fetched if (fetched / "config.json").exists() else next(fetched.iterdir())
    except ArtifactNotFoundError:
        raise MusictagError(f"{reference}: no such version or stage registered (`gto show {name}` lists them)") from None
    except DvcException as error:
        raise MusictagError(f"artifact {reference}: {first_line(error)}") from None
