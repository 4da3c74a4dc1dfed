"""t-SNE map: PNG and self-contained HTML, colours, audio sources, and the page in headless Chromium."""
import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile
from songs import NASTY, catalogue

from musictag.datasets.manifest import Manifest
from musictag.errors import MusictagError
from musictag.inference.tag_map import build_map, colour_by_top_tag, embed, page_json, select_rows
from musictag.params import defaults

def page_data(html: str) -> dict:
    match = re.search(r'<script type="application/json" id="map-data">(.*?)</script>', html, re.S)
    return json.loads(match.group(1))


@pytest.fixture(scope="module")
def maps(tmp_path_factory):
    """One map with linked audio and one with embedded audio, built once for the module."""
    root = tmp_path_factory.mktemp("tsne")
    predictions, manifest = catalogue(root)
    fast = dict(n_iter=250, k=5, n_jobs=1)
    linked = build_map(predictions, manifest, root / "linked", features=["tags"], embedding_components=0,
                       **defaults("tsne", embed_audio_max_songs=10, **fast))
    embedded = build_map(predictions, manifest, root / "embedded", features=["tags"], embedding_components=0,
                         **defaults("tsne", embed_audio_max_songs=50, max_songs=12, **fast))
    return root, predictions, linked, embedded


def test_png_and_self_contained_html_are_written(maps):
    root, predictions, linked, _ = maps
    png = (root / "linked" / "map.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    html = (root / "linked" / "map.html").read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "http://" not in html and "https://" not in html
    assert not re.search(r"<script[^>]*\bsrc=|<link[^>]*stylesheet", html, re.I)
    assert html.count("</script>") == 2 and "<script>alert" not in html  # nasty text stayed inside the JSON
    data = page_data(html)
    songs = data["songs"]
    assert songs["id"] == [f"song{i:03d}" for i in range(38)]  # the test split only
    assert songs["title"][7] == f"Song 7 {NASTY}" and data["tags"][1] == NASTY
    assert all(0 <= v <= 1 for v in songs["x"] + songs["y"])
    assert all(len(n) == 5 and i not in n for i, n in enumerate(songs["neighbours"]))
    assert all(len(t) == 3 and t[0][1] >= t[1][1] >= t[2][1] for t in songs["top"])
    assert linked["n_songs"] == 38 and linked["audio"] == "linked" and 0 <= linked["neighbourhood_kept_at_10"] <= 1


def test_linked_audio_is_relative_to_the_page(maps):
    root, *_ = maps
    data = page_data((root / "linked" / "map.html").read_text(encoding="utf-8"))
    assert data["songs"]["audio"][3] == "../corpus/song003.wav"
    assert (root / "linked" / data["songs"]["audio"][3]).resolve() == (root / "corpus" / "song003.wav").resolve()


def test_small_maps_embed_playable_audio(maps):
    root, _, _, embedded = maps
    assert embedded["n_songs"] == 12 and embedded["audio"] == "embedded"
    html = (root / "embedded" / "map.html").read_text(encoding="utf-8")
    data = page_data(html)
    source = data["songs"]["audio"][0]
    assert source.startswith("data:audio/mpeg;base64,")
    audio, sample_rate_hz = soundfile.read(io.BytesIO(base64.b64decode(source.split(",", 1)[1])))
    assert sample_rate_hz == 8000 and abs(len(audio) - 8000) < 2000


def test_page_json_cannot_close_its_script():
    text = page_json({"title": "</script><!-- & >"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"title": "</script><!-- & >"}


def test_colours_go_to_the_most_common_top_tags():
    probabilities = np.zeros((10, 4))
    for row, tag in enumerate([2, 2, 2, 0, 0, 3, 1, 2, 0, 3]):
        probabilities[row, tag] = 1
    colouring = colour_by_top_tag(probabilities, ["a", "b", "c", "d"], n_coloured=2)
    assert [(tag, count) for tag, _, count in colouring.legend] == [("c", 4), ("a", 3)]
    assert colouring.legend_of_song.tolist() == [0, 0, 0, 1, 1, -1, -1, 0, 1, -1] and colouring.n_other == 3


def test_song_selection_and_faults(tmp_path):
    splits = np.array(["test", "train"] * 50)
    rows = select_rows(splits, "test", max_songs=10, seed=1)
    assert len(rows) == 10 and np.all(np.diff(rows) > 0) and set(splits[rows]) == {"test"}
    assert np.array_equal(rows, select_rows(splits, "test", max_songs=10, seed=1))
    assert len(select_rows(splits, "test", max_songs=1000, seed=1)) == 50
    with pytest.raises(MusictagError, match="split 'valid' has 0"):
        select_rows(splits, "valid", max_songs=10, seed=1)
    predictions, manifest = catalogue(tmp_path, n=10)
    manifest = Manifest(manifest.clips.iloc[1:], manifest.tag_names, manifest.targets[1:])
    with pytest.raises(MusictagError, match="'song000' is not in the manifest"):
        build_map(predictions, manifest, tmp_path / "out", features=["tags"], embedding_components=0,
                  **defaults("tsne", n_iter=250))


@pytest.mark.parametrize("implementation", ["sklearn", "opentsne"])
def test_both_implementations_separate_clusters(implementation):
    if implementation == "opentsne":
        pytest.importorskip("openTSNE")
    rng = np.random.default_rng(0)
    points = np.vstack([rng.normal(0, 0.05, (30, 8)), rng.normal(1, 0.05, (30, 8))])
    coordinates, kl = embed(points, implementation, perplexity=10, metric="euclidean", seed=0, n_jobs=1,
                            n_iter=300)
    assert coordinates.shape == (60, 2) and np.isfinite(kl)
    a, b = coordinates[:30].mean(axis=0), coordinates[30:].mean(axis=0)
    spread = max(coordinates[:30].std(axis=0).max(), coordinates[30:].std(axis=0).max())
    assert np.linalg.norm(a - b) > 3 * spread


# --- the page in a real browser ----------------------------------------------------------------------


def open_page(driver, path: Path) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(path.resolve().as_uri())
    WebDriverWait(driver, 20).until(lambda d: d.execute_script("return document.body.dataset.ready === 'true'"))


def page_errors(driver) -> list:
    logged = [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
    return logged + driver.execute_script("return window.__errors")


def point_at(driver, index: int):
    """Move the real mouse pointer onto song `index` of the canvas."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    canvas = driver.find_element(By.ID, "map")
    x, y = driver.execute_script("return window.tsneMap.screenPosition(arguments[0])", index)
    width, height = driver.execute_script("var b = arguments[0].getBoundingClientRect(); return [b.width, b.height]",
                                          canvas)
    actions = ActionChains(driver)
    actions.move_to_element_with_offset(canvas, int(round(x - width / 2)), int(round(y - height / 2))).perform()
    return actions


def test_page_in_headless_chromium(browser, maps):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    root, *_ = maps
    open_page(browser, root / "linked" / "map.html")
    data = browser.execute_script("return window.tsneMap.data")
    songs = data["songs"]
    # Legend: the coloured tags, escaped text shown as text.
    legend = browser.find_element(By.ID, "legend").text
    assert all(entry["tag"] in legend for entry in data["legend"])

    # Hover: the tooltip names the song and its top 3 tags with scores.
    target = 7
    actions = point_at(browser, target)
    tooltip = browser.find_element(By.ID, "tooltip")
    WebDriverWait(browser, 5).until(lambda d: tooltip.is_displayed())
    assert songs["title"][target] in tooltip.text and songs["artist"][target] in tooltip.text
    for tag, score in songs["top"][target]:
        assert data["tags"][tag] in tooltip.text and f"{score:.2f}" in tooltip.text
    assert browser.execute_script("return window.tsneMap.state.hovered") == target

    # Click: details, an audio player with the clip, and the k neighbours as buttons.
    actions.click().perform()
    details = browser.find_element(By.ID, "details")
    WebDriverWait(browser, 5).until(lambda d: details.get_attribute("data-id") == songs["id"][target])
    assert songs["title"][target] in details.text
    audio = details.find_element(By.TAG_NAME, "audio")
    assert audio.get_attribute("src").endswith("/corpus/song007.wav")
    buttons = browser.find_elements(By.CSS_SELECTOR, "#neighbours button")
    assert [b.get_attribute("data-id") for b in buttons] == [songs["id"][m] for m in songs["neighbours"][target]]
    WebDriverWait(browser, 10).until(lambda d: d.execute_script(
        "var a = document.querySelector('#details audio'); return a.readyState >= 1 || a.error !== null"))
    assert browser.execute_script("return document.querySelector('#details audio').error") is None  # clip loads

    # A neighbour is clickable too: it becomes the selected song.
    second = songs["neighbours"][target][1]
    buttons[1].click()
    WebDriverWait(browser, 5).until(lambda d: details.get_attribute("data-id") == songs["id"][second])
    assert len(browser.find_elements(By.CSS_SELECTOR, "#neighbours li")) == data["k"]

    # Search: a title substring highlights that song and centres the view on it.
    search = browser.find_element(By.ID, "search")
    search.send_keys("song 23")
    WebDriverWait(browser, 5).until(lambda d: d.execute_script("return window.tsneMap.state.highlighted") == 23)
    assert browser.find_element(By.ID, "search-status").text == "1 match"
    result = browser.find_element(By.CSS_SELECTOR, "#search-results li.highlight")
    assert songs["title"][23] in result.text
    view = browser.execute_script("return window.tsneMap.view")
    assert view["cx"] == pytest.approx(songs["x"][23]) and view["cy"] == pytest.approx(songs["y"][23])
    x, y = browser.execute_script("return window.tsneMap.screenPosition(23)")
    centre = browser.execute_script("var c = document.getElementById('map'); return [c.clientWidth, c.clientHeight]")
    assert [centre[0] / 2, centre[1] / 2] == [pytest.approx(x, abs=1), pytest.approx(y, abs=1)]
    search.clear()
    search.send_keys("Artist 3")  # substring of the artist: several matches
    WebDriverWait(browser, 5).until(lambda d: d.find_element(By.ID, "search-status").text.endswith("matches"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#search-results li")) == sum(
        a == "Artist 3" for a in songs["artist"])
    assert page_errors(browser) == []


def test_page_with_embedded_audio_plays_without_errors(browser, maps):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    root, *_ = maps
    open_page(browser, root / "embedded" / "map.html")
    point_at(browser, 2).click().perform()
    WebDriverWait(browser, 10).until(lambda d: d.execute_script(
        "var a = document.querySelector('#details audio'); return a && (a.readyState >= 1 || a.error !== null)"))
    assert browser.execute_script("return document.querySelector('#details audio').error") is None
    duration = browser.execute_script("return document.querySelector('#details audio').duration")
    assert duration == pytest.approx(1, abs=0.2)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#neighbours li")) == 5
    assert page_errors(browser) == []
