"""Take the screenshot of an HTML report that the README and docs/ci.md show.

    python scripts/screenshot_report.py [--out docs/report.png]

Runs ``advgrad eval`` on the 450 embedded digits (fgsm and pgd over the default ε, with a gate),
writes its ``--html`` page, has headless Chromium (Debian's ``chromium``) draw the top of it at
1000 × 1250 CSS pixels, and stores the picture with a 64-colour palette to keep it small.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tests' driver of headless Chromium
from browser import Browser, find_chromium  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "report.png")
    args = parser.parse_args()
    executable = find_chromium()
    if executable is None:
        sys.exit("no chromium on PATH: apt-get install chromium")
    with tempfile.TemporaryDirectory() as folder:
        page, shot = Path(folder) / "report.html", Path(folder) / "shot.png"
        run = [sys.executable, "-m", "advgrad", "eval", "--fail-under", "pgd@0.05=0.60", "--html", str(page)]
        subprocess.run(run, check=True, stdout=subprocess.DEVNULL)
        browser = Browser(executable)
        try:
            browser.load(page)
            browser.screenshot(shot, 1000, 1250)
        finally:
            browser.close()
        image = Image.open(shot).convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT)
        image.save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
