"""The seed dissertation's published figures (musictag/dissertation.json): its epochs per architecture, the
tag categories of its table 3.1, and the results paper mode sets beside ours. One home, read by the
dataset categories and by paper mode, so neither depends on the other."""
from __future__ import annotations

import json
from pathlib import Path

FACTS_PATH = Path(__file__).with_name("dissertation.json")


def dissertation_facts() -> dict:
    """Everything in musictag/dissertation.json, as plain data."""
    return json.loads(FACTS_PATH.read_text())
