"""The README's picture of ``dicetalk evaluate VIDEO --portrait IMG --report page.html``.

    .venv/bin/python scripts/report_picture.py      # writes docs/evaluate_report.png (~1.5 min on 2 cores)

The video is ``dicetalk generate`` (embedded default model, full frame) of a public-domain photo
(``tests/assets/faces/grace_hopper.jpg``) with the example speech. Identity and mouth landmarks are
dlib's real models; SyncNet and EMO-AffectNet carry random weights of the public architectures,
because their public weights cannot be fetched on this machine: the page's layout is what the
picture shows, not those two judges' verdicts. Chromium (installed by ``make setup``) takes the
screenshot.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

from dicetalk.utils.atomic import atomic_path

ROOT = Path(__file__).resolve().parents[1]
DICETALK = str(Path(sys.executable).with_name("dicetalk"))
PHOTO = ROOT / "tests" / "assets" / "faces" / "grace_hopper.jpg"
OUT = ROOT / "docs" / "evaluate_report.png"


def main() -> int:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from real_judges import random_judges

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("error: chromium not found (make setup installs it)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        video, page, shot = tmp / "hopper.mp4", tmp / "report.html", tmp / "shot.png"
        subprocess.run([DICETALK, "generate", str(PHOTO), str(ROOT / "examples" / "speech.wav"), "--emotion", "happy", "-o", str(video)], check=True)
        random_judges(tmp / "judges")
        subprocess.run([DICETALK, "evaluate", str(video), "--portrait", str(PHOTO), "--judges", str(tmp / "judges"), "--report", str(page)], check=True)
        subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1000,1880", f"--screenshot={shot}", page.as_uri()],
            check=True,
            capture_output=True,
        )
        image = Image.open(shot).convert("RGB")
        image = image.resize((800, round(image.height * 800 / image.width)), Image.LANCZOS)
        with atomic_path(OUT) as target:
            image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(target, format="PNG", optimize=True)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
