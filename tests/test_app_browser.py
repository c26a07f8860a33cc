"""The dashboard in a real browser: `drkd-viz app` serves the quick runs on a free port, Debian's
Chromium (driven by Playwright from PyPI) opens every page, changes its main widget, waits for the
figure to be redrawn and saves a screenshot to $DRKD_TEST_ARTIFACTS (else a temporary folder).

The browser-driving functions live in bench/app_latency.py, which measures the same interactions."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
from playwright.sync_api import expect

from drkd_viz.serving import serve

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("app_latency", REPO / "bench" / "app_latency.py")
driver = importlib.util.module_from_spec(_spec)
sys.modules["app_latency"] = driver  # dataclasses look their module up there
_spec.loader.exec_module(driver)

if not (shutil.which("chromium") or Path(driver.CHROMIUM).exists()):
    if os.environ.get("CI"):
        pytest.fail("Debian's chromium is missing on CI: scripts/setup.sh installs it when run as root")
    pytest.skip("Debian's chromium is not installed (scripts/setup.sh installs it as root)", allow_module_level=True)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("DRKD_TEST_ARTIFACTS") or tmp_path_factory.mktemp("artifacts")) / "app"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser_page(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = driver.launch(p)
        page = browser.new_page(viewport=driver.VIEWPORT)
        page.set_default_timeout(300_000)
        yield page
        browser.close()


@pytest.fixture(scope="module")
def server(quick_runs, tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "server.log"
    with serve(quick_runs, log=log) as url:
        yield url, log


@pytest.mark.parametrize("scenario", driver.SCENARIOS, ids=lambda s: s.page)
def test_page_in_chromium(scenario, browser_page, server, artifacts):
    url, _ = server
    driver.open_page(browser_page, url, scenario)
    driver.change(browser_page, scenario, 0)
    driver.change(browser_page, scenario, 1)
    driver.settle(browser_page)
    browser_page.screenshot(path=str(artifacts / f"{scenario.page}.png"))


def test_build_page_and_clean_server_log(browser_page, server, artifacts):
    url, log = server

    driver.open_page(browser_page, url, driver.BUILD)
    # wait for the script to draw the button, as a person would, before counting it
    expect(browser_page.get_by_role("button", name="Build quick")).to_have_count(1, timeout=120_000)
    browser_page.screenshot(path=str(artifacts / "build.png"))
    text = log.read_text(errors="replace")
    assert "Traceback" not in text and "Error" not in text, text[-3000:]
    assert "127.0.0.1" in text


def test_empty_runs_folder_offers_the_build(browser_page, tmp_path, artifacts):
    with serve(tmp_path / "nothing-here") as url:
        driver.open_page(browser_page, url, dataclasses.replace(driver.BUILD, path=""))  # the only page: the root
        expect(browser_page.get_by_text("There are no runs to show yet")).to_have_count(1, timeout=120_000)
        browser_page.screenshot(path=str(artifacts / "no_runs.png"))


def test_upload_an_image_and_a_bad_one(browser_page, server, quick_runs, artifacts, tmp_path):
    """The pixel page with an uploaded image (one of the test split, re-encoded as PNG), then a file that is
    not an image: the maps are drawn for the first, a clear error is shown for the second."""
    from PIL import Image

    url, _ = server
    page = browser_page
    scenario = next(s for s in driver.SCENARIOS if s.page == "pixel_relations")
    driver.open_page(page, url, scenario)
    page.get_by_test_id("stRadio").get_by_text("upload").click()
    uploader = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
    uploader.wait_for(state="attached")
    good = tmp_path / "photo.png"
    source = next(iter(sorted((quick_runs / "data" / "test" / "images").iterdir())))
    Image.open(source).convert("RGB").save(good)
    old = driver._image_src(page, 0)
    uploader.set_input_files(str(good))
    driver._wait_image(page, 0, old, 300_000)
    driver.settle(page)
    expect(page.get_by_text("An uploaded image has no ground truth")).to_have_count(1, timeout=120_000)
    page.screenshot(path=str(artifacts / "pixel_relations_upload.png"))
    bad = tmp_path / "not_an_image.png"
    bad.write_bytes(b"this is not a PNG file")
    uploader.set_input_files(str(bad))
    page.get_by_text("not an image file Pillow can decode").wait_for()


def test_errors_chart_hover_and_click(browser_page, server, artifacts):
    """The Errors page's breakdown chart: hovering a bar shows its numbers in a tooltip, clicking it filters
    the image gallery to that model's errors of that type (the page says so)."""
    url, _ = server
    page = browser_page
    driver.open_page(page, url, driver.Scenario("errors", "Errors", "none"))
    driver.settle(page)
    chart = page.get_by_test_id("stVegaLiteChart").first
    chart.scroll_into_view_if_needed()
    marks = chart.locator("canvas, svg.marks").first
    marks.wait_for()
    box = marks.bounding_box()
    assert box is not None
    tooltip = page.locator("#vg-tooltip-element")
    spot = None
    # sweep the chart from the bottom up until the pointer is over a bar and its tooltip shows
    for y_share in range(90, 5, -5):
        for x_share in range(2, 98, 2):
            x, y = box["x"] + box["width"] * x_share / 100, box["y"] + box["height"] * y_share / 100
            page.mouse.move(x, y)
            if tooltip.count() and "visible" in (tooltip.get_attribute("class") or ""):
                spot = (x, y)
                break
        if spot:
            break
    assert spot is not None, "no bar showed a tooltip"
    text = tooltip.inner_text()
    assert "AP50 recovered by fixing it" in text and "model" in text, text
    page.screenshot(path=str(artifacts / "errors_hover.png"))
    page.mouse.click(*spot)
    expect(page.get_by_text("Filtered by the chart")).to_have_count(1, timeout=120_000)
    driver.settle(page)
    driver._check_no_exception(page)
    page.screenshot(path=str(artifacts / "errors_selected.png"))


