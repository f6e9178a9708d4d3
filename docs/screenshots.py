"""docs/play.png from a real run: `geosolver play` on the home `make run` built, one round played in
headless Chromium (1500 px wide), the result screenshotted: the photo, your guess (blue), the model's
(orange) and the truth (green). Run by `make docs-demo`; needs Chromium (Debian: apt-get install chromium).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))

from tests.pipelines.browser import Browser  # noqa: E402 - the tests' DevTools driver, from the repo root


def play_screenshot(home: str, out: Path, chromium: str) -> None:
    server = subprocess.Popen([str(Path(sys.executable).parent / "geosolver"), "--home", home, "play", "--port", "0",
                               "--seed", "3"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout is not None
        url = next(w for w in server.stdout.readline().split() if w.startswith("http://"))
        with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:  # Chromium may still write there
            browser = Browser(chromium, Path(profile), width=1500, height=1000)
            try:
                browser.open(f"{url.rstrip('/')}/#play")
                browser.wait_for("document.body.dataset.ready && document.querySelector('#round-photo').complete "
                                 "&& document.querySelector('#round-photo').naturalWidth")
                box = browser.js("(() => { const m = document.querySelector('#play-map'), "
                                 "r = m.getBoundingClientRect(); return {x: r.x + m.clientLeft, y: r.y + m.clientTop,"
                                 " w: m.clientWidth, h: m.clientHeight}; })()")
                scale = min(box["w"] / 360, box["h"] / 180)  # the page's equirectangular world, fitted
                left, top = box["x"] + (box["w"] - 360 * scale) / 2, box["y"] + (box["h"] - 180 * scale) / 2
                browser.click_at(left + (2.35 + 180) * scale, top + (90 - 48.86) * scale)  # a guess: Paris
                browser.wait_for("document.querySelector('#guess-at').dataset.lat")
                browser.click_text("Guess")
                browser.wait_for("document.querySelector('#round-result').innerText.includes('points')")
                browser.screenshot(out)
            finally:
                browser.close()
    finally:
        server.terminate()
        server.communicate(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", required=True, help="the home `make run` built")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "play.png")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        sys.exit("docs/screenshots.py needs Chromium (Debian: apt-get install chromium); docs/play.png left as it was")
    play_screenshot(args.home, args.out, chromium)
    print(f"{args.out}: written")


if __name__ == "__main__":
    main()
