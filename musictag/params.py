"""params.yaml, read and checked in one place: a typed schema per section (pydantic).

Every value a stage reads is checked here, before any work, and a bad one is one line naming its key
(`params.yaml: train.batch_size: should be greater than 0, got 0`). The schema holds types, ranges and
choices only, never defaults: every key must be in params.yaml, the one home of every default, and an
unknown key (a typo) is an error rather than silently ignored.

The choices listed here are the names of registries elsewhere (models.MODELS, engines.ENGINES,
datasets.DATASETS, ...); this module imports none of them, so that reading params stays cheap and
editing a registry does not rerun every stage. tests/test_params.py keeps the two in step.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from musictag.errors import MusictagError
from musictag.paths import PARAMS_PATH

PositiveInt = Annotated[int, Field(gt=0)]
Count = Annotated[int, Field(ge=0)]  # 0 allowed: "all cores", "off", "none"
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Number = Annotated[float, Field(allow_inf_nan=False)]
Share = Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)]  # a probability or confidence level
Split = Literal["train", "valid", "test"]


def _some_share(fractions: list[float]) -> list[float]:
    if not sum(fractions) > 0:
        raise ValueError("the three shares must not all be 0")
    return fractions


SplitFractions = Annotated[list[Annotated[float, Field(ge=0, allow_inf_nan=False)]], Field(min_length=3, max_length=3),
                           AfterValidator(_some_share)]  # train, valid, test; need not sum to 1


class Section(BaseModel):
    """Strict: an integer key takes no 3.0, "3" or true; a float key takes an integer."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# --- data: the dataset adapters (musictag.datasets.adapters.DATASETS) -----------------------------------------------

class EmbeddedData(Section):
    n_clips: Annotated[int, Field(ge=3)]  # at least one clip per split
    seed: int
    sample_rate_hz: Annotated[int, Field(ge=8000)]
    clip_duration_s: Positive
    split_fractions: SplitFractions
    audio_dir: str
    soundfonts: Annotated[list[str], Field(min_length=1)]  # file names or paths (musictag.datasets.corpus)
    timbre_variation: bool
    workers: Count


class FolderData(Section):
    audio_dir: str
    tags_csv: str
    split_column: str
    id_column: str
    path_column: str
    artist_column: str
    title_column: str
    tags_column: str
    tag_separator: Annotated[str, Field(min_length=1)]
    seed: int
    split_fractions: SplitFractions


class MsdData(Section):
    split_dir: str
    audio_dir: str
    tags_file: str  # "" = the split folder's own tag list
    keep_lists: list[str]  # filtered_list_*.cP files; [] = keep every clip
    tracks_file: str  # "" = no artist and title names


class MtatData(Section):
    annotations_csv: str
    audio_dir: str
    split: Literal["won2020", "folders"]
    split_dir: str  # "" = none (allowed only with split: folders)

    @model_validator(mode="after")
    def _won_needs_its_folder(self):
        if self.split == "won2020" and not self.split_dir:
            raise ValueError("split_dir: required for split won2020 (minzwon's split/mtat folder)")
        return self


class JamendoData(Section):
    split_dir: str
    audio_dir: str
    split_number: Count


DatasetName = Literal["embedded", "folder", "msd", "mtat", "mtg-jamendo"]


class Data(Section):
    source: DatasetName
    embedded: EmbeddedData
    folder: FolderData
    msd: MsdData
    mtat: MtatData
    mtg_jamendo: JamendoData = Field(alias="mtg-jamendo")

    def adapter_options(self) -> dict:
        """The keyword arguments of the adapter `source` names."""
        return dict(getattr(self, self.source.replace("-", "_")))


# --- pipeline stages ---------------------------------------------------------------------------------------

class Limits(Section):
    """Per-file bounds of a worker pool (musictag.audio.workers)."""

    timeout_s: Positive
    memory_limit_mb: Positive


class Clean(Limits):
    min_duration_s: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    silence_dbfs: Number
    workers: Count


