"""Helpers for the browser tests: headless Debian Chromium through Playwright (no browser
download), a fake camera fed a .y4m made from ticket QR images, axe-core, screenshots."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote

from PIL import Image

ROOT = Path(__file__).resolve().parents[3]
AXE = ROOT / "web" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = ROOT / "docs" / "screenshots"
PHONE = {"width": 390, "height": 844}


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def launch(playwright: Any, camera: Path | None = None) -> Any:
    """Headless Chromium; with `camera`, a fake camera showing that .y4m file (looped)."""
    args = ["--no-sandbox", "--use-fake-ui-for-media-stream", "--autoplay-policy=no-user-gesture-required"]
    if camera is not None:
        args += ["--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={camera}"]
    return playwright.chromium.launch(executable_path=chromium_path(), args=args, headless=True)


def phone(browser: Any) -> Any:
    return browser.new_context(viewport=PHONE, device_scale_factor=1, is_mobile=True, has_touch=True)


def shown_code(image: Any) -> str | None:
    """What a QR `<img>` on the page encodes, read back with the scanner's own decoder (jsQR)."""
    page = image.page
    if not page.evaluate("() => typeof window.jsQR === 'function'"):
        page.add_script_tag(url="vendor/jsQR.js")
    return image.evaluate("""img => {
      const scale = 8, canvas = document.createElement('canvas');
      canvas.width = img.naturalWidth * scale; canvas.height = img.naturalHeight * scale;
      const g = canvas.getContext('2d');
      g.imageSmoothingEnabled = false;
      g.drawImage(img, 0, 0, canvas.width, canvas.height);
      const found = window.jsQR(g.getImageData(0, 0, canvas.width, canvas.height).data, canvas.width, canvas.height);
      return found ? found.data : null;
    }""")


def y4m(path: Path, pngs: list[bytes | None], *, size: int = 480, fps: int = 5, frames_each: int = 8) -> Path:
    """A YUV4MPEG2 (C420) video: each PNG (None: a blank frame) centred on white for
    `frames_each` frames. Chromium loops the file, so a code leaves the frame and returns."""
    header = f"YUV4MPEG2 W{size} H{size} F{fps}:1 Ip A1:1 C420\n".encode()
    with path.open("wb") as out:
        out.write(header)
        for png in pngs:
            frame = Image.new("RGB", (size, size), "white")
            if png is not None:
                image = Image.open(io.BytesIO(png)).convert("RGB")
                image.thumbnail((size - 40, size - 40), Image.NEAREST)
                frame.paste(image, ((size - image.width) // 2, (size - image.height) // 2))
            y, cb, cr = frame.convert("YCbCr").split()
            half = (size // 2, size // 2)
            planes = y.tobytes() + cb.resize(half, Image.BILINEAR).tobytes() + cr.resize(half, Image.BILINEAR).tobytes()
            for _ in range(frames_each):
                out.write(b"FRAME\n" + planes)
    return path


def sign_in(page: Any, base: str, email: str, roles: tuple[str, ...] = (), next_path: str = "/app/index.html") -> None:
    """Through the local sign-in form, as a person would."""
    page.goto(f"{base}/app/signin.html?next={quote(next_path, safe='')}")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Name").fill(email.split("@")[0].title())
    for role in roles:
        page.get_by_label(role).check()
    page.locator("#main").get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/signin.html" not in url)


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    if not page.evaluate("() => !!window.axe"):
        page.add_script_tag(path=str(AXE))
    found = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
                          ".map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))")
    return [v for v in found if v["impact"] in ("serious", "critical")]


def check_page(page: Any, name: str, full_page: bool = False) -> None:
    """A phone-size screenshot under docs/screenshots when SCREENSHOTS=1, then axe on the page."""
    if os.environ.get("SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)
    violations = axe_violations(page)
    assert not violations, f"{name}: {violations}"
