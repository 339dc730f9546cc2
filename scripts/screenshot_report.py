"""Take the screenshot of an HTML report that the README and docs/ci.md show.

    python scripts/screenshot_report.py [--out docs/report.png]

Runs ``advgrad eval`` on the 450 embedded digits (fgsm and pgd over the default ε, with a gate),
writes its ``--html`` page, has headless Chromium (Debian's ``chromium``) draw the top of it at
1000 × 1250 CSS pixels, and stores the picture with a 64-colour palette to keep it small.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "report.png")
    args = parser.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        sys.exit("no chromium on PATH: apt-get install chromium")
    with tempfile.TemporaryDirectory() as folder:
        page, shot = Path(folder) / "report.html", Path(folder) / "shot.png"
        run = [sys.executable, "-m", "advgrad", "eval", "--fail-under", "pgd@0.05=0.60", "--html", str(page)]
        subprocess.run(run, check=True, stdout=subprocess.DEVNULL)
        subprocess.run(
            [browser, *FLAGS, f"--user-data-dir={folder}/profile", "--window-size=1000,1250",
             f"--screenshot={shot}", page.as_uri()],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        image = Image.open(shot).convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT)
        image.save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
