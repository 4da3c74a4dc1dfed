"""dvc.yaml lists exactly what each stage reads: the library modules its script imports (transitively)
and the params keys it reads. Both are derived here from the code, so a stage can never miss a rerun
because someone added an import or a params key and forgot dvc.yaml."""
from __future__ import annotations

import ast
from pathlib import Path

import yaml

from musictag.paths import REPO_ROOT

# Modules whose edits cannot change any output: the user's error lines, and the package markers (every
# `__init__.py` holds only its docstring: test_package_markers_hold_only_a_docstring).
NOT_DEPS = {"musictag/errors.py"} | {str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "musictag").rglob("__init__.py")}
# Params that choose how a stage runs, not what it writes (parallelism, where a cluster is).
EXECUTION_ONLY = {"clean.workers", "spectrograms.executor", "spectrograms.workers",
                  "spectrograms.scheduler_address", "shift.workers"}
# Params a stage reads in a section but replaces with its own value: paper runs take `train` but their seed
# and epoch count come from the matrix and `paper.recipe` (musictag.evaluation.paper.runs.schedule).
REPLACED = {"run": {"train.seed", "train.epochs"}}


def _module_file(name: str) -> str | None:
    path = REPO_ROOT / (name.replace(".", "/") + ".py")
    return str(path.relative_to(REPO_ROOT)) if name.startswith("musictag.") and path.is_file() else None


