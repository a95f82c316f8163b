"""Browser tests: Debian's Chromium (installed by `make test`'s set-up) driven by
Playwright, against this worker's local stack (the `stack` fixture of tests/integration).
One Playwright driver per worker; each test launches the browser it needs (a fake camera
file is fixed at launch)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.browser.pages import AXE, ROOT, chromium_path


@pytest.fixture(scope="session")
def playwright() -> Iterator[Any]:
    if chromium_path() is None:
        pytest.fail("no chromium on PATH: `make test` installs Debian's chromium (or apt-get install chromium)")
    if not (ROOT / "web/app/vendor/jsQR.js").is_file() or not AXE.is_file():
        pytest.fail("the pages' vendored libraries are missing: run `make web` (make test does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        yield driver


@pytest.fixture
def base(stack) -> str:
    return stack.api_url
