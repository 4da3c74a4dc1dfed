"""The README as a test: every command its code blocks show runs as printed, on a fresh copy, with no venv on PATH;
every param it and docs/performance.md name exists, every link between them resolves, and the numbers stay in
docs/performance.md, each with the machine and date it was measured on.

The copy gets a small real pipeline (`dvc repro` on 40 short clips of a folder catalogue) and a `.venv` of
its own (the suite's installed packages, the copy's musictag, the console scripts and musictag/venv-path.pth,
as `make venv` leaves them), so `.venv/bin/musictag` there works on the copy. The set-up block (make pipeline,
make test) is left out: CI runs it. About three minutes on two cores, most of it in the README's own
`dvc exp run` lines.
"""
import ast
import re
import subprocess
import sys
import sysconfig
from pathlib import Path
from types import SimpleNamespace

import pytest
import soundfile as sf
import yaml
from conftest import REPO_ROOT
from dvc_repo import DvcRepo
from audio_files import music

README = REPO_ROOT / "README.md"
PERFORMANCE = REPO_ROOT / "docs" / "performance.md"
MANUALS = (README, PERFORMANCE)
AUDIO_SUFFIXES = (".mp3", ".wav", ".flac", ".ogg")
NO_VENV_PATH = "/usr/local/bin:/usr/bin:/bin"


def command_lines(block: str) -> list[str]:
    """A code block's command lines, comments and blank lines dropped."""
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def write_audio_named_in(command: str, folder: Path) -> None:
    """The audio files a command names (e.g. my_song.mp3) that `folder` lacks, written there: 40 s of music."""
    for token in command.split():
        if token.endswith(AUDIO_SUFFIXES) and not (folder / token).exists():
            sf.write(folder / token, music(40.0, 44100, channels=2), 44100)


def readme_commands(text: str) -> list[str]:
    """Command lines of the README's bash blocks, comments stripped, the set-up block (make ...) left out."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        lines = command_lines(block)
        if not any(line.startswith("make ") for line in lines):
            commands += lines
    return commands


def song_ids(commands: list[str]) -> list[str]:
    """Catalogue ids the commands name (`similar ID`, `--seed ID`): the test catalogue must hold them."""
    return sorted({m for c in commands for m in re.findall(r"(?:similar|--seed)\s+([\w.-]+)", c)})


def named_params(text: str) -> set[str]:
    """Dotted params the text names: `-S key=value` overrides, and `section.key` in backticks (alone or
    followed by `:` or `=`) where `section` is a top-level section of params.yaml."""
    sections = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    names = set(re.findall(r"-S ([\w.-]+)=", text))
    for quoted in re.findall(r"`([^`\s:=]+)(?:[:=][^`]*)?`", text):
        if re.fullmatch(r"[\w-]+(\.[\w-]+)+", quoted) and quoted.split(".")[0] in sections:
            names.add(quoted)
    return names


def has_param(name: str) -> bool:
    node = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    for key in name.split("."):
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def heading_anchors(text: str) -> set[str]:
    """GitHub's anchors for the text's headings: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", text, flags=re.S), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("manual", MANUALS, ids=lambda path: path.name)
def test_every_param_named_is_in_params_yaml(manual):
    named = named_params(manual.read_text())
    assert named, manual
    assert [name for name in sorted(named) if not has_param(name)] == []


@pytest.mark.parametrize("manual", MANUALS, ids=lambda path: path.name)
def test_every_link_and_script_named_exists(manual):
    text = manual.read_text()
    for target, anchor in re.findall(r"\]\((?!https?:)([^)#]*)(?:#([^)]*))?\)", text):
        linked = (manual.parent / target).resolve() if target else manual
        assert linked.is_file(), f"{manual.name}: link to {target}"
        assert not anchor or anchor in heading_anchors(linked.read_text()), f"{manual.name}: {target}#{anchor}"
    scripts = set(re.findall(r"benchmarks/\w+\.py", text))
    assert [s for s in sorted(scripts) if not (REPO_ROOT / s).is_file()] == []


