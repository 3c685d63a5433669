#!/usr/bin/env python3
"""Render the report as a reader sees it: the HTML in headless Chromium, the PDF through pdftoppm.

    python scripts/look_at_report.py [--html results/report/report.html] [--pdf results/report/report.pdf]
                                     [--out results/report/look]

Writes html-<k>.png (the full-page screenshot cut into screen-sized pieces) and pdf-<page>.png, then prints
their paths: open them and check that axes are labelled, nothing is cut off and the text reads at a glance.
Needs Debian's `chromium` and `poppler-utils`; exits 2 naming the missing one.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]
WIDTH = 1400
PIECE = 1600  # screenshot rows per piece, so each stays readable when opened


def screenshot_html(html: Path, out: Path, height: int) -> list[Path]:
    from PIL import Image

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("chromium not found: apt-get install chromium (Debian)")
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        full = out / "html-full.png"
        cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={full}",
               f"--window-size={WIDTH},{height}", html.resolve().as_uri()]
        subprocess.run(cmd, check=True, capture_output=True, timeout=180)
    image = Image.open(full).convert("RGB")
    # trim the blank tail below the page's content
    pixels = image.load()
    last = image.height - 1
    while last > 0 and all(pixels[x, last] == (255, 255, 255) for x in range(0, image.width, 7)):
        last -= 1
    image = image.crop((0, 0, image.width, min(image.height, last + 20)))
    pieces = []
    for k, top in enumerate(range(0, image.height, PIECE)):
        piece = out / f"html-{k:02d}.png"
        image.crop((0, top, image.width, min(top + PIECE, image.height))).save(piece)
        pieces.append(piece)
    full.unlink()
    if last >= height - 25:
        print(f"warning: the page may be taller than {height} px; rerun with --height {2 * height}", file=sys.stderr)
    return pieces


def rasterize_pdf(pdf: Path, out: Path, dpi: int) -> list[Path]:
    if shutil.which("pdftoppm") is None:
        sys.exit("pdftoppm not found: apt-get install poppler-utils")
    subprocess.run(["pdftoppm", "-png", "-r", str(dpi), str(pdf), str(out / "pdf")], check=True, timeout=180)
    return sorted(out.glob("pdf-*.png"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--html", type=Path, default=Path("results/report/report.html"))
    parser.add_argument("--pdf", type=Path, default=Path("results/report/report.pdf"))
    parser.add_argument("--out", type=Path, default=Path("results/report/look"))
    parser.add_argument("--height", type=int, default=16000, help="browser window height (px)")
    parser.add_argument("--dpi", type=int, default=60)
    args = parser.parse_args(argv)
    for path in (args.html, args.pdf):
        if not path.is_file():
            sys.exit(f"{path} does not exist; run the workflow (make demo) or pass --html/--pdf")
    if args.out.exists():
        for old in list(args.out.glob("html-*.png")) + list(args.out.glob("pdf-*.png")):
            old.unlink()
    args.out.mkdir(parents=True, exist_ok=True)
    pictures = screenshot_html(args.html, args.out, args.height) + rasterize_pdf(args.pdf, args.out, args.dpi)
    print("\n".join(map(str, pictures)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