class FrontEnd(Section):
    """The log-mel front end (dissertation Algorithm 1); musictag.audio.decoding takes these as keyword arguments."""

    sample_rate_hz: PositiveInt
    duration_s: Positive
    n_fft: Annotated[int, Field(ge=2)]
    hop_length: PositiveInt
    n_mels: PositiveInt
    square_power: bool
    ref: Positive
    amin: Positive
    top_db: Optional[Positive]  # null: no floor


class Spectrograms(Limits):
    front_end: FrontEnd
    chunk_size: PositiveInt
    executor: Literal["processes", "dask"]
    workers: Count
    scheduler_address: str

    @model_validator(mode="after")
    def _dask_needs_a_scheduler(self):
        if self.executor == "dask" and not self.scheduler_address:
            raise ValueError("scheduler_address: the dask executor needs one (e.g. tcp://scheduler-host:8786)")
        return self


class Shards(Section):
    examples_per_shard: PositiveInt
    compression: Literal["", "GZIP", "ZLIB"]
    spectrogram_dtype: Literal["float16", "float32"]
    seed: int


PretrainedName = Literal["msd-crnn", "msd-cnn"]  # musictag.pretrained.REFERENCE_TAGGERS


class Train(Section):
    epochs: PositiveInt
    batch_size: PositiveInt
    learning_rate: Positive
    beta_1: Annotated[float, Field(ge=0, lt=1)]
    beta_2: Annotated[float, Field(ge=0, lt=1)]
    epsilon: Positive
    shuffle_buffer: PositiveInt
    seed: int
    early_stopping_patience: Count
    mixed_precision: Literal[False, "float16", "bfloat16"]
    jit_compile: bool
    strategy: Literal["default", "mirrored", "multi_worker"]
    backend: Literal["tensorflow", "jax"]
    init: Literal["", PretrainedName]

    @model_validator(mode="after")
    def _strategy_of_the_backend(self):
        if self.strategy == "multi_worker" and self.backend != "tensorflow":
            raise ValueError(f"strategy: multi_worker runs on the tensorflow backend only, not {self.backend}")
        return self


ModelName = Literal["k2c1", "k1c2", "k2c2", "crnn", "short_resnet", "msd-crnn", "msd-cnn"]


class Paper(Section):
    architectures: Annotated[list[ModelName], Field(min_length=1)]
    seeds: Annotated[list[int], Field(min_length=2)]  # an interval needs two runs
    recipe: Literal["converged", "seed"]  # musictag.evaluation.paper.runs
    max_epochs: PositiveInt
    level: Share
    n_bootstrap: PositiveInt
    bootstrap_seed: int


class Shift(Section):
    soundfonts: Annotated[list[str], Field(min_length=1)]  # held out of training (musictag.evaluation.shift)
    split: Split
    workers: Count


class Evaluate(Section):
    top_songs: PositiveInt
    top_k: PositiveInt
    songs: list[str]


class Ci(Section):
    level: Share
    metrics: Annotated[list[str], Field(min_length=1)]


def _distinct(names: list[str]) -> list[str]:
    if len(set(names)) != len(names):
        raise ValueError("each block at most once")
    return names


# the recommendation space's blocks (musictag.inference.recommendation.song_vectors)
Features = Annotated[list[Literal["tags", "embeddings", PretrainedName]], Field(min_length=1), AfterValidator(_distinct)]


class Recommend(Section):
    features: Features
    embedding_components: Count
    k: PositiveInt
    split: Split
    seed: int
    exact_max_songs: Count
    hnsw_m: Annotated[int, Field(ge=2)]
    ef_search: PositiveInt


class Catalogue(Limits):
    source: Literal["training", "folder", "msd", "mtat", "mtg-jamendo"]
    audio_dir: str
    model: Literal["trained", PretrainedName]
    windows: Literal["middle", "all"]


