"""The consortium report as one HTML page: self-contained, escaped, robust to missing sections, and drawn by a
real headless Chromium (skipped where there is none, except in CI, where .ci/run installs it)."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from server.report_html import FORMAT, render_html, write_html
from shared.errors import FedsynthError

EXAMPLE = Path(__file__).resolve().parents[1] / "data" / "report_example.json"
SECTIONS = ("run", "privacy", "training", "marginals", "dependence", "utility", "privacy_scores", "bias", "sites",
            "reference", "notes")
HOSTILE = "<script>alert(1)</script>"
ATTRIBUTE_BREAK = '"><img src=x onerror=alert(2)>'
MAX_BYTES = 1_500_000


def _example() -> dict[str, Any]:
    report: dict[str, Any] = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    return report


class _Page(HTMLParser):
    """Every element, attribute, text run and the bodies of <style> and <script>, as the browser parses them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.raw: dict[str, list[str]] = {"style": [], "script": []}
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        self._open = tag if tag in self.raw else None
        if tag in self.raw:
            self.raw[tag].append("")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        self._open = None

    def handle_data(self, data: str) -> None:
        if self._open:
            self.raw[self._open][-1] += data
        else:
            self.text.append(data)


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    return parser


def _text(page: str) -> str:
    return re.sub(r"\s+", " ", " ".join(_parse(page).text).replace("\xa0", " "))


# Markup that would fetch, embed or navigate; a self-contained page has none of it.
_FETCHING_TAGS = {"link", "iframe", "frame", "object", "embed", "img", "image", "audio", "video", "source", "track",
                  "base", "form", "input", "portal", "use", "feimage", "applet", "picture"}
_URL_ATTRIBUTES = {"src", "href", "xlink:href", "action", "formaction", "srcset", "poster", "data", "background",
                   "ping", "manifest", "codebase", "cite", "longdesc", "lowsrc"}
_SCRIPT_NETWORK = ("fetch", "XMLHttpRequest", "import", "WebSocket", "EventSource", "sendBeacon", "location", "://")


def _assert_self_contained(page: str) -> None:
    """Strict about markup, styles and scripts; text may say anything, since the browser never follows it."""
    parsed = _parse(page)
    for tag, attrs in parsed.tags:
        assert tag not in _FETCHING_TAGS, f"<{tag}> would load or embed something"
        for name, value in attrs.items():
            assert not name.startswith("on"), f"inline handler {name} on <{tag}>"
            if name in _URL_ATTRIBUTES:
                assert value.startswith("#"), f"<{tag} {name}={value!r}> points outside the page"
            assert "://" not in value and not value.startswith("//"), f"<{tag} {name}> holds a URL: {value!r}"
            for ref in re.findall(r"url\(([^)]*)\)", value):
                assert ref.strip("'\" ").startswith("#"), f"<{tag} {name}> references {ref!r}"
        if tag == "meta" and attrs.get("http-equiv", "").lower() == "refresh":
            pytest.fail("a meta refresh navigates away")
    css = "".join(parsed.raw["style"])
    assert "@import" not in css and "url(" not in css and "://" not in css
    scripts = [attrs for tag, attrs in parsed.tags if tag == "script"]
    assert scripts == [{}], f"expected exactly one inline script without attributes, found {scripts}"
    for word in _SCRIPT_NETWORK:
        assert word not in parsed.raw["script"][0], f"the script uses {word}"
    policies = [a.get("content", "") for t, a in parsed.tags
                if t == "meta" and a.get("http-equiv", "").lower() == "content-security-policy"]
    assert len(policies) == 1 and "default-src 'none'" in policies[0]


# ---- the page as text ---------------------------------------------------------------------------------------


def test_example_is_self_contained_and_small() -> None:
    report = _example()
    assert len(report["marginals"]) == 15  # the size limit is stated for a 15-column table

    page = render_html(report)

    _assert_self_contained(page)
    assert len(page.encode("utf-8")) < MAX_BYTES
    # The report's own text may mention a URL; it is shown as inert text, not a link.
    assert "https://archive.ics.uci.edu/dataset/296" in _text(page)


def test_self_containment_check_catches_external_references() -> None:
    page = render_html(_example())
    for intruder in ('<link rel="stylesheet" href="https://cdn.example/x.css">',
                     '<script src="https://cdn.example/x.js"></script>',
                     '<style>@import "x.css";</style>', '<svg><use href="other.svg#a"/></svg>',
                     '<svg><rect fill="url(https://x/y#p)"/></svg>'):
        with pytest.raises(AssertionError):
            _assert_self_contained(page.replace("</main>", intruder + "</main>"))


