"""Vendor the pages' npm dependencies into web/app/vendor/ (what `make web` runs after
`npm ci` in web/), then print what the scanner page transfers gzip-compressed.

    python -m tools.build_web            # copy, then print the scanner's bytes
    python -m tools.build_web --check    # only print; exit 1 if over the budget

Nothing is fetched at run time from a CDN: the pages load these copies. axe-core stays in
web/node_modules (the browser tests inject it; it is never deployed)."""

from __future__ import annotations

import argparse
import gzip
import shutil
import sys
from pathlib import Path

WEB = Path(__file__).resolve().parent.parent / "web"
VENDOR = WEB / "app" / "vendor"
COPIES = {
    "jsqr/dist/jsQR.js": "jsQR.js",
    "@noble/ed25519/index.js": "noble-ed25519.js",
    "uqr/dist/index.mjs": "uqr.js",
}
LICENSES = {"jsqr": "jsQR", "@noble/ed25519": "noble-ed25519", "uqr": "uqr"}
# What scanner.html loads on a browser without BarcodeDetector (the decoder included).
SCANNER = ["scanner.html", "css/app.css", "js/core.js", "js/scanner.js", "js/frames.js", "js/gatedb.js", "js/verify.js",
           "vendor/jsQR.js", "manifest.webmanifest", "icon.svg"]
BUDGET = 200 * 1024


def vendor() -> None:
    modules = WEB / "node_modules"
    VENDOR.mkdir(parents=True, exist_ok=True)
    for source, target in COPIES.items():
        path = modules / source
        if not path.is_file():
            sys.exit(f"build_web: {path} is missing: run `npm ci` in web/ (make web does)")
        shutil.copyfile(path, VENDOR / target)
    for package, name in LICENSES.items():
        for candidate in ("LICENSE", "LICENSE.md", "license"):
            if (modules / package / candidate).is_file():
                shutil.copyfile(modules / package / candidate, VENDOR / f"{name}.LICENSE.txt")
                break


def scanner_bytes() -> list[tuple[str, int, int]]:
    rows = []
    for name in SCANNER:
        raw = (WEB / "app" / name).read_bytes()
        rows.append((name, len(raw), len(gzip.compress(raw, 6, mtime=0))))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.build_web")
    parser.add_argument("--check", action="store_true", help="only measure")
    args = parser.parse_args(argv)
    if not args.check:
        vendor()
    rows = scanner_bytes()
    total = sum(gz for _, _, gz in rows)
    print(f"scanner page: {total / 1024:.1f} KB gzip ({sum(raw for _, raw, _ in rows) / 1024:.1f} KB raw) "
          f"in {len(rows)} files; budget {BUDGET // 1024} KB")
    return 0 if total <= BUDGET else 1


if __name__ == "__main__":
    sys.exit(main())