def test_measurements_live_in_docs_performance_with_their_machine_and_date():
    """The README is a manual: a speed or timing figure belongs in docs/performance.md, where each measured
    item names the machine it ran on (one of its Machines table, or says it was not named) and its date."""
    figure = r"\d[\d.,]*\s*(examples/s|songs/s|tracks/s|clips/s|ms\b|GFLOP|GB/s|x faster|x slower)"
    assert re.findall(figure, README.read_text()) == []
    text = PERFORMANCE.read_text()
    machines = re.findall(r"^\| \*\*([^*]+)\*\* \|", text, flags=re.M)
    items = re.findall(r"^- \*\*.*?(?=^- \*\*|^#|\Z)", text, flags=re.M | re.S)
    assert machines and len(items) > 10
    for item in (" ".join(item.split()) for item in items):
        assert any(m in item for m in machines) or "machine not named" in item, item[:80]
        assert re.search(r"recorded 20\d\d-\d\d-\d\d", item), item[:80]


def test_the_crash_recovery_modules_are_those_training_hashes():
    """The README lists the modules whose code keys a run's recovery state: exactly training's CODE_MODULES."""
    source = (REPO_ROOT / "musictag" / "model" / "training.py").read_text()
    assigned = next(node for node in ast.parse(source).body if isinstance(node, ast.Assign)
                    and any(getattr(target, "id", None) == "CODE_MODULES" for target in node.targets))
    hashed = {name.removeprefix("musictag.").replace(".", "/") + ".py" for name in ast.literal_eval(assigned.value)}
    listed = re.search(r"CODE_MODULES` names \(([^)]*)\)", README.read_text()).group(1)
    assert set(re.findall(r"`([\w/]+\.py)`", listed)) == hashed


def install_venv(repo_path: Path) -> None:
    """`<copy>/.venv` as `make venv` leaves it, without reinstalling: a venv whose site-packages point at the
    suite's installed packages and at the copy's source (an editable install), plus the console scripts."""
    venv = repo_path / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c",
                                "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "00-musictag-copy.pth").write_text(f"{repo_path}\n")
    (site / "10-installed-packages.pth").write_text(f"{sysconfig.get_path('purelib')}\n")
    (site / "venv-path.pth").write_text((repo_path / "musictag" / "venv-path.pth").read_text())
    for name, entry in [("musictag", "musictag.cli"), ("dvc", "dvc.cli")]:
        script = venv / "bin" / name
        script.write_text(f"#!{venv / 'bin' / 'python'}\nimport sys\nfrom {entry} import main\n"  # as pip writes it:
                          "if __name__ == '__main__':\n    sys.exit(main())\n")  # forkserver workers re-import it
        script.chmod(0o755)


