"""params.yaml's typed schema (musictag.params): every bad value is one line naming its key, every key
lives in params.yaml only (no default in the code), and the schema's choices are the registries' names."""
from __future__ import annotations

import copy
import inspect
import typing

import pytest
import yaml

from musictag import params as schema
from musictag.errors import MusictagError
from musictag.paths import PARAMS_PATH

PARAMS = yaml.safe_load(PARAMS_PATH.read_text())


def with_value(key: str, value) -> dict:
    """params.yaml with `key` (dotted) set to `value`; `...` removes it."""
    changed = copy.deepcopy(PARAMS)
    *sections, last = key.split(".")
    target = changed
    for section in sections:
        target = target[section]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return changed


def test_params_yaml_passes_and_every_section_has_a_schema():
    checked = schema.load_params()
    assert list(checked) == list(PARAMS) == list(schema.Params.model_fields)
    assert checked["train"] == PARAMS["train"] and checked["data"]["mtg-jamendo"] == PARAMS["data"]["mtg-jamendo"]
    assert schema.load_params("spectrograms")["front_end"] == PARAMS["spectrograms"]["front_end"]


@pytest.mark.parametrize("key, value, says", [
    ("train.epochs", 0, "train.epochs: should be greater than 0, got 0"),
    ("train.batch_size", 16.0, "train.batch_size: should be a valid integer, got 16.0"),
    ("train.batch_size", True, "train.batch_size: should be a valid integer, got True"),
    ("train.mixed_precision", True, "train.mixed_precision: should be False, 'float16' or 'bfloat16', got True"),
    ("train.backend", "torch", "train.backend: should be 'tensorflow' or 'jax', got 'torch'"),
    ("train.strategy", "multi_worker", None),  # fine on tensorflow
    ("train.learning_rate", float("nan"), "train.learning_rate: should be a finite number"),
    ("train.epoch", 3, "train.epoch: unknown key (a typo?)"),
    ("train.seed", ..., "train.seed: missing"),
    ("model", "k9", "model: should be 'k2c1', 'k1c2', 'k2c2', 'crnn', 'short_resnet', 'msd-crnn' or 'msd-cnn', got 'k9'"),
    ("models", {"k2c3": {}}, "models.k2c3: unknown name, should be 'k2c1'"),
    ("shards.compression", "BZ2", "shards.compression: should be '', 'GZIP' or 'ZLIB', got 'BZ2'"),
    ("shards.examples_per_shard", -1, "shards.examples_per_shard: should be greater than 0, got -1"),
    ("spectrograms.executor", "dask", "spectrograms.scheduler_address: the dask executor needs one"),
    ("spectrograms.front_end.n_mels", "96", "spectrograms.front_end.n_mels: should be a valid integer, got '96'"),
    ("spectrograms.front_end.top_db", None, None),  # null: no floor
    ("spectrograms.front_end.amin", 0.0, "spectrograms.front_end.amin: should be greater than 0, got 0.0"),
    ("clean.timeout_s", 0, "clean.timeout_s: should be greater than 0, got 0"),
    ("catalogue.windows", "first", "catalogue.windows: should be 'middle' or 'all', got 'first'"),
    ("tsne.n_iter", 100, "tsne.n_iter: should be greater than or equal to 250, got 100"),
    ("recommend.features", ["lyrics"], "recommend.features.0: should be 'tags', 'embeddings', 'msd-crnn' or 'msd-cnn'"),
    ("recommend.features", ["tags", "tags"], "recommend.features: each block at most once"),
    ("paper.seeds", [1], "paper.seeds: list should have at least 2 items"),
    ("data.source", "fma", "data.source: should be 'embedded', 'folder', 'msd', 'mtat' or 'mtg-jamendo'"),
    ("data.embedded.n_clips", 2, "data.embedded.n_clips: should be greater than or equal to 3, got 2"),
    ("data.embedded.split_fractions", [0.8, 0.1], "data.embedded.split_fractions: list should have at least 3"),
    ("data.embedded.split_fractions", [0, 0, 0], "data.embedded.split_fractions: the three shares must not all"),
    ("data.folder.tag_separator", "", "data.folder.tag_separator: string should have at least 1 character"),
    ("data.mtat.split", "won2020", "data.mtat.split_dir: required for split won2020"),
    ("data.mtg-jamendo.split_number", -1, "data.mtg-jamendo.split_number: should be greater than or equal to 0"),
])
def test_a_bad_value_is_one_line_naming_its_key(tmp_path, key, value, says):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(with_value(key, value), sort_keys=False))
    if says is None:
        schema.load_params(params_path=path)
        return
    with pytest.raises(MusictagError) as caught:
        schema.load_params(params_path=path)
    assert str(caught.value).startswith("params.yaml: ") and "\n" not in str(caught.value)
    assert str(caught.value).startswith(f"params.yaml: {says}"), str(caught.value)
    with pytest.raises(MusictagError) as alone:  # a stage reading only that section fails alike
        schema.load_params(key.split(".")[0], params_path=path)
    assert str(alone.value) == str(caught.value)


