"""The documentation site builds with `mkdocs build --strict` (no broken link, anchor or API
reference) and its pages render in a real browser: headless Chromium loads them from a local
HTTP server, runs the theme's JavaScript, and the DOM it dumps has the pages' headings."""

from __future__ import annotations

import functools
import html.parser
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALL_HINT = "run `bash install.sh` (as root it installs the Debian package chromium)"


# The site is built once, by the worker that runs all of these tests.
pytestmark = pytest.mark.xdist_group("docs-site")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if subprocess.run([sys.executable, "-c", "import mkdocs"], capture_output=True).returncode:
        pytest.fail(f"mkdocs is not installed: {INSTALL_HINT}", pytrace=False)
    out = tmp_path_factory.mktemp("docs") / "site"
    config = ["--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(out)]
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", *config],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert built.returncode == 0, f"mkdocs build --strict failed:\n{built.stderr[-4000:]}"
    return out


@pytest.fixture(scope="module")
def server(site: Path) -> Iterator[str]:
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


class _Page(html.parser.HTMLParser):
    """The text of every h1-h3, the root element's classes and the number of buttons."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.headings: list[tuple[str, str]] = []
        self.root_classes: list[str] = []
        self.buttons = 0
        self._open: list[str] | None = None
        self._tag = ""
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "html":
            self.root_classes = (dict(attrs).get("class") or "").split()
        self.buttons += tag == "button"
        if tag in ("h1", "h2", "h3"):
            self._open, self._tag = [], tag

    def handle_endtag(self, tag: str) -> None:
        if self._open is not None and tag == self._tag:
            text = " ".join("".join(self._open).replace("¶", "").split())
            self.headings.append((tag, text))
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._open.append(data)


def _rendered(url: str, profile: Path) -> _Page:
    """The DOM of `url` after Chromium ran its scripts, parsed."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail(f"chromium is not installed: {INSTALL_HINT}", pytrace=False)
    headless = ["--headless", "--disable-gpu", "--no-sandbox", "--no-first-run"]
    scripts = [f"--user-data-dir={profile}", "--virtual-time-budget=5000"]
    dumped = subprocess.run(
        [chromium, *headless, *scripts, "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert dumped.returncode == 0 and dumped.stdout.strip(), dumped.stderr[-2000:]
    return _Page(dumped.stdout)


PAGES = {
    "home": ("", "twcore", ["Quick start", "Where to go next"]),
    "tutorial": (
        "tutorials/your-own-loop/",
        "Use a method in your own loop",
        ["A first loop", "The rules"],
    ),
    "api": (
        "reference/api/twcore.contract/method/",
        "twcore.contract.method",
        ["StepResult", "MethodContext", "method_generator"],
    ),
    "generated cli reference": ("reference/cli/", "Command line", ["twcore run", "twcore sweep"]),
    "plugin readme": ("plugins/methods/gradcos/", "twcore-method-gradcos — GradCos", []),
}


@pytest.mark.parametrize(("path", "title", "sections"), PAGES.values(), ids=list(PAGES))
def test_page_renders_with_its_headings_in_chromium(
    site: Path, server: str, tmp_path: Path, path: str, title: str, sections: list[str]
):
    page = _rendered(server + path, tmp_path / "profile")
    h1 = [text for tag, text in page.headings if tag == "h1"]
    assert h1 == [title], page.headings
    found = {text for tag, text in page.headings if tag in ("h2", "h3")}
    for section in sections:
        assert any(text.startswith(section) for text in found), (section, sorted(found))
    # The theme's JavaScript ran: it marks the root element and adds buttons (copy, navigation)
    # to the page as served.
    served = _Page((site / path / "index.html").read_text(encoding="utf-8"))
    assert "no-js" in served.root_classes and "js" in page.root_classes, page.root_classes
    assert page.buttons > served.buttons, "the theme's JavaScript added no button"


def test_every_plugin_readme_and_core_module_has_a_page(site: Path):
    for readme in ROOT.glob("plugins/*/*/README.md"):
        page = site / readme.parent.relative_to(ROOT) / "index.html"
        assert page.is_file(), f"{readme.relative_to(ROOT)} has no page"
    for package in ("contract", "autodiff", "testing"):
        for module in (ROOT / "twcore" / package).glob("[!_]*.py"):
            page = site / "reference" / "api" / f"twcore.{package}" / module.stem / "index.html"
            assert page.is_file(), f"twcore.{package}.{module.stem} has no API page"


def test_included_example_files_are_shown_in_full(site: Path):
    """A snippet include (``--8<--``) that a formatter mangled would show as text: the page
    holds the example's code instead, and no page shows an include marker."""
    page = (site / "tutorials" / "your-data" / "index.html").read_text(encoding="utf-8")
    assert "task_from_arrays" in page and "twcore.register" in page
    assert "load_digits" in page  # a line only the included example has
    for built in site.rglob("*.html"):
        text = built.read_text(encoding="utf-8")
        assert "--8&lt;--" not in text and "--8 &lt; --" not in text, built