class Tsne(Section):
    split: Split
    max_songs: Annotated[int, Field(ge=5)]
    implementation: Literal["opentsne", "sklearn"]
    perplexity: Positive
    metric: Literal["euclidean", "cosine"]
    n_iter: Annotated[int, Field(ge=250)]  # the first 250 are early exaggeration
    seed: int
    n_jobs: PositiveInt
    k: PositiveInt
    n_coloured_tags: Annotated[int, Field(ge=1, le=16)]  # musictag.inference.tag_map.PALETTE has 16 colours
    embed_audio_max_songs: Count


class Params(Section):
    """All of params.yaml."""

    model: ModelName
    data: Data
    clean: Clean
    spectrograms: Spectrograms
    shards: Shards
    train: Train
    paper: Paper
    models: dict[ModelName, dict]  # per-architecture keyword arguments of musictag.model.architectures' builders
    evaluate: Evaluate
    shift: Shift
    ci: Ci
    recommend: Recommend
    catalogue: Catalogue
    tsne: Tsne


def _adapter(annotation) -> TypeAdapter:
    strict = not (isinstance(annotation, type) and issubclass(annotation, BaseModel))  # a Section is already
    return TypeAdapter(annotation, config=ConfigDict(strict=True) if strict else None)


SECTIONS: dict[str, TypeAdapter] = {name: _adapter(field.annotation) for name, field in Params.model_fields.items()}


def _one_line(error: ValidationError, where: str, prefix: str) -> str:
    """The first problem pydantic found, as `where: section.key: what, got value`."""
    problem = error.errors(include_url=False)[0]
    key = ".".join(str(part) for part in (*([prefix] if prefix else []), *problem["loc"]))
    message = problem["msg"]
    if problem["type"] == "missing":
        return f"{where}: {key}: missing (every key must be in params.yaml, which holds all defaults)"
    if problem["type"] == "extra_forbidden":
        return f"{where}: {key}: unknown key (a typo?)"
    if problem["type"] == "value_error":  # our own validators: "key: what"
        detail = message.removeprefix("Value error, ")
        field, _, what = detail.partition(": ")
        return f"{where}: {key}.{field}: {what}" if what else f"{where}: {key}: {detail}"
    message = message.removeprefix("Input ")
    message = message[:1].lower() + message[1:]
    if key.endswith(".[key]"):  # a dict's key, not its value
        key, message = key.removesuffix(".[key]"), f"unknown name, {message}"
    return f"{where}: {key}: {message}, got {problem['input']!r}"


def check(section: str | None, values, where: str = "params") -> dict:
    """`values` of one top-level section (all of params.yaml when `section` is None) checked by the schema
    and returned as plain data; a MusictagError naming the key otherwise."""
    adapter = _adapter(Params) if section is None else SECTIONS.get(section)
    if adapter is None:
        raise MusictagError(f"{where}: no section '{section}'; known: {', '.join(SECTIONS)}")
    try:
        return adapter.dump_python(adapter.validate_python(values), by_alias=True)
    except ValidationError as err:
        raise MusictagError(_one_line(err, where, section or "")) from None


def load_params(section: str | None = None, params_path: Path = PARAMS_PATH) -> dict:
    """All of params.yaml, or one top-level section of it, checked by the schema: plain dicts and lists.

    Reading one section checks that section only, so a stage fails on its own params, not another's."""
    try:
        params = yaml.safe_load(params_path.read_text())
    except FileNotFoundError:
        raise MusictagError(f"{params_path}: params file not found") from None
    except yaml.YAMLError as err:
        raise MusictagError(f"{params_path}: not valid YAML ({err.__class__.__name__})") from None
    if not isinstance(params, dict):
        raise MusictagError(f"{params_path}: expected sections of keys, got {type(params).__name__}")
    if section is not None and section not in params:
        raise MusictagError(f"{params_path.name}: missing section '{section}'")
    return check(section, params if section is None else params[section], params_path.name)


def defaults(section: str, **overrides):
    """This repository's params.yaml values of `section`, with `overrides`, checked: what callers outside
    the stages (the CLI, benchmarks, tests) pass where params.yaml holds the value."""
    values = load_params(section)
    return check(section, {**values, **overrides}) if overrides else values