def test_relation_matrix_hover_and_clicks(browser_page, server, artifacts):
    """Instance relations: hovering a matrix cell shows both instances and the value; clicking it outlines the pair on
    the image (the figure is redrawn and the picked instance follows); clicking the class strip picks one instance."""
    url, _ = server
    page = browser_page
    scenario = driver.Scenario("instance_relations", "Instance relations", "none")
    driver.open_page(page, url, scenario)
    driver.settle(page)
    cells = driver.tooltip_spots(page, 0, "relates to (column)", wanted=2)
    assert len(cells) == 2, "no matrix cell showed its tooltip"
    page.mouse.move(*driver.point_of(page, 0, cells[1]))
    tooltip = page.locator("#vg-tooltip-element")
    text = tooltip.inner_text()
    assert "A_ij" in text and "instance (row)" in text and "same class" in text, text
    row = int(text.split("instance (row)")[1].split("#")[1].split()[0])
    page.screenshot(path=str(artifacts / "instance_relations_hover.png"))
    old = driver._image_src(page, 0)
    page.mouse.click(*driver.point_of(page, 0, cells[1]))
    driver._wait_image(page, 0, old, 120_000)
    driver.settle(page)
    driver._check_no_exception(page)
    pick = page.get_by_test_id("stSelectbox").filter(has_text="Highlight instance").first.get_by_role("combobox")
    expect(pick).to_have_value(re.compile(rf"^#{row} —"))
    page.screenshot(path=str(artifacts / "instance_relations_pair.png"))
    strip = driver.tooltip_spots(page, 0, "size", wanted=2, x_shares=range(0, 25))  # the strip: 14 px, on the left
    assert strip, "no instance of the class strip showed its tooltip"
    page.mouse.move(*driver.point_of(page, 0, strip[-1]))
    picked = int(page.locator("#vg-tooltip-element").inner_text().split("#")[1].split()[0])
    old = driver._image_src(page, 0)
    page.mouse.click(*driver.point_of(page, 0, strip[-1]))
    if picked != row:
        driver._wait_image(page, 0, old, 120_000)
    driver.settle(page)
    expect(pick).to_have_value(re.compile(rf"^#{picked} —"))


def test_pixel_affinity_click_redraws_the_maps(browser_page, server, artifacts):
    """Pixel relations: clicking a cell of the image picks it (the caption says which) and every model's affinity
    map is redrawn for it."""
    url, _ = server
    page = browser_page
    driver.open_page(page, url, driver.Scenario("pixel_relations", "Pixel relations", "none"))
    driver.settle(page)
    spots = driver.tooltip_spots(page, 0, "col", wanted=2)
    assert len(spots) == 2, "no cell of the image grid showed its tooltip"
    before_text = driver._text(page, "Cell (row")
    before = driver.chart_marks(page, 1).screenshot()
    page.mouse.click(*driver.point_of(page, 0, spots[1]))
    driver._wait_text(page, "Cell (row", before_text, 120_000)
    driver.settle(page)
    driver._check_no_exception(page)
    after = driver.chart_marks(page, 1)
    page.wait_for_timeout(500)  # Vega draws after the script run ends
    assert after.screenshot() != before, "the affinity maps did not change"
    assert driver._text(page, "Cell (row") != before_text
    page.screenshot(path=str(artifacts / "pixel_affinity_click.png"))
