"""`main.py serve` in a real browser: headless Chromium (Debian's `chromium`, driven by the
Playwright Python package) against the real server on 127.0.0.1.

Skips, saying why, when chromium or playwright is missing (.ci/run installs both).
The page's screenshot goes to the test's tmp dir; to refresh the README's picture run

    FACEEXPR_UPDATE_SCREENSHOT=1 .venv/bin/python -m pytest tests/test_serve_browser.py
"""

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import cv2
import numpy as np
import PIL.Image
import pytest

from faceexpr_tf.photos import photo_files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS_SCREENSHOT = os.path.join(REPO, "docs", "serve_page.png")
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
START_TIMEOUT_S = 120   # TensorFlow, the model and Gradio on a busy 2-core machine
WAIT_MS = 60_000        # any one thing on the page


def _chromium() -> str:
  path = shutil.which("chromium") or shutil.which("chromium-browser")
  if not path:
    pytest.skip("no chromium browser on PATH (Debian: apt-get install chromium; .ci/run "
                "installs it as root)")
  return path


sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is "
                               "not installed (pip install -e \".[test]\")")
pytest.importorskip("gradio", reason="the `web` extra (gradio) is not installed")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
  """`python main.py serve` on a free loopback port, started but not waited for (the
  browser starts meanwhile; `page` waits); yields (base URL, process, log path)."""
  port = _free_port()
  log = tmp_path_factory.mktemp("serve") / "serve.log"
  with open(log, "w") as out:
    process = subprocess.Popen([sys.executable, os.path.join(REPO, "main.py"), "serve",
                                f"--port={port}"], cwd=REPO, stdout=out,
                               stderr=subprocess.STDOUT)
  try:
    yield f"http://127.0.0.1:{port}", process, log
  finally:
    process.terminate()
    try:
      process.wait(timeout=20)
    except subprocess.TimeoutExpired:
      process.kill()
      process.wait(timeout=10)


def _wait_until_up(url, process, log) -> str:
  deadline = time.monotonic() + START_TIMEOUT_S
  while True:
    if process.poll() is not None:
      pytest.fail(f"main.py serve exited with {process.returncode}:\n{log.read_text()}")
    try:
      with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
        if response.status == 200:
          return url
    except OSError:
      pass
    if time.monotonic() > deadline:
      pytest.fail(f"main.py serve not up within {START_TIMEOUT_S} s:\n{log.read_text()}")
    time.sleep(0.5)


@pytest.fixture(scope="module")
def browser():
  executable = _chromium()
  with sync_api.sync_playwright() as playwright:
    launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS,
                                          timeout=WAIT_MS)
    yield launched
    launched.close()


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory):
  """The astronaut photo (NASA, public domain) as a JPEG upload: its format must survive."""
  skimage_data = pytest.importorskip("skimage.data", reason="scikit-image (test extra)")
  photo = skimage_data.astronaut()
  path = tmp_path_factory.mktemp("photos") / "astronaut.jpg"
  cv2.imwrite(str(path), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR),
              [cv2.IMWRITE_JPEG_QUALITY, 92])
  return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), str(path)


@pytest.fixture(scope="module")
def page(server, browser):
  """The page, loaded once and shared by the tests in order (a load of the Gradio page
  takes seconds): each upload replaces the photo before it, as a user's next one does."""
  url = _wait_until_up(*server)
  opened = browser.new_page(viewport={"width": 1280, "height": 1400})
  opened.set_default_timeout(WAIT_MS)
  opened.goto(url + "/", timeout=WAIT_MS)
  opened.wait_for_selector("#photo input[type=file]", state="attached")
  yield opened
  opened.close()


def _fetch(page, src: str) -> bytes:
  return page.request.get(src, timeout=WAIT_MS).body()


def _image(data: bytes) -> np.ndarray:
  image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
  assert image is not None, "not an image"
  return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _loaded(page, selector: str) -> dict:
  """The first <img> under selector once the browser has decoded it: src, natural size."""
  image = page.locator(f"{selector} img").first
  image.wait_for()
  page.wait_for_function("s => { const i = document.querySelector(s + ' img');"
                         " return i && i.complete && i.naturalWidth > 0; }", arg=selector,
                         timeout=WAIT_MS)
  return image.evaluate("i => ({src: i.src, width: i.naturalWidth, height: i.naturalHeight})")


def _save_for_docs(screenshot: str, width: int = 900):
  """The README's copy: downscaled (area) so the repository stays small."""
  image = cv2.imread(screenshot)
  height = round(image.shape[0] * width / image.shape[1])
  small = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
  cv2.imwrite(DOCS_SCREENSHOT, small, [cv2.IMWRITE_PNG_COMPRESSION, 9])


