"""Every campaign's mail, in every language, as a customer's phone and desktop show it: Debian's
Chromium (driven by Playwright) renders the sample mails (the demo's longest names and highest prices,
composed by the real composer) at 320, 375 and 600 px and checks the layout by its boxes: the page
never scrolls sideways, no element sticks out of its container, every image has a width and a
height, every button is fully visible; in light and dark colour schemes every text reads against
its background (WCAG contrast). Product images are served as large 800 x 800 pictures (they must
scale down); the shop has a logo.

Screenshots go to tests/artifacts/mails/after/<campaign>-<language>-<n>-<width>.png (ignored by git).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from config.settings import Settings
from shopmail.campaigns import get_campaign, registry
from shopmail.run.gallery import sample_mails
from tests.browser import CHROMIUM, CHROMIUM_ARGS, need_chromium

SHOTS = Path(__file__).resolve().parent / "artifacts" / "mails" / "after"
WIDTHS = (320, 375, 600)
GRID_COLUMNS = {320: 1, 375: 2, 600: 3}  # product cards in a row: 1-up, 2-up, 3-up
FIRST_ROW = """() => {
  const cols = [...document.querySelectorAll('.sm-col')].map((c) => c.getBoundingClientRect());
  return cols.length < 3 ? null : cols.filter((r) => Math.abs(r.top - cols[0].top) < 1).length;
}"""
CHECKS = Path(__file__).resolve().parent / "mail_checks"
LAYOUT_PROBLEMS = (CHECKS / "layout_problems.js").read_text(encoding="utf-8")  # what a customer sees go wrong
CONTRAST_PROBLEMS = (CHECKS / "contrast_problems.js").read_text(encoding="utf-8")  # text that does not read
PICTURE = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="800" height="800" viewBox="0 0 800 800">'
    '<rect width="800" height="800" fill="#8aa"/><circle cx="400" cy="400" r="300" fill="#cdd"/></svg>'
)
LOGO = (  # twice the logo's size in the settings (a sharp logo on high-density screens)
    '<svg xmlns="http://www.w3.org/2000/svg" width="360" height="96" viewBox="0 0 360 96">'
    '<rect width="360" height="96" rx="12" fill="#c2255c"/></svg>'
)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _page(browser, width: int, scheme: str = "light"):
    page = browser.new_page(viewport={"width": width, "height": 800}, color_scheme=scheme)
    page.route(
        "**/*",
        lambda route: (
            route.fulfill(
                status=200,
                content_type="image/svg+xml",
                body=LOGO if "logo" in route.request.url else PICTURE,
            )
            if route.request.resource_type == "image"
            else route.abort()
        ),
    )
    return page


@pytest.fixture
def branded(settings: Settings) -> Settings:
    """The test settings with a logo (an image with its size, as a real shop has)."""
    return settings.model_copy(
        update={"logo_url": "https://shop.example/logo.png", "logo_width": 180, "logo_height": 48}
    )


@pytest.mark.parametrize("name", list(registry()))
def test_every_mail_fits_phones_and_desktops(name: str, browser, branded: Settings) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    mails = sample_mails(get_campaign(name), branded)
    problems: list[str] = []
    for width in WIDTHS:
        page = _page(browser, width)
        for sample in mails:
            page.set_content(sample.mail.html, wait_until="load")
            found = page.evaluate(LAYOUT_PROBLEMS)
            columns = page.evaluate(FIRST_ROW)
            if columns is not None and columns != GRID_COLUMNS[width]:
                found.append(f"{columns} product cards in a row, not {GRID_COLUMNS[width]}")
            if width == 375:
                found += page.evaluate(CONTRAST_PROBLEMS)
            problems += [f"{sample.slug} at {width}px: {problem}" for problem in found]
            page.screenshot(path=str(SHOTS / f"{sample.slug}-{width}.png"), full_page=True)
        page.close()
    dark = _page(browser, 375, "dark")
    for sample in mails:
        dark.set_content(sample.mail.html, wait_until="load")
        problems += [f"{sample.slug} dark: {p}" for p in dark.evaluate(CONTRAST_PROBLEMS)]
        dark.screenshot(path=str(SHOTS / f"{sample.slug}-375-dark.png"), full_page=True)
    dark.close()
    assert not problems, "\n".join(problems[:40])


def test_the_checks_see_the_faults_they_look_for(browser) -> None:
    """The checks above find a too-wide table, an image without height, a clipped button and grey
    text on white (so a green run means something)."""
    page = _page(browser, 375)
    page.set_content(
        '<table width="600"><tr><td bgcolor="#c2255c"><a href="#" style="display:inline-block;'
        'width:40px;overflow:hidden;white-space:nowrap">A much too long label</a></td></tr></table>'
        '<img src="https://shop.example/x.png" width="100"><p style="color:#aaa">faint text</p>',
        wait_until="load",
    )
    layout, contrast = page.evaluate(LAYOUT_PROBLEMS), page.evaluate(CONTRAST_PROBLEMS)
    page.close()
    assert any("600px wide" in p or "wide in a 375px" in p for p in layout), layout
    assert any("without width and height" in p for p in layout), layout
    assert any("clipped" in p for p in layout), layout
    assert any("faint text" in p for p in contrast), contrast