def test_sections_appear_in_order() -> None:
    text = _text(render_html(_example()))

    headings = ["Synthetic data report", "Privacy budget spent", "Fidelity: mean TVD", "Utility: TSTR AUC",
                "Privacy test: membership AUC", "Epsilon spent per round", "Site-level privacy", "Training loss",
                "Marginals: one column at a time", "Dependence between columns", "Utility: train on synthetic",
                "Privacy tests", "Bias: sensitive groups", "Scores per site", "Reference evaluation", "Notes"]
    position = text.find("Privacy budget spent")  # after the table of contents
    for heading in headings[1:]:
        found = text.find(heading, position)
        assert found >= position, f"{heading!r} missing or out of order"
        position = found


def test_numbers_carry_their_noise_and_precision() -> None:
    text = _text(render_html(_example()))

    assert "0.742 ± 0.011" in text  # TSTR AUC, std to 2 significant digits
    assert "0.748 ± 0.009" in text  # a std starting 35-99 keeps 1 digit
    assert "0.512 ± 0.011" in text  # membership AUC
    assert "0.04% ± 0.06%" in text  # exact copy rate, as a percentage
    assert "52.1% ± 0.4%" in text  # a group's real share
    assert "age: TVD 0.022 ± 0.006" in text  # a marginal chart's title
    assert "2.67" in text and "of ε 3.00" in text  # epsilon spent against the budget
    assert "9.61" in text  # epsilon if secure aggregation failed
    assert "n/a (too few positive outcomes in the holdout (fewer than 50))" in text
    assert "n/a (TRTR not computed" in text
    assert "region: TVD n/a" in text and "quasi-identifying" in text


def test_hostile_names_are_escaped() -> None:
    report = json.loads(json.dumps(_example()).replace('"st-marys"', json.dumps(HOSTILE)))
    report["run"]["run_id"] = ATTRIBUTE_BREAK
    report["marginals"][0]["column"] = HOSTILE
    report["marginals"][1]["labels"][0] = ATTRIBUTE_BREAK
    report["marginals"][2].update(tvd=None, tvd_reason=HOSTILE)
    report["dependence"]["columns"][0] = HOSTILE
    report["utility"]["models"][HOSTILE] = report["utility"]["models"].pop("random_forest")
    report["bias"][0]["attribute"] = HOSTILE
    report["bias"][0]["groups"][0]["group"] = ATTRIBUTE_BREAK
    report["sites"][1]["scores"][HOSTILE] = 0.5
    report["reference"]["title"] = HOSTILE
    report["notes"].append(HOSTILE)

    page = render_html(report)

    _assert_self_contained(page)  # one script (ours), no <img>, no onerror
    assert HOSTILE not in page and ATTRIBUTE_BREAK not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert HOSTILE in _text(page) and ATTRIBUTE_BREAK in _text(page)  # shown to the reader, as text


@pytest.mark.parametrize("section", SECTIONS)
@pytest.mark.parametrize("absence", ["null", "missing", "with reason"])
def test_copes_with_a_section_missing(section: str, absence: str) -> None:
    report = _example()
    if absence == "null":
        report[section] = None
    elif absence == "missing":
        del report[section]
    else:
        report[section] = {"unavailable": "withheld by the steering committee"}

    text = _text(render_html(report))

    if section not in ("run", "notes"):
        assert "not available" in text
    if absence == "with reason" and section != "run":
        assert "withheld by the steering committee" in text


