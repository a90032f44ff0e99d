"""The failure gallery ``evaluate`` writes: the worst cases first, one row each of image | truth | prediction |
errors, with the case id and its scores, as a self-contained HTML page beside ``per_case.csv``.

    python -m pipeline.gallery runs/<run>/eval-test/gallery/index.html --screenshot docs/gallery.png

opens a page in headless Chromium (through Playwright, with the system's Chromium: ``apt install chromium`` and
``pip install -e ".[gallery]"``; nothing is downloaded), checks that every image loaded and that the rows are in order
of score, and saves a screenshot.
"""

from __future__ import annotations

import argparse
import html
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from .visualize import PRED, TRUTH, as_rgb, overlay

MISSED = (0, 140, 255)  # truth not predicted (false negative)
EXTRA = PRED  # predicted, not truth (false positive)
PANELS = ("image", "truth", "prediction", "errors")


def _shrink(img: np.ndarray, width: int, nearest: bool = False) -> np.ndarray:
    if img.shape[1] <= width:
        return img
    size = (width, max(1, round(img.shape[0] * width / img.shape[1])))
    return np.asarray(Image.fromarray(img).resize(size, Image.NEAREST if nearest else Image.BILINEAR))


def error_map(image: np.ndarray, pred: np.ndarray, truth: np.ndarray, width: int) -> np.ndarray:
    """The image, greyed, with correct foreground in green, missed foreground in blue and extra foreground in
    magenta (each at 60% over the grey), at ``width`` pixels wide at most."""
    grey = np.repeat(np.asarray(Image.fromarray(image).convert("L"))[..., None], 3, axis=-1).astype(np.float32)
    out = grey * 0.7
    for mask, colour in ((pred & truth, TRUTH), (truth & ~pred, MISSED), (pred & ~truth, EXTRA)):
        out[mask] = 0.4 * out[mask] + 0.6 * np.asarray(colour, np.float32)
    return _shrink(out.astype(np.uint8), width, nearest=True)


def panels(image: np.ndarray, pred: np.ndarray, truth: np.ndarray, width: int = 320) -> dict[str, np.ndarray]:
    """The four panels of a gallery row, each at most ``width`` pixels wide, in the image's own orientation."""
    image = as_rgb(image)
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    if pred.shape != image.shape[:2] or truth.shape != image.shape[:2]:
        raise ValueError(f"masks {pred.shape} / {truth.shape} differ from the image {image.shape[:2]}")
    return {"image": _shrink(image, width),
            "truth": overlay(image, truth=truth, width=width),
            "prediction": overlay(image, pred=pred, width=width),
            "errors": error_map(image, pred, truth, width)}


def _safe(case_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in case_id)