def _message(page, words: str) -> str:
  page.wait_for_function(
      "w => (document.querySelector('#message')?.innerText || '').includes(w)", arg=words,
      timeout=WAIT_MS)
  return page.locator("#message").inner_text()


def test_upload_a_photo_and_see_it_edited(page, astronaut, tmp_path):
  photo, path = astronaut
  page.locator("#photo input[type=file]").set_input_files(path)
  message = _message(page, "Edited 1 face")
  assert "512x512" in message and "Happy" in message  # the classifier reads her smile
  names = ["Angry", "Happy", "Sad", "Surprise"]
  shown = {}
  for name in names:
    # The whole photo, at the upload's resolution and in its format, signed inside.
    image = _loaded(page, f"#edited-{name.lower()}")
    assert (image["width"], image["height"]) == (512, 512), name
    data = _fetch(page, image["src"])
    assert data.startswith(b"\xff\xd8\xff"), f"{name}: not the JPEG the upload was"
    record = photo_files.read_provenance(data)
    assert record["emotion"] == name and record["tool"] == "faceexpr-tf", record
    caption = page.locator(f"#caption-{name.lower()}").inner_text()
    assert "Edited by faceexpr-tf" in caption and name in caption, caption
    assert "intensity 1" in caption and "pretrained" in caption, caption
    shown[name] = _image(data).astype(int)
    assert np.abs(shown[name] - photo).max() > 40, f"{name}: the face did not change"
    assert np.abs(shown[name] - photo).mean() < 3, f"{name}: more than the face changed"
  for i, a in enumerate(names):
    for b in names[i + 1:]:
      assert np.abs(shown[a] - shown[b]).max() > 20, (a, b)
  # The animation of her face: a GIF of many frames.
  gif = _fetch(page, _loaded(page, "#animation")["src"])
  assert gif.startswith(b"GIF8")
  with PIL.Image.open(io.BytesIO(gif)) as frames:
    assert frames.n_frames > len(names)
  strip = _loaded(page, "#strip")
  assert strip["width"] > 4 * strip["height"] / 2     # before + four emotions side by side
  assert "Edited by faceexpr-tf" in page.locator("#note").inner_text()
  # The downloads: one full-resolution file per emotion, the strip and the GIF.
  page.locator("#downloads a").nth(5).wait_for()
  links = page.locator("#downloads a")
  hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
  tails = sorted(h.rsplit("/", 1)[-1] for h in hrefs)
  assert tails == sorted([f"astronaut_{n}.jpg" for n in names]
                         + ["astronaut_face0.gif", "astronaut_strip.jpg"]), tails
  happy = _fetch(page, next(h for h in hrefs if h.endswith("astronaut_Happy.jpg")))
  assert _image(happy).shape == photo.shape
  assert photo_files.read_provenance(happy)["emotion"] == "Happy"
  screenshot = tmp_path / "serve_page.png"
  page.screenshot(path=str(screenshot), full_page=True)
  assert cv2.imread(str(screenshot)) is not None
  if os.environ.get("FACEEXPR_UPDATE_SCREENSHOT"):
    _save_for_docs(str(screenshot))


def test_bad_files_get_a_message_and_the_server_stays_up(page, tmp_path):
  """On the page as the test before left it (or fresh, run alone): each bad file is the
  next upload, replacing what the input held, without a reload."""
  # A file that claims to be a PNG but is text: the server's message on the page.
  fake = tmp_path / "holiday.png"
  fake.write_text("this is not a picture")
  page.locator("#photo input[type=file]").set_input_files(str(fake))
  assert "holiday.png is not an image" in _message(page, "not an image")
  # A photo without a face.
  blank = tmp_path / "wall.png"
  cv2.imwrite(str(blank), np.full((240, 320, 3), 200, np.uint8))
  page.locator("#photo input[type=file]").set_input_files(str(blank))
  assert "No face found" in _message(page, "No face found")
  # A file that is plainly not an image is refused by the page itself.
  notes = tmp_path / "notes.txt"
  notes.write_text("hello")
  page.locator("#photo input[type=file]").set_input_files(str(notes))
  page.get_by_text("Invalid file type").first.wait_for(timeout=WAIT_MS)
  # Then a sample photo still works: the server is up.
  page.locator("img[src*='astronaut_gray']").first.click()
  assert "192x192" in _message(page, "Edited 1 face")