def test_copes_with_every_optional_section_null() -> None:
    report = {"format": FORMAT, **{section: None for section in SECTIONS}}

    page = render_html(report)

    _assert_self_contained(page)
    assert 'class="chart' not in page  # nothing to draw, so no figure
    assert _text(page).count("not available") >= 9


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every dict key and the first two items of every list, as paths into the report."""
    out: list[tuple[Any, ...]] = []
    items = node.items() if isinstance(node, dict) else enumerate(node[:2]) if isinstance(node, list) else []
    for key, child in items:
        out.append((*prefix, key))
        out.extend(_paths(child, (*prefix, key)))
    return out


def test_copes_with_any_single_value_null_or_of_the_wrong_type() -> None:
    example = _example()
    paths = [p for p in _paths(example) if p != ("format",)]
    assert len(paths) > 150

    for path in paths:
        node = example
        for key in path[:-1]:
            node = node[key]
        kept = node[path[-1]]
        for wrong in (None, "oops"):
            node[path[-1]] = wrong
            render_html(example)  # no exception is the assertion
        node[path[-1]] = kept


def test_absolute_dependence_differences_are_not_read_as_signed() -> None:
    report = _example()
    dependence = report["dependence"]
    dependence["difference"] = [[None if v is None else abs(v) for v in row] for row in dependence["difference"]]
    dependence["std"] = None

    page = render_html(report)
    text = _text(page)

    assert "|synthetic − real|" in text and "further apart" in text
    assert "stronger" not in text and "pairs are noisy" in text and "0 of 105 pairs" in text


def test_scores_of_any_scale_are_written_plainly() -> None:
    report = _example()
    report["sites"][0]["scores"]["holdout_rows"] = 123456.0
    report["sites"][0]["stds"]["holdout_rows"] = 31.0
    report["privacy_scores"]["exact_copy_rate_holdout"] = 0.0003

    text = _text(render_html(report))

    assert "123,456 ± 31" in text and "e+0" not in text
    assert "Exact copies of held-out rows (baseline) 0.03%" in text


def test_rejects_another_format() -> None:
    report = _example()
    report["format"] = "fedsynth-report/2"

    with pytest.raises(FedsynthError, match="fedsynth-report/1"):
        render_html(report)


def test_write_html_writes_the_page_atomically(tmp_path: Path) -> None:
    target = tmp_path / "out" / "report.html"
    target.parent.mkdir()
    target.write_text("old")
    report = _example()

    write_html(report, target)

    assert target.read_text(encoding="utf-8") == render_html(report)
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.html"]  # no temporary file left


# ---- the page in a browser ----------------------------------------------------------------------------------

_BROWSERS = ("chromium", "chromium-browser", "google-chrome")
_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--virtual-time-budget=5000")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module")
def chromium() -> str:
    for name in _BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    if _in_ci():
        pytest.fail(f"CI is set but none of {', '.join(_BROWSERS)} is on PATH; .ci/run installs Debian's chromium")
    pytest.skip(f"no headless browser ({', '.join(_BROWSERS)}) on PATH; `apt-get install chromium` to run these")


def _browse(binary: str, page: Path, *options: str) -> str:
    """Run headless Chromium once, with a profile of its own, and return what it printed."""
    profile = tempfile.mkdtemp(prefix="profile-", dir=page.parent)
    command = [binary, *_FLAGS, f"--user-data-dir={profile}", *options, page.as_uri()]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{binary} did not finish in 120 s: {exc}")
    assert done.returncode == 0, f"{binary} exited {done.returncode}: {done.stderr[-2000:]}"
    return done.stdout


def _rendered(binary: str, page: Path) -> str | None:
    """The verdict the page's own check leaves on <body data-rendered>."""
    dom = _browse(binary, page, "--dump-dom")
    body = [attrs for tag, attrs in _parse(dom).tags if tag == "body"]
    assert body, f"no <body> in the dumped DOM: {dom[:500]!r}"
    return body[0].get("data-rendered")


def _screenshot(binary: str, page: Path, name: str) -> Path:
    shot = page.parent / name
    _browse(binary, page, f"--screenshot={shot}", "--window-size=1200,4000")
    assert shot.is_file(), f"{binary} wrote no screenshot"
    return shot


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def _unfilter(kind: int, line: bytes, prev: np.ndarray, bpp: int) -> np.ndarray:
    if kind == 0:
        return np.frombuffer(line, dtype=np.uint8)
    if kind == 1:
        run = np.frombuffer(line, dtype=np.uint8).reshape(-1, bpp).astype(np.uint32)
        summed: np.ndarray = (np.cumsum(run, axis=0) % 256).astype(np.uint8)
        return summed.reshape(-1)
    if kind == 2:
        added: np.ndarray = np.frombuffer(line, dtype=np.uint8) + prev  # uint8 wraps mod 256, as PNG wants
        return added
    out, up = bytearray(line), prev.tobytes()
    for i in range(len(out)):  # Average and Paeth depend on the byte just decoded
        a, c = (out[i - bpp], up[i - bpp]) if i >= bpp else (0, 0)
        out[i] = (out[i] + ((a + up[i]) >> 1 if kind == 3 else _paeth(a, up[i], c))) & 0xFF
    return np.frombuffer(bytes(out), dtype=np.uint8)


