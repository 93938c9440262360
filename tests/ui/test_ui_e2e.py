"""The web UI end to end: headless Chromium uploads a portrait and speech, clicks, and gets a playable video."""

import shutil
import socket
import time
import urllib.error
import urllib.request

import pytest

from dicetalk.utils.media import probe


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_weights):
    from dicetalk.ui.app import launch

    port = _free_port()
    app = launch(tiny_weights, port=port, block=False, device="cpu", max_upload_mb=1)
    yield f"http://127.0.0.1:{port}/", app
    app.close()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "the Makefile installs Debian's chromium and chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1200,1600"):  # fmt: skip
        options.add_argument(arg)
    d = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))
    yield d
    d.quit()


def test_server_binds_to_localhost_only(server):
    url, app = server
    assert app.server_name == "127.0.0.1"
    assert "127.0.0.1" in url


def _upload(url: str, nbytes: int) -> int:
    import uuid

    boundary = uuid.uuid4().hex
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="x.wav"\r\nContent-Type: audio/wav\r\n\r\n'
    body = head.encode() + b"\0" * nbytes + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(url + "gradio_api/upload", data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        return urllib.request.urlopen(request).status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_uploads_are_bounded(server):
    url, _ = server
    assert _upload(url, 1000) == 200
    assert _upload(url, 3_000_000) == 413


def test_upload_generate_and_play(server, browser, portrait_png, speech_wav, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    url, _ = server
    browser.get(url)
    wait = WebDriverWait(browser, 60)
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#portrait input[type=file]")))
    browser.find_element(By.CSS_SELECTOR, "#portrait input[type=file]").send_keys(str(portrait_png))
    browser.find_element(By.CSS_SELECTOR, "#speech input[type=file]").send_keys(str(speech_wav))
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#portrait img")))
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#speech audio, #speech [data-testid='waveform-x']")))
    time.sleep(1)
    browser.find_element(By.CSS_SELECTOR, "#generate").click()
    video = WebDriverWait(browser, 240).until(ec.presence_of_element_located((By.CSS_SELECTOR, "#result video[src]")))
    src = video.get_attribute("src")
    out = tmp_path / "from_ui.mp4"
    urllib.request.urlretrieve(src, out)
    info = probe(out)
    assert info.num_frames > 10 and info.has_audio
    # The page's own player can decode it: it reports a duration once metadata is loaded.
    duration = WebDriverWait(browser, 60).until(
        lambda d: d.execute_script("const v = document.querySelector('#result video'); return v && v.readyState >= 1 ? v.duration : null;")
    )
    assert abs(duration - info.duration) < 0.2
