"""The failure gallery: rows worst first, four panels each in the image's orientation, colours that say which
error is which, the page checked in a real headless browser where one is installed."""

import re
import shutil
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from pipeline import gallery
from pipeline.visualize import TRUTH


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.images, self.links = [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "data-case" in a:
            self.rows.append((a["data-case"], float(a["data-score"])))
        if tag == "img":
            self.images.append(a)
        if tag == "a":
            self.links.append(a["href"])


def _rows(n=3, h=40, w=100):
    rng = np.random.default_rng(0)
    rows = []
    for k in range(n):
        truth = np.zeros((h, w), bool)
        truth[10:30, 20 + 10 * k:60 + 10 * k] = True
        pred = np.roll(truth, 5 * (k + 1), axis=1)
        image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        rows.append({"case_id": f"case/{k}", "scores": {"IoU": 0.1 * k, "Dice": 0.2 * k}, "image": image,
                     "pred": pred, "truth": truth})
    return rows


def test_the_page_lists_the_rows_worst_first_with_four_panels_each(tmp_path):
    (tmp_path / "per_case.csv").write_text("case_id,iou\n")
    page = gallery.write(tmp_path, _rows(), "test", {"cases": "per_case.csv"})
    parsed = Page()
    parsed.feed(page.read_text())
    assert [c for c, _ in parsed.rows] == ["case/0", "case/1", "case/2"]  # ids kept; files made safe
    assert [s for _, s in parsed.rows] == sorted(s for _, s in parsed.rows)
    assert len(parsed.images) == 12 and [i["alt"] for i in parsed.images[:4]] == list(gallery.PANELS)
    for img in parsed.images:
        f = page.parent / img["src"]
        assert f.is_file() and "/" not in img["src"]
        assert Image.open(f).size == (int(img["width"]), int(img["height"])) == (100, 40)  # landscape stays landscape
    assert (page.parent / parsed.links[0]).resolve() == (tmp_path / "per_case.csv").resolve()
    assert re.search(r"IoU 0\.100", page.read_text())


def test_a_second_evaluation_leaves_no_old_rows(tmp_path):
    gallery.write(tmp_path, _rows(3), "first")
    page = gallery.write(tmp_path, _rows(1), "second")
    assert len(list(page.parent.glob("*.png"))) == 4


def test_error_colours_say_found_missed_and_extra():
    truth = np.zeros((20, 30), bool)
    truth[:, :20] = True
    pred = np.zeros((20, 30), bool)
    pred[:, 10:] = True  # columns 0-9 missed, 10-19 found, 20-29 extra
    img = gallery.error_map(np.full((20, 30, 3), 128, np.uint8), pred, truth, width=100)
    found, missed, extra = img[10, 15].astype(int), img[10, 5].astype(int), img[10, 25].astype(int)
    assert found[1] > found[0] and found[1] > found[2]  # green
    assert missed[2] > missed[0] and missed[2] > missed[1]  # blue
    assert extra[0] > extra[1] and extra[2] > extra[1]  # magenta
    assert tuple(gallery.panels(np.zeros((20, 30), np.float32), pred, truth)["truth"].shape) == (20, 30, 3)
    assert np.array_equal(np.asarray(TRUTH) > 0, found > found.min())


def _browser():
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e \".[gallery]\")"
    if not (shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")):
        return "no Chromium on PATH (apt install chromium)"
    return None


@pytest.mark.skipif(_browser() is not None, reason=f"headless browser check: {_browser()}")
def test_the_page_loads_in_a_headless_browser(tmp_path):
    page = gallery.write(tmp_path, _rows(), "browser")
    seen = gallery.check_in_browser(page, tmp_path / "shot.png")
    assert len(seen["rows"]) == 3 and all(i["ok"] and i["w"] == 100 for i in seen["images"])
    assert Image.open(tmp_path / "shot.png").size[0] >= 1000
    (page.parent / seen["images"][0]["src"]).unlink()  # a missing image is caught
    with pytest.raises(AssertionError, match="did not load"):
        gallery.check_in_browser(page)