def _pixels(png: bytes) -> np.ndarray:
    """A minimal PNG reader (8-bit, non-interlaced, grey/RGB/RGBA), enough for a browser's screenshot."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, chunks, header = 8, [], b""
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos:pos + 4])
        kind, body = png[pos + 4:pos + 8], png[pos + 8:pos + 8 + length]
        header = body if kind == b"IHDR" else header
        chunks += [body] if kind == b"IDAT" else []
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and interlace == 0 and colour in (0, 2, 6), "unexpected PNG layout"
    bpp = {0: 1, 2: 3, 6: 4}[colour]
    raw = zlib.decompress(b"".join(chunks))
    stride, rows, prev = width * bpp + 1, [], np.zeros(width * bpp, dtype=np.uint8)
    for r in range(height):
        prev = _unfilter(raw[r * stride], raw[r * stride + 1:(r + 1) * stride], prev, bpp)
        rows.append(prev)
    return np.stack(rows).reshape(height, width, bpp)[:, :, :3]


@pytest.fixture(scope="module")
def example_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    page = tmp_path_factory.mktemp("report") / "report.html"
    write_html(_example(), page)
    return page


def test_chromium_draws_every_figure(chromium: str, example_page: Path) -> None:
    assert _rendered(chromium, example_page) == "ok"


def test_chromium_screenshot_is_not_blank(chromium: str, example_page: Path) -> None:
    pixels = _pixels(_screenshot(chromium, example_page, "r.png").read_bytes())

    assert pixels.shape == (4000, 1200, 3)
    rgb = pixels.astype(np.uint32)
    colours = np.unique(rgb[:, :, 0] << 16 | rgb[:, :, 1] << 8 | rgb[:, :, 2])
    inked = float((pixels.min(axis=2) < 200).mean())
    assert len(colours) > 50, f"only {len(colours)} distinct colours"
    assert inked > 0.05, f"only {inked:.1%} of the pixels carry ink"


def test_page_reads_the_same_without_its_script(chromium: str, example_page: Path) -> None:
    # Headless Chromium cannot dump or shoot with JavaScript off, so drop the page's only script instead.
    bare = example_page.with_name("no-script.html")
    bare.write_text(re.sub(r"<script>.*?</script>", "", example_page.read_text(encoding="utf-8"), flags=re.S))

    with_script = _screenshot(chromium, example_page, "with.png").read_bytes()
    without = _screenshot(chromium, bare, "without.png").read_bytes()

    assert with_script == without or np.array_equal(_pixels(with_script), _pixels(without))


def test_chromium_draws_a_hostile_sparse_report(chromium: str, tmp_path: Path) -> None:
    report = json.loads(json.dumps(_example()).replace('"northgate"', json.dumps(HOSTILE)))
    report["marginals"][0]["column"] = ATTRIBUTE_BREAK
    report["privacy"]["fallback"] = None
    report["privacy"]["site_level"] = {"budget": 8.0, "mode": "distributed", "per_round": [
        {"round": r, "epsilon": round(0.3 * r ** 0.5, 3)} for r in range(1, 31)]}
    for section in ("utility", "bias"):
        report[section] = None
    dependence = report["dependence"]  # absolute differences without noise, as a central reference gives them
    dependence["difference"] = [[None if v is None else abs(v) for v in row] for row in dependence["difference"]]
    dependence["std"] = None
    page = tmp_path / "hostile.html"
    write_html(report, page)

    assert _rendered(chromium, page) == "ok"


@pytest.mark.parametrize("broken", [
    '<figure class="chart" id="fig-broken"><svg viewBox="0 0 100 50" width="100" height="50"><g></g></svg></figure>',
    '<figure class="chart" id="fig-broken"><svg viewBox="0 0 100 50" width="0" height="0">'
    '<rect class="mark" width="40" height="20"/></svg></figure>',
], ids=["no mark", "no size"])
def test_self_check_reports_a_figure_that_did_not_draw(chromium: str, example_page: Path, broken: str) -> None:
    page = example_page.with_name("broken.html")
    page.write_text(example_page.read_text(encoding="utf-8").replace("</main>", broken + "</main>"))

    assert _rendered(chromium, page) == "failed:fig-broken"