def run_as_user(repo, command: str) -> subprocess.CompletedProcess:
    env = {**repo.env, "PATH": NO_VENV_PATH}
    return subprocess.run(["bash", "-c", command], cwd=repo.path, env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=600)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A copy of the repository with its own .venv and a whole `dvc repro` on 40 clips, committed."""
    root = tmp_path_factory.mktemp("readme")
    audio_dir = root / "audio"
    audio_dir.mkdir()
    ids = song_ids(readme_commands(README.read_text())) + [f"song{i:02d}" for i in range(40)]
    ids = ids[:40]
    rows = []
    for i, id_ in enumerate(ids):
        sf.write(audio_dir / f"{id_}.flac", music(4.0, 16000, seed=i), 16000)
        tags = "|".join(tag for tag, every in (("rock", 2), ("jazz", 3), ("pop", 1)) if i % every == 0)
        split = "train" if i < 28 else "valid" if i < 34 else "test"
        rows.append(f"{id_}.flac,{id_},artist{i % 7},{tags},{split}\n")
    (root / "tags.csv").write_text("path,id,artist,tags,split\n" + "".join(rows))
    repo = DvcRepo(root / "repo")
    for key, value in [("data.source", "folder"), ("data.folder.audio_dir", str(audio_dir)),
                       ("data.folder.tags_csv", str(root / "tags.csv")), ("shards.examples_per_shard", 16),
                       ("train.epochs", 1), ("train.batch_size", 8), ("train.shuffle_buffer", 32),
                       ("recommend.k", 3), ("tsne.n_iter", 250), ("paper.architectures", ["k2c1"]),
                       ("paper.seeds", [1, 2]), ("paper.n_bootstrap", 100)]:
        repo.set_param(key, value)
    install_venv(repo.path)
    built = run_as_user(repo, ".venv/bin/dvc repro")
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    repo.git("add", "-A")
    repo.git("commit", "-qm", "pipeline")
    return repo


def test_the_readme_shows_commands_to_test():
    commands = readme_commands(README.read_text())
    assert any("musictag similar" in c for c in commands) and any("musictag ci" in c for c in commands)
    assert song_ids(commands)


def test_every_subcommand_has_help(repo):
    from musictag.cli import build_parser

    subcommands = next(a for a in build_parser()._actions if a.dest == "command").choices
    assert {"tag", "similar", "playlist", "ci"} <= set(subcommands)
    for name in ["", *subcommands]:
        done = run_as_user(repo, f".venv/bin/musictag {name} --help")
        assert done.returncode == 0 and "usage: musictag" in done.stdout, (name, done.stderr)


@pytest.mark.parametrize("command, named", [
    (".venv/bin/musictag similar no-such-song", "no-such-song"),
    (".venv/bin/musictag playlist --seed no-such-song", "no-such-song"),
    (".venv/bin/musictag tag missing.mp3", "missing.mp3"),
    (".venv/bin/musictag ci", "need at least 2 runs"),  # no experiments yet
    (".venv/bin/musictag ci nowhere/evaluate.json other/evaluate.json", "nowhere/evaluate.json"),
    (".venv/bin/musictag manifest nowhere.csv", "nowhere.csv"),
])
def test_each_user_error_is_one_line_and_a_failing_exit(repo, command, named):
    done = run_as_user(repo, command)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr and done.stderr.strip().count("\n") == 0, done.stderr
    assert done.stderr.startswith("musictag: error:") and named in done.stderr


def test_dvc_repro_indexes_a_folder_of_unseen_songs_and_tags_only_new_files(repo, tmp_path):
    """The issue's own case: a folder of songs never seen in training becomes the recommendation catalogue
    by params alone; `musictag similar new_song.flac` finds its neighbours there; a file added later is
    the only one tagged on the next `dvc repro`. The copy is put back as it was for the README's commands."""
    folder = tmp_path / "my music"
    for i in range(6):
        (folder / f"album{i % 2}").mkdir(parents=True, exist_ok=True)
        sf.write(folder / f"album{i % 2}" / f"track{i}.flac", music(30.0 + 5 * i, 22050, seed=100 + i), 22050)
    repo.set_param("catalogue.source", "folder")
    repo.set_param("catalogue.audio_dir", str(folder))
    built = run_as_user(repo, ".venv/bin/dvc repro")
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    ran = re.findall(r"Running stage '([\w-]+)'", built.stdout)
    assert ran == ["catalogue", "recommend"], ran  # the model and the rest are untouched
    assert "catalogue: 6 songs (6 tagged now, 0 from the last run" in built.stdout

    new_song = tmp_path / "some_new_song.flac"
    sf.write(new_song, music(40.0, 44100, seed=200), 44100)
    similar = run_as_user(repo, f".venv/bin/musictag similar '{new_song}' -k 3")
    assert similar.returncode == 0, similar.stderr
    catalogue_ids = {f"album{i % 2}/track{i}.flac" for i in range(6)}
    found = [line.split()[2] for line in similar.stdout.splitlines()]
    assert len(found) == 3 and set(found) <= catalogue_ids, similar.stdout

    sf.write(folder / "album1" / "track6.flac", music(33.0, 22050, seed=106), 22050)
    again = run_as_user(repo, ".venv/bin/dvc repro")
    assert "catalogue: 7 songs (1 tagged now, 6 from the last run" in again.stdout, again.stdout[-2000:]
    by_id = run_as_user(repo, ".venv/bin/musictag similar album1/track6.flac -k 2")  # an id, not a file here
    assert by_id.returncode == 0 and len(by_id.stdout.splitlines()) == 2, by_id.stderr
    assert {line.split()[2] for line in by_id.stdout.splitlines()} <= catalogue_ids

    repo.git("checkout", "--", "params.yaml", "dvc.lock")
    restored = run_as_user(repo, ".venv/bin/dvc repro")
    assert restored.returncode == 0 and "catalogue: 40 songs, the pipeline's own" in restored.stdout, restored.stdout[-2000:]


def test_every_readme_command_runs_as_printed(repo):
    """After the others but the two-machine tests: the README's `dvc exp run` lines add the experiments
    `musictag ci` needs, and the two-machine test shares."""
    for command in readme_commands(README.read_text()):
        write_audio_named_in(command, repo.path)
        done = run_as_user(repo, command)
        assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        assert "Traceback" not in done.stdout + done.stderr, f"{command}\n{done.stderr[-2000:]}"
        assert done.stdout.strip() or "dvc exp run" in command, command


