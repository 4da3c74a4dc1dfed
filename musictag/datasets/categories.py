"""Tag categories per dataset, for the paper report's grouped tables (dissertation tables 4.1 and 4.2).

Each dataset groups its vocabulary its own way: MSD's last.fm top 50 as the dissertation's table 3.1
(genre, mood, instrument, era), the embedded corpus by the families it derives its tags from,
MTG-Jamendo by the prefix of its tag names (`genre---rock`), and a folder by an optional column of
its tags CSV holding, `|`-joined like `tags`, each tag's category. Tags with no category are "other".
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable, Sequence

from musictag.dissertation import dissertation_facts
from musictag.errors import MusictagError

OTHER = "other"


def _msd(tag_names: Sequence[str], options: dict) -> dict[str, str]:
    grouping = {tag.lower(): category for tag, category in dissertation_facts()["tag_categories"].items()}
    return {tag: grouping.get(tag.lower(), OTHER) for tag in tag_names}


def _embedded(tag_names: Sequence[str], options: dict) -> dict[str, str]:
    from musictag.datasets import corpus

    families = {"era": corpus.ERAS, "form": corpus.FORMS, "dance": corpus.DANCES, "origin": corpus.ORIGINS,
                "mode": corpus.MODES, "meter": corpus.METERS, "tempo": corpus.TEMPI, "texture": corpus.TEXTURES,
                "instrument": list(corpus.INSTRUMENT_PROGRAMS)}
    family_of = {tag: family for family, tags in families.items() for tag in tags}
    return {tag: family_of.get(tag, OTHER) for tag in tag_names}


def _jamendo(tag_names: Sequence[str], options: dict) -> dict[str, str]:
    return {tag: tag.split("---")[0] if "---" in tag else OTHER for tag in tag_names}


def _folder(tag_names: Sequence[str], options: dict) -> dict[str, str]:
    """Categories from the tags CSV's `category_column` (default `categories`), if it has one."""
    path = Path(options["tags_csv"]).expanduser()
    tag_column, column = options.get("tag_column", "tags"), options.get("category_column", "categories")
    found: dict[str, str] = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            for line, row in enumerate(csv.DictReader(file), start=2):
                if not row.get(column):
                    continue
                tags, categories = row[tag_column].split("|"), row[column].split("|")
                if len(tags) != len(categories):
                    raise MusictagError(f"{path}: line {line} has {len(tags)} tags but {len(categories)} "
                                        f"categories in column '{column}'")
                for tag, category in zip(tags, categories):
                    if found.setdefault(tag.strip(), category.strip()) != category.strip():
                        raise MusictagError(f"{path}: line {line} puts tag '{tag.strip()}' in category "
                                            f"'{category.strip()}', an earlier line in '{found[tag.strip()]}'")
    except OSError as err:
        raise MusictagError(f"{path}: cannot read ({err.strerror})") from None
    return {tag: found.get(tag, OTHER) for tag in tag_names}


CATEGORIES: dict[str, Callable[[Sequence[str], dict], dict[str, str]]] = {
    "msd": _msd, "embedded": _embedded, "mtg-jamendo": _jamendo, "folder": _folder,
    "mtat": lambda tag_names, options: {tag: OTHER for tag in tag_names},  # MagnaTagATune gives none
}


def tag_categories(source: str, tag_names: Sequence[str], options: dict) -> dict[str, str]:
    """{tag: category} for the vocabulary of `source` (a `data.source` name), `options` its params section."""
    if source not in CATEGORIES:
        raise MusictagError(f"data.source: no tag categories for '{source}'; known: {', '.join(CATEGORIES)}")
    return CATEGORIES[source](list(tag_names), options or {})