def write(out_dir: str | Path, rows: list[dict], title: str, links: dict[str, str] | None = None,
          width: int = 320) -> Path:
    """``<out_dir>/gallery/index.html`` and its PNGs. ``rows``: dicts with ``case_id``, ``scores`` (name -> value,
    the first is the one they are ordered by, lowest first), ``image`` (RGB uint8), ``pred`` and ``truth`` (bool, the
    image's shape); ``links``: file names beside the gallery folder to link (``per_case.csv``)."""
    folder = Path(out_dir) / "gallery"
    if folder.is_dir():
        shutil.rmtree(folder)  # an earlier evaluation's rows must not linger
    folder.mkdir(parents=True)
    body = []
    for rank, row in enumerate(rows, 1):
        cells = []
        for name, img in panels(row["image"], row["pred"], row["truth"], width).items():
            file = f"{rank:03d}_{_safe(row['case_id'])}_{name}.png"
            Image.fromarray(img).save(folder / file)
            cells.append(f'<td><img src="{file}" width="{img.shape[1]}" height="{img.shape[0]}" alt="{name}"></td>')
        scores = " ".join(f'<span class="score">{html.escape(k)} {v:.3f}</span>' for k, v in row["scores"].items())
        body.append(f'<tr data-case="{html.escape(row["case_id"])}" data-score="{next(iter(row["scores"].values())):.6f}">'
                    f'<th scope="row"><span class="rank">{rank}</span> <span class="case">'
                    f'{html.escape(row["case_id"])}</span><br>{scores}</th>' + "".join(cells) + "</tr>")
    key = next(iter(rows[0]["scores"])) if rows else "score"
    link_html = " · ".join(f'<a href="../{html.escape(f)}">{html.escape(f)}</a>' for f in (links or {}).values())
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1em; }}
table {{ border-collapse: collapse; }}
th, td {{ border-bottom: 1px solid #ccc; padding: 4px; vertical-align: top; text-align: left; }}
th[scope=row] {{ min-width: 11em; font-weight: normal; }}
.case {{ font-weight: bold; word-break: break-all; }}
.score {{ display: inline-block; margin-right: .6em; font-family: monospace; }}
.key span {{ display: inline-block; width: 1em; height: 1em; vertical-align: middle; margin: 0 .3em 0 .8em; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>The {len(rows)} lowest-{html.escape(key)} cases, worst first. All cases: {link_html}.</p>
<p class="key">outlines: <span style="background: rgb{TRUTH}"></span>truth <span style="background: rgb{PRED}"></span>prediction
&nbsp;&nbsp; errors: <span style="background: rgb{TRUTH}"></span>found <span style="background: rgb{MISSED}"></span>missed
<span style="background: rgb{EXTRA}"></span>extra</p>
<table>
<thead><tr><th>case</th>{"".join(f"<th>{p}</th>" for p in PANELS)}</tr></thead>
<tbody>
{chr(10).join(body)}
</tbody></table></body></html>
"""
    (folder / "index.html").write_text(page, encoding="utf-8")
    return folder / "index.html"


def check_in_browser(page: str | Path, screenshot: str | Path | None = None, chromium: str | None = None) -> dict:
    """Open ``page`` in headless Chromium: every image must have loaded with its size, and the rows must be in
    increasing score. Returns what the browser saw (rows, images, page size); saves a full-page screenshot."""
    from playwright.sync_api import sync_playwright

    chromium = chromium or shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        raise SystemExit("error: no Chromium found (apt install chromium, or pass --chromium PATH)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        tab = browser.new_page(viewport={"width": 1700, "height": 1000})
        tab.goto(Path(page).resolve().as_uri(), wait_until="load")
        seen = tab.evaluate("""() => ({
            images: Array.from(document.images).map(i => ({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0,
                                                          w: i.naturalWidth, h: i.naturalHeight})),
            rows: Array.from(document.querySelectorAll('tbody tr')).map(r => ({case: r.dataset.case,
                                                                               score: parseFloat(r.dataset.score)})),
            width: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight})""")
        if screenshot:
            Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
            tab.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    broken = [i["src"] for i in seen["images"] if not i["ok"]]
    if broken:
        raise AssertionError(f"{page}: {len(broken)} images did not load in the browser, e.g. {broken[:3]}")
    scores = [r["score"] for r in seen["rows"]]
    if scores != sorted(scores):
        raise AssertionError(f"{page}: rows are not worst first: {scores}")
    if len(seen["images"]) != len(PANELS) * len(seen["rows"]):
        raise AssertionError(f"{page}: {len(seen['images'])} images for {len(seen['rows'])} rows")
    return seen


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.gallery", description=__doc__.split("\n\n")[0])
    ap.add_argument("page", help="a gallery's index.html (evaluate writes <out>/gallery/index.html)")
    ap.add_argument("--screenshot", default=None, help="save a full-page screenshot here")
    ap.add_argument("--chromium", default=None, help="the Chromium executable (default: found on PATH)")
    args = ap.parse_args(argv)
    seen = check_in_browser(args.page, args.screenshot, args.chromium)
    print(f"{args.page}: {len(seen['rows'])} rows, {len(seen['images'])} images loaded, page "
          f"{seen['width']}x{seen['height']} px" + (f"; screenshot {args.screenshot}" if args.screenshot else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