def sharing_blocks(text: str) -> tuple[list[str], list[str]]:
    """The command lines of README "Sharing models and runs": machine A's block and machine B's."""
    section = text.split("## Sharing models and runs", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 2, "README: the sharing section has machine A's block and machine B's"
    return [command_lines(block) for block in blocks]


SHARED = {}  # clone B of the two-machine test, for the browser test after it


def test_two_machines_share_models_runs_and_experiments(repo, tmp_path):
    """README "Sharing models and runs", both blocks as printed but for the remotes' paths (a bare Git repository
    and a local DVC remote here): a fresh clone B pulls everything A pushed, `dvc repro` runs nothing, Git and DVC
    are clean, A's experiments arrive, and B recommends, tags by artifact name and compares two experiments."""
    on_a, on_b = sharing_blocks(README.read_text())
    places = {"/srv/musictag.git": str(tmp_path / "musictag.git"), "/srv/musictag-dvc": str(tmp_path / "dvc-remote")}

    def as_printed(line: str) -> str:
        for printed, here in places.items():
            line = line.replace(printed, here)
        return line

    experiments = run_as_user(repo, ".venv/bin/dvc exp list -A --name-only").stdout.split()
    assert len(experiments) >= 2, "the README's `dvc exp run` lines ran before this test"
    repo.git("add", "-u")  # "after a `dvc exp run` and a commit": the last experiment's and paper mode's runs
    repo.git("commit", "-qm", "runs")
    for line in on_a:
        done = run_as_user(repo, as_printed(line))
        assert done.returncode == 0, f"A: {line}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"

    clone, *in_b = on_b
    assert clone.startswith("git clone") and clone.endswith("&& make venv")
    b = SimpleNamespace(path=tmp_path / "musictag", env=repo.env)
    subprocess.run(["git", "clone", "-q", places["/srv/musictag.git"], str(b.path)], check=True, env=repo.env)
    install_venv(b.path)  # `make venv`, without reinstalling the suite's packages
    for line in in_b:
        write_audio_named_in(line, b.path)
        done = run_as_user(b, as_printed(line).replace("-o my-tagger", f"-o {tmp_path / 'my-tagger'}"))
        assert done.returncode == 0, f"B: {line}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        if line.endswith("dvc repro"):
            assert "Running stage" not in done.stdout, done.stdout[-2000:]
            assert run_as_user(b, ".venv/bin/dvc status").stdout.strip() == "Data and pipelines are up to date."
            assert run_as_user(b, "git status --porcelain").stdout.strip() == ""
        if "similar" in line:
            assert len(done.stdout.splitlines()) == 5, done.stdout
        if "--model tagger" in line:
            assert done.stdout.startswith("tagged by ") and "(k2c1)" in done.stdout.splitlines()[0], done.stdout
    assert (b.path / "data" / "artifacts" / "tagger@v1.0.0" / "best.keras").is_file()
    assert (tmp_path / "my-tagger" / "config.json").is_file()
    assert sorted(run_as_user(b, ".venv/bin/dvc exp list -A --name-only").stdout.split()) == sorted(experiments)

    report = run_as_user(b, f".venv/bin/musictag report {experiments[0]} {experiments[1]}")
    assert report.returncode == 0, report.stderr[-2000:]
    markdown = (b.path / "report" / "report.md").read_text()
    assert f"## Metrics: {experiments[0]}" in markdown and "| metrics/evaluate.json | auc_roc.macro |" in markdown
    assert "| params.yaml | train.seed |" in markdown  # the README's two runs differ by their seed
    page = (b.path / "report" / "report.html").read_text()
    assert 'src="http' not in page and page.count('src="data:image/png;base64,') >= 6  # self-contained
    SHARED["report"] = b.path / "report" / "report.html"


def test_the_report_of_two_experiments_renders_in_headless_chromium(browser):
    if "report" not in SHARED:
        pytest.skip("the two-machine test did not get as far as its report")
    browser.get(SHARED["report"].as_uri())
    assert browser.find_element("tag name", "h1").text == "musictag report"
    assert len(browser.find_elements("tag name", "table")) >= 2
    images = browser.find_elements("tag name", "img")
    assert len(images) >= 6 and all(
        browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i) > 100 for i in images)
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