def test_a_stage_fails_on_its_own_section_only(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(with_value("tsne.k", 0), sort_keys=False))
    assert schema.load_params("train", params_path=path) == PARAMS["train"]
    with pytest.raises(MusictagError, match=r"^params.yaml: tsne.k: "):
        schema.load_params("tsne", params_path=path)


def test_overrides_are_checked():
    assert schema.defaults("train", epochs=2)["epochs"] == 2
    with pytest.raises(MusictagError, match=r"train.epochs: should be greater than 0"):
        schema.defaults("train", epochs=0)


def _names(annotation) -> set:
    """The choices of a Literal (inside Annotated/list/dict too)."""
    if typing.get_origin(annotation) is typing.Literal:
        return set(typing.get_args(annotation))
    return set().union(*(_names(a) for a in typing.get_args(annotation))) if typing.get_args(annotation) else set()


def _choices(section, key: str) -> set:
    return _names(section.model_fields[key].annotation)


def test_the_schema_s_choices_are_the_registries():
    from musictag.datasets.adapters import DATASETS
    from musictag.datasets.categories import CATEGORIES
    from musictag.features.extraction import EXECUTORS
    from musictag.features.shard_dataset import SPECTROGRAM_DTYPES
    from musictag.inference.tag_map import PALETTE
    from musictag.model.architectures import MODELS
    from musictag.model.engines import ENGINES
    from musictag.model.training import MIXED_PRECISION

    assert _choices(schema.Params, "model") == set(MODELS) == _names(schema.Paper.model_fields["architectures"]
                                                                        .annotation)
    assert _choices(schema.Data, "source") == set(DATASETS) == set(CATEGORIES)
    assert set(schema.Data.model_fields) - {"source"} == {name.replace("-", "_") for name in DATASETS}
    assert _choices(schema.Catalogue, "source") == {"training"} | set(DATASETS) - {"embedded"}
    assert _choices(schema.Train, "backend") == set(ENGINES)
    assert _choices(schema.Train, "strategy") == set().union(*(engine.strategies for engine in ENGINES.values()))
    for backend, engine in ENGINES.items():  # the schema lets each backend have its engine's strategies only
        for strategy in _choices(schema.Train, "strategy"):
            values = {**PARAMS["train"], "backend": backend, "strategy": strategy}
            try:
                schema.check("train", values)
                allowed = True
            except MusictagError:
                allowed = False
            assert allowed == (strategy in engine.strategies), (backend, strategy)
    assert _choices(schema.Train, "mixed_precision") == set(MIXED_PRECISION)
    assert _choices(schema.Shards, "spectrogram_dtype") == set(SPECTROGRAM_DTYPES)
    assert _choices(schema.Spectrograms, "executor") == set(EXECUTORS)
    assert schema.Tsne.model_fields["n_coloured_tags"].metadata[-1].le == len(PALETTE)


def _library_calls():
    """(function, params values it takes as keyword arguments) for every library function a stage hands a
    params section to."""
    from musictag.audio import checks, decoding, frontend
    from musictag.datasets import cleaning
    from musictag.datasets import corpus
    from musictag.datasets import adapters as datasets
    from musictag.evaluation import evaluate as metrics
    from musictag.evaluation.paper import statistics as paper
    from musictag.features import shard_writer as records
    from musictag.features import extraction as spectrograms
    from musictag.inference import catalogue
    from musictag.inference import recommendation as recommend
    from musictag.inference import tag_map as tsne_map
    from musictag.model import training

    params = schema.load_params()
    front_end = params["spectrograms"]["front_end"]
    calls = [(training.train, params["train"]), (records.write_shards, params["shards"]),
             (spectrograms.extract, params["spectrograms"]), (cleaning.clean_manifest, params["clean"]),
             (recommend.build_recommendations, params["recommend"]), (recommend.RecommendIndex.build,
                                                                      params["recommend"]),
             (recommend.retrieval_metrics, params["recommend"]), (tsne_map.build_map, params["tsne"]),
             (tsne_map.embed, params["tsne"]), (tsne_map.select_rows, params["tsne"]),
             (catalogue.build_catalogue, params["catalogue"]), (metrics.evaluate, params["evaluate"]),
             (paper.compare, params["paper"]), (corpus.build_corpus, params["data"]["embedded"]),
             (checks.check_audio, params["clean"]), (checks.check_window, params["clean"] | front_end),
             (checks.check_many, params["clean"])]
    calls += [(function, front_end) for function in (frontend.log_mel, decoding.load_window, decoding.spectrogram_of,
                                                     frontend.finite_log_mel, frontend.song_spectrograms,
                                                     frontend.spectrogram_shape, frontend.warm_up)]
    calls += [(adapter, params["data"][name]) for name, adapter in datasets.DATASETS.items()]
    return calls


def test_no_library_function_repeats_a_default_of_params_yaml():
    repeated = []
    for function, values in _library_calls():
        for name, parameter in inspect.signature(function).parameters.items():
            if name in values and parameter.default is not inspect.Parameter.empty \
                    and parameter.default not in (None, "", [], ()):  # None/"": an optional file not given
                repeated.append(f"{function.__module__}.{function.__qualname__}({name}={parameter.default!r})")
    assert repeated == []
