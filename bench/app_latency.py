"""Dashboard latency in a real browser: Chromium (Debian's, driven by Playwright) opens each page of
`drkd-viz app --runs RUNS` and changes its main widget repeatedly.

    python bench/app_latency.py [--runs runs/demo] [--repeats 10] [--screenshots DIR]

Prints per page: the first render (navigation until the page is drawn and its script run has ended;
the first page that needs the detectors includes loading them), the first widget change (may compute),
and widget change -> redrawn figure p50 / p95 after warm-up (every value seen once). The redraw signal
is the figure's <img> getting a new src and finishing loading. tests/test_app_browser.py drives the
browser with these functions too.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROME_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1400, "height": 1800}  # tall: the main pane scrolls inside, full-page shots do not help
MAIN_IMAGES = '[data-testid="stMain"] [data-testid="stImage"] img'
# Streamlit marks the app root with the state of the script run ("running", "notRunning", …)
IDLE = """document.querySelector('[data-testid="stApp"]')?.getAttribute('data-test-script-state') === 'notRunning'"""


@dataclass(frozen=True)
class Scenario:
    page: str  # url path of the page
    title: str  # its title, waited for
    widget: str  # "selectbox" | "slider" | "chart" (a click on an interactive chart) | "none"
    label: str = ""  # the widget's label (a substring is enough); "chart": a text its marks' tooltips show
    values: tuple[str, ...] = ()  # selectbox: options to alternate between (a label or its leading words)
    image: int = 0  # index of the main-area figure the widget redraws
    path: str | None = None  # url path when not the page name (the default page lives at the root)
    chart: int = 0  # "chart": index of the interactive chart clicked
    # "chart": a text that is redrawn with the chart instead of a figure (its leading words; None: the figure)
    redrawn_text: str | None = None


SCENARIOS = (
    Scenario("overview", "Overview", "selectbox", "Metric", ("APs", "AP"), path=""),
    Scenario("small_objects", "Small objects", "selectbox", "Method", ("feature_imitation", "drkd")),
    Scenario("pixel_relations", "Pixel relations", "slider", "Overlay opacity"),
    Scenario("instance_relations", "Instance relations", "selectbox", "Highlight instance", ("#1", "#0")),
    Scenario("attribution", "Attribution", "slider", "Map opacity"),
    Scenario("ablations", "Ablations", "selectbox", "Chart", ("AP", "ΔAP")),
    Scenario("runs", "Runs", "selectbox", "Run", ("feature_imitation-s0", "drkd-s0")),
)
BUILD = Scenario("build", "Build runs", "none")
# the relation views' clicks: a matrix cell outlines its pair on the image; a cell of the image redraws the affinities
CLICKS = (
    Scenario("instance_relations", "Instance relations", "chart", "relates to (column)", chart=0),
    Scenario("pixel_relations", "Pixel relations", "chart", "row", chart=0, redrawn_text="Cell (row"),
)


def chromium() -> str:
    path = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if path is None:
        raise SystemExit(
            "Debian's chromium is needed (apt-get install -y chromium; scripts/setup.sh installs it as root)"
        )
    return path


def launch(playwright):
    return playwright.chromium.launch(executable_path=chromium(), args=CHROME_ARGS, headless=True)


def _image_src(page, index: int) -> str | None:
    return page.evaluate(
        "([sel, i]) => { const im = document.querySelectorAll(sel)[i]; return im ? im.src : null; }",
        [MAIN_IMAGES, index],
    )


def _wait_image(page, index: int, old: str | None, timeout_ms: float) -> None:
    page.wait_for_function(
        """([sel, i, old]) => {
            const im = document.querySelectorAll(sel)[i];
            return !!im && im.src !== old && im.complete && im.naturalWidth > 0;
        }""",
        arg=[MAIN_IMAGES, index, old],
        timeout=timeout_ms,
    )


def _text(page, prefix: str) -> str | None:
    return page.evaluate(
        """(prefix) => {
            const hit = Array.from(document.querySelectorAll('[data-testid="stCaptionContainer"]'))
                .find(el => el.innerText.startsWith(prefix));
            return hit ? hit.innerText : null;
        }""",
        prefix,
    )


def _wait_text(page, prefix: str, old: str | None, timeout_ms: float) -> None:
    page.wait_for_function(
        f"""([prefix, old]) => {{
            const hit = Array.from(document.querySelectorAll('[data-testid="stCaptionContainer"]'))
                .find(el => el.innerText.startsWith(prefix));
            return !!hit && hit.innerText !== old && {IDLE};
        }}""",
        arg=[prefix, old],
        timeout=timeout_ms,
    )


def chart_marks(page, index: int):
    """The drawing surface of the ``index``-th interactive chart of the main area, scrolled into view."""
    chart = page.locator('[data-testid="stMain"] [data-testid="stVegaLiteChart"]').nth(index)
    chart.scroll_into_view_if_needed()
    marks = chart.locator("canvas, svg.marks").first
    marks.wait_for()
    return marks


def tooltip_spots(
    page, index: int, text: str, wanted: int = 2, step: int = 3, x_shares: range | None = None
) -> list[tuple[float, float]]:
    """Points of the ``index``-th chart where the pointer shows a tooltip containing ``text`` (sweeping the chart
    from the top left), each with a different tooltip, at most ``wanted`` of them: as fractions of the chart's
    width and height (a rerun may move the chart; :func:`point_of` finds them again). ``x_shares``: the
    percentages of the width to try (default: every ``step``), for a narrow mark such as the class strip."""
    box = chart_marks(page, index).bounding_box()
    assert box is not None, "the chart has no size"
    tooltip = page.locator("#vg-tooltip-element")
    spots, seen = [], set()
    for y_share in range(step, 100, step):
        for x_share in x_shares or range(step, 100, step):
            x, y = box["x"] + box["width"] * x_share / 100, box["y"] + box["height"] * y_share / 100
            page.mouse.move(x, y)
            if tooltip.count() and "visible" in (tooltip.get_attribute("class") or ""):
                shown = tooltip.inner_text()
                # one mark per (row, column) whatever the panel: two clicks must pick two different things
                key = "\n".join(line for line in shown.splitlines() if not line.startswith("model"))
                if text in shown and key not in seen:
                    seen.add(key)
                    spots.append((x_share / 100, y_share / 100))
                    if len(spots) == wanted:
                        return spots
    return spots


def point_of(page, index: int, spot: tuple[float, float]) -> tuple[float, float]:
    """Where a spot of :func:`tooltip_spots` lies on the screen now (the chart scrolled into view)."""
    box = chart_marks(page, index).bounding_box()
    assert box is not None, "the chart has no size"
    return box["x"] + box["width"] * spot[0], box["y"] + box["height"] * spot[1]


def _check_no_exception(page) -> None:
    count = page.get_by_test_id("stException").count()
    if count:
        raise AssertionError(
            f"the page shows {count} exception(s): {page.get_by_test_id('stException').first.inner_text()}"
        )


def open_page(page, url: str, scenario: Scenario, timeout_ms: float = 300_000) -> float:
    """Navigate to a page and wait until its title (and its figure, if it has one) is drawn; seconds."""
    started = time.perf_counter()
    page.goto(f"{url}/{scenario.page if scenario.path is None else scenario.path}")
    page.get_by_role("heading", name=scenario.title).first.wait_for(timeout=timeout_ms)
    if scenario.widget != "none":
        _wait_image(page, scenario.image, None, timeout_ms)
    page.wait_for_function(f"() => {IDLE}", timeout=timeout_ms)  # the script run has ended
    _check_no_exception(page)
    return time.perf_counter() - started


def change(page, scenario: Scenario, step: int, timeout_ms: float = 300_000, spots=None) -> float:
    """Change the scenario's widget (alternating values; for a chart, clicks at alternating ``spots``) and wait for
    its figure (or its redrawn text) to be redrawn; seconds."""
    page.wait_for_function(f"() => {IDLE}", timeout=timeout_ms)  # the previous run has ended
    old = _image_src(page, scenario.image) if scenario.redrawn_text is None else _text(page, scenario.redrawn_text)
    started = time.perf_counter()
    if scenario.widget == "chart":
        if not spots:
            raise ValueError(f"scenario {scenario.page}: no chart spots to click")
        page.mouse.click(*point_of(page, scenario.chart, spots[step % len(spots)]))
    elif scenario.widget == "selectbox":
        box = page.get_by_test_id("stSelectbox").filter(has_text=scenario.label).first
        box.click()
        value = scenario.values[step % len(scenario.values)]
        # the option's label, or its first word(s) followed by more ("#1" picks "#1 — small, 120 px²")
        page.get_by_role("option").filter(has_text=re.compile(rf"^{re.escape(value)}( |$)")).first.click(timeout=30_000)
    elif scenario.widget == "slider":
        slider = page.get_by_test_id("stSlider").filter(has_text=scenario.label).first.get_by_role("slider")
        slider.press("ArrowRight" if step % 2 == 0 else "ArrowLeft")
    else:
        raise ValueError(f"scenario {scenario.page} has no widget to change")
    if scenario.redrawn_text is None:
        _wait_image(page, scenario.image, old, timeout_ms)
    else:
        _wait_text(page, scenario.redrawn_text, old, timeout_ms)
    seconds = time.perf_counter() - started
    _check_no_exception(page)
    return seconds


def settle(page, timeout_ms: float = 300_000) -> None:
    """Wait until the script run has ended and every figure of the page has loaded (before a screenshot)."""
    page.wait_for_function(
        f"""(sel) => {IDLE} &&
                   Array.from(document.querySelectorAll(sel)).every(im => im.complete && im.naturalWidth > 0)""",
        arg=MAIN_IMAGES,
        timeout=timeout_ms,
    )


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("runs/demo"), help="runs folder with a report")
    parser.add_argument("--repeats", type=int, default=10, help="measured widget changes per page")
    parser.add_argument("--screenshots", type=Path, default=None, help="save a screenshot of each page here")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    from drkd_viz.runs.reports import list_reports
    from drkd_viz.serving import serve

    if not list_reports(args.runs.resolve()):
        raise SystemExit(
            f"no report in {args.runs}/reports: build one with drkd-viz pipeline --preset demo --out {args.runs}"
        )
    log = Path(tempfile.mkdtemp(prefix="drkd-app-bench-")) / "server.log"
    rows = []
    with serve(args.runs, log=log) as url, sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport=VIEWPORT)
        for scenario in (*SCENARIOS, *CLICKS):
            first = open_page(page, url, scenario)
            spots = None
            if scenario.widget == "chart":
                settle(page)
                spots = tooltip_spots(page, scenario.chart, scenario.label)
                if len(spots) < 2:
                    raise SystemExit(f"{scenario.page}: found {len(spots)} clickable marks, need 2")
            values = max(2, len(scenario.values))
            cold = change(page, scenario, 0, spots=spots)
            for step in range(1, values):  # warm-up: every value once
                change(page, scenario, step, spots=spots)
            times = [change(page, scenario, step, spots=spots) for step in range(args.repeats)]
            name = scenario.page + (" (click)" if scenario.widget == "chart" else "")
            rows.append((name, first, cold, statistics.median(times), _percentile(times, 0.95)))
            if args.screenshots:
                settle(page)
                args.screenshots.mkdir(parents=True, exist_ok=True)
                suffix = "_click" if scenario.widget == "chart" else ""
                page.screenshot(path=str(args.screenshots / f"{scenario.page}{suffix}.png"))
            print(f"  {scenario.page}: done", file=sys.stderr, flush=True)
        browser.close()
    print(f"Dashboard latency in Chromium on {args.runs} ({args.repeats} widget changes per page after warm-up)")
    print(f"{'page':<28} {'first render':>13} {'first change':>13} {'change p50':>11} {'change p95':>11}")
    for name, first, cold, p50, p95 in rows:
        print(f"{name:<28} {first:>11.2f} s {cold:>11.2f} s {p50:>9.2f} s {p95:>9.2f} s")
    worst = max(r[4] for r in rows)
    print(f"slowest warm p95: {worst:.2f} s ({'within' if worst <= 1.0 else 'above'} the 1 s target)")


if __name__ == "__main__":
    main()