def _imported_modules(path: Path) -> set[str]:
    """musictag modules `path` imports anywhere in it (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {f for a in node.names if (f := _module_file(a.name))}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f for f in [_module_file(node.module)] if f}
            found |= {f for a in node.names if (f := _module_file(f"{node.module}.{a.name}"))}
    return found


def library_modules(script: Path) -> set[str]:
    """Every musictag module the stage script reaches through imports, without NOT_DEPS."""
    seen, todo = set(), list(_imported_modules(script))
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += _imported_modules(REPO_ROOT / module)
    return seen - NOT_DEPS


def _constant(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def params_read(script: Path) -> set[str]:
    """Dotted params keys the script reads; a whole section ("train") where it passes it on whole or
    indexes it by a computed key. Follows `x = load_params(...)`, `x["k"]`, `x.get("k")` and
    `y = x["section"]` one level deep, which is how the stage scripts read their params."""
    tree = ast.parse(script.read_text())
    prefixes: dict[str, str] = {}  # variable name -> the params path it holds ("" = all of params.yaml)

    def path_of(node: ast.AST) -> str | None:
        """The params path an expression holds, or None where it is not params."""
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "load_params":
            return _constant(node.args[0]) if node.args else ""
        if isinstance(node, ast.Name):
            return prefixes.get(node.id)
        key = None
        if isinstance(node, ast.Subscript):
            base, key = path_of(node.value), _constant(node.slice)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "get" and node.args:
            base, key = path_of(node.func.value), _constant(node.args[0])
        else:
            return None
        if base is None:
            return None
        return f"{base}.{key}".lstrip(".") if key is not None else base + "\0"  # \0: indexed by a computed key

    for node in ast.walk(tree):  # assignments first, in source order
        if isinstance(node, ast.Assign):
            targets = node.targets[0].elts if isinstance(node.targets[0], ast.Tuple) else node.targets
            values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
            for target, value in zip(targets, values):
                if isinstance(target, ast.Name) and (p := path_of(value)) is not None:
                    prefixes[target.id] = p
    read = set()
    for node in ast.walk(tree):
        p = path_of(node) if isinstance(node, (ast.Subscript, ast.Call, ast.Name)) else None
        if p is None:
            continue
        if "\0" in p:
            read.add(p.split("\0")[0])
        elif not isinstance(node, ast.Name):  # a variable: what it is indexed by is counted at the subscript
            read.add(p)
    # a read that only leads to a longer one is covered by it, unless it is also used whole (passed on,
    # unpacked): those uses are counted here
    whole = set()
    for node in ast.walk(tree):
        used = []
        if isinstance(node, ast.keyword) and node.arg is None:  # **params
            used = [node.value]
        elif isinstance(node, ast.Call):
            used = [a for a in node.args if getattr(node.func, "id", None) != "load_params"]
            used += [k.value for k in node.keywords if k.arg is not None]
        for value in used:
            if isinstance(value, (ast.Name, ast.Subscript, ast.Call)) and (p := path_of(value)) is not None \
                    and "\0" not in p:
                whole.add(p)
    leaves = {p for p in read if not any(o.startswith(p + ".") for o in read)}
    return {p for p in leaves | whole if p} - EXECUTION_ONLY


def _covered(key: str, listed: set[str], params: dict, replaced: frozenset[str] = frozenset()) -> bool:
    """Whether dvc.yaml's listed params cover `key`: it or a section above it is listed, or every key
    below it (in params.yaml) is covered, minus the execution-only and the `replaced` ones."""
    if key in EXECUTION_ONLY | replaced or any(key == p or key.startswith(p + ".") for p in listed):
        return True
    value = params
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return isinstance(value, dict) and bool(value) and all(_covered(f"{key}.{k}", listed, params, replaced)
                                                           for k in value)


def _stages(dvc_yaml: Path) -> list[tuple[str, Path, dict]]:
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    found = []
    for name, stage in stages.items():
        module = stage["cmd"].split("python -m ", 1)[1].split()[0]
        found.append((name, REPO_ROOT / (module.replace(".", "/") + ".py"), stage))
    return found


def _check(dvc_yaml: Path) -> list[str]:
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    problems = []
    for name, script, stage in _stages(dvc_yaml):
        deps = {d for d in stage.get("deps", []) if isinstance(d, str)}
        listed_modules = {d for d in deps if d.startswith("musictag/") and d.endswith(".py")}
        needed = library_modules(script)
        problems += [f"{name}: imports {m}, not in deps" for m in sorted(needed - listed_modules)]
        problems += [f"{name}: lists {m}, which it does not import" for m in sorted(listed_modules - needed)]
        if str(script.relative_to(REPO_ROOT)) not in deps:
            problems.append(f"{name}: its script {script.relative_to(REPO_ROOT)} is not in deps")
        problems += [f"{name}: lists {d}, which does not exist" for d in sorted(deps)
                     if d.startswith(("musictag/", "stages/")) and not (REPO_ROOT / d).exists()]
        listed = {p for p in stage.get("params", []) if isinstance(p, str)}
        replaced = frozenset(REPLACED.get(name, ()))
        problems += [f"{name}: reads params {k}, not listed" for k in sorted(params_read(script))
                     if not _covered(k, listed, params, replaced)]
    return problems


def test_every_stage_lists_the_modules_it_imports_and_the_params_it_reads():
    assert _check(REPO_ROOT / "dvc.yaml") == []


def test_paper_stages_list_the_modules_they_import_and_the_params_they_read():
    assert _check(REPO_ROOT / "paper" / "dvc.yaml") == []


def test_the_derivation_sees_function_level_imports_and_params_reads(tmp_path):
    """The checker itself: a late import and a params key read through a section variable are found."""
    script = tmp_path / "stage.py"
    script.write_text("from musictag.params import load_params\n"
                      "def main():\n"
                      "    from musictag.inference.recommendation import build_index\n"
                      "    params = load_params()\n"
                      "    options = params['tsne']\n"
                      "    build_index(k=params['recommend']['k'], perplexity=options['perplexity'])\n")
    assert {"musictag/inference/recommendation.py", "musictag/paths.py"} <= library_modules(script)
    assert params_read(script) == {"recommend.k", "tsne.perplexity"}
    assert not _covered("recommend.k", {"recommend.features"}, {"recommend": {"k": 10, "features": ["tags"]}})
    assert _covered("recommend.k", {"recommend"}, {})


def _docstring_or_version(node: ast.stmt) -> bool:
    return (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)) or \
        (isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["__version__"])


def test_package_markers_hold_only_a_docstring():
    """Importing any module runs its packages' `__init__.py`; they stay out of the stages' deps only while
    they cannot change an output (the top-level one may name the version)."""
    busy = [str(path.relative_to(REPO_ROOT)) for path in (REPO_ROOT / "musictag").rglob("__init__.py")
            if any(not _docstring_or_version(node) for node in ast.parse(path.read_text()).body)]
    assert busy == []
