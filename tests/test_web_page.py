"""The web page at `/`, driven by a headless Chromium (Debian's `chromium`, through playwright).

Uploads a photo, waits for the colorized image, saves a screenshot and checks the result
is shown at the upload's size; moves the strength slider and checks the photo is
re-coloured (grey at 0) with one request once the slider rests. Skips with the reason when Chromium or playwright is absent;
no browser is ever downloaded.
"""

import os
import shutil
import socket
from pathlib import Path

import cv2
import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser():
    executable = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if not executable:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page_url(ray_local, tiny_artifact):
    from ray import serve

    from colorize.serve.runner import start

    url = start(tiny_artifact, port=free_port(), name="web", cpus_per_replica=0.5)
    yield url
    serve.delete("web")


def test_upload_shows_the_colorized_photo_at_its_size(browser, page_url, tmp_path, tiny_photos):
    rgb = cv2.imread(str(sorted(tiny_photos.glob("*.png"))[0]))
    photo = cv2.resize(rgb, (120, 80), interpolation=cv2.INTER_CUBIC)
    upload = tmp_path / "holiday.png"
    cv2.imwrite(str(upload), photo)

    page = browser.new_page(viewport={"width": 1100, "height": 600})
    page.goto(page_url)
    assert page.title() == "colorize"
    page.set_input_files("#file", str(upload))
    page.wait_for_selector("#result[data-ready='1']", timeout=60_000)

    size = page.eval_on_selector("#result", "img => [img.naturalWidth, img.naturalHeight]")
    assert size == [120, 80]
    assert page.eval_on_selector("#result", "img => img.getBoundingClientRect().width") > 0
    assert page.text_content("#result-size") == "120 × 80"
    assert page.text_content("#original-size") == "120 × 80"
    assert page.get_attribute("#download", "download") == "holiday-colorized.png"
    assert "Done" in page.text_content("#status")
    grey_size = page.eval_on_selector("#grey", "img => [img.naturalWidth, img.naturalHeight]")
    assert grey_size == [120, 80]

    screenshot = tmp_path / "web_page.png"
    page.screenshot(path=str(screenshot), full_page=True)
    if os.environ.get("COLORIZE_SCREENSHOT"):  # keep a copy to look at
        shutil.copy(screenshot, os.environ["COLORIZE_SCREENSHOT"])
    shot = cv2.imread(str(screenshot))
    assert shot is not None and shot.shape[1] == 1100 and np.std(shot) > 5
    page.close()


def test_a_bad_file_shows_the_servers_message(browser, page_url, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"this is not a picture")
    page = browser.new_page()
    page.goto(page_url)
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#status.error", timeout=30_000)
    assert "not a readable image" in page.text_content("#status")
    page.close()


PIXELS = """img => { const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const x = c.getContext('2d'); x.drawImage(img, 0, 0);
  return Array.from(x.getImageData(0, 0, c.width, c.height).data); }"""


def result_pixels(page) -> np.ndarray:
    rgba = np.array(page.eval_on_selector("#result", PIXELS), np.int16)
    return rgba.reshape(-1, 4)[:, :3]


def test_the_strength_slider_recolours_the_last_photo(browser, page_url, tmp_path, tiny_photos):
    """Moving the slider re-posts the last photo at the new strength (once, after the
    slider rests): 0 shows the grey prediction, 3 more colour than 1."""
    upload = tmp_path / "slider.png"
    cv2.imwrite(str(upload), cv2.imread(str(sorted(tiny_photos.glob("*.png"))[1])))
    page = browser.new_page()
    posts = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    page.goto(page_url)
    page.set_input_files("#file", str(upload))
    page.wait_for_selector("#result[data-ready='1'][data-strength='1']", timeout=60_000)
    at_one = result_pixels(page)

    page.evaluate("""() => { const s = document.getElementById('strength');
      for (const v of ['2', '0.5', '2.5', '0']) {  // quick moves: one request when it rests
        s.value = v; s.dispatchEvent(new Event('input')); } }""")
    page.wait_for_selector("#result[data-ready='1'][data-strength='0']", timeout=60_000)
    grey = result_pixels(page)
    assert page.text_content("#strength-value") == "0.00"
    assert np.abs(grey.max(axis=1) - grey.min(axis=1)).max() <= 2  # R = G = B: grey
    assert len(posts) == 2 and posts[-1].endswith("strength=0"), posts

    page.fill("#strength", "3")
    page.wait_for_selector("#result[data-ready='1'][data-strength='3']", timeout=60_000)
    vivid = result_pixels(page)
    spread = [float(np.mean(p.max(axis=1) - p.min(axis=1))) for p in (grey, at_one, vivid)]
    assert spread[2] > spread[1] > spread[0], spread
    assert page.get_attribute("#download", "download") == "slider-colorized.png"
    page.close()
