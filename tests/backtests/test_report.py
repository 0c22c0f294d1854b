"""The report page: self-contained HTML, and in headless Chromium its charts draw with no errors.

Chromium is Debian's (/usr/bin/chromium), driven by Playwright without `playwright install`.
The page is served to the browser by intercepting one made-up URL with the bytes and headers
our endpoint answered, including its Content-Security-Policy; every other request the page
might make is recorded and refused, so a chart that needed the internet would stay empty.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Route, sync_playwright

from quantdesk.engine.rules import RULEBOOK_VERSION
from tests.backtests import fetch, make_strategy, start
from tests.support import Account, Api

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
PAGE_URL = "http://report.quantdesk.test/report"
TWO_SYMBOLS = {"symbols": ["600519.SH", "000001.SZ"], "initial_capital": 200_000}


def _report(api: Api, user: Account, backtest_id: int) -> Any:
    response = api.get(f"/api/backtests/{backtest_id}/report", headers=user.headers)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response


def test_the_report_holds_every_section(api: Api, user: Account) -> None:
    created = start(api, user, make_strategy(api, user), **TWO_SYMBOLS)
    result = fetch(api, user, created["id"], "/result")
    response = _report(api, user, created["id"])
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    nonce = re.search(r"script-src 'nonce-([^']+)'", response.headers["Content-Security-Policy"])
    assert nonce is not None
    assert html.count(f'<script nonce="{nonce.group(1)}">') == 2  # plotly.js and the drawing
    assert re.findall(r"<script(?![^>]*(nonce=|application/json))", html) == []
    # Self-contained: outside the scripts' text, no src or href leads anywhere.
    markup = re.sub(r"<script[^>]*>.*?</script>", "", html, flags=re.DOTALL)
    assert re.findall(r"(?:src|href)=", markup) == []
    assert "plotly.js v" in html
    assert f'<td id="rulebook-version">{RULEBOOK_VERSION}</td>' in html
    for section in ("Metrics", "Costs", "Refused or trimmed orders", "Log ("):
        assert f"<h2>{section}" in html
    costs = result["cost_summary"]
    assert costs["min_commission_fills"] > 0  # small orders of 000001.SZ pay the minimum
    assert f"<td>{costs['min_commission_fills']} of {costs['fills']}</td>" in html
    assert f"{costs['stamp_duty']:,.2f}" in html
    assert f"<h2>Trades ({len(result['trades'])})</h2>" in html
    assert html.count('<td class="l buy">buy</td>') == sum(
        1 for t in result["trades"] if t["action"] == "buy"
    )
    assert html.count('<td class="l">lot_size</td>') == sum(
        1 for r in result["refusals"] if r["reason"] == "lot_size"
    )
    assert result["logs"][0]["message"] in html
    assert 'id="chart-price-0"' in html
    assert 'id="chart-price-1"' in html


def test_user_text_is_escaped(api: Api, user: Account) -> None:
    created = start(api, user, make_strategy(api, user, name="<b>x</b>"), name="<script>1</script>")
    html = _report(api, user, created["id"]).get_data(as_text=True)
    assert "<script>1</script>" not in html
    assert "&lt;script&gt;1&lt;/script&gt;" in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html


def _open_in_chromium(response: Any) -> dict[str, Any]:
    """Load the page as the browser would; the console, refused requests and each chart."""
    body = response.get_data()
    headers = {
        "Content-Type": response.headers["Content-Type"],
        "Content-Security-Policy": response.headers["Content-Security-Policy"],
    }
    problems: list[str] = []
    refused: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page()
            page.on(
                "console",
                lambda m: (
                    problems.append(f"{m.type}: {m.text}")
                    if m.type in ("error", "warning")
                    else None
                ),
            )
            page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))

            def serve(route: Route) -> None:
                if route.request.url == PAGE_URL:
                    route.fulfill(status=200, body=body, headers=headers)
                else:
                    refused.append(route.request.url)
                    route.abort()

            page.route("**/*", serve)
            page.goto(PAGE_URL, wait_until="load")
            page.wait_for_function(
                "document.querySelectorAll('.js-plotly-plot').length"
                " === document.querySelectorAll('script[data-figure]').length",
                timeout=20_000,
            )
            charts = page.evaluate(
                """() => Object.fromEntries(
                    Array.from(document.querySelectorAll('.js-plotly-plot')).map(el => [
                        el.id,
                        {
                            traces: el.data.map(t => ({
                                type: t.type || 'scatter',
                                name: t.name || '',
                                points: (t.type === 'heatmap' ? t.z.flat() : t.y)
                                    .filter(v => v !== null).length,
                            })),
                            drawn: el.querySelectorAll('.main-svg').length,
                            title: el.layout.title.text,
                        },
                    ]))"""
            )
        finally:
            browser.close()
    return {"problems": problems, "refused": refused, "charts": charts}


@pytest.mark.slow
def test_the_report_draws_its_charts_in_chromium_offline(api: Api, user: Account) -> None:
    created = start(api, user, make_strategy(api, user), **TWO_SYMBOLS)
    result = fetch(api, user, created["id"], "/result")
    seen = _open_in_chromium(_report(api, user, created["id"]))
    assert seen["problems"] == []
    assert seen["refused"] == []
    charts = seen["charts"]
    days = len(result["equity"])
    assert set(charts) == {
        "chart-equity",
        "chart-drawdown",
        "chart-monthly",
        "chart-price-0",
        "chart-price-1",
        "chart-records",
    }
    assert all(chart["drawn"] > 0 for chart in charts.values())
    assert [t["points"] for t in charts["chart-equity"]["traces"]] == [days, days]
    assert charts["chart-drawdown"]["traces"][0]["points"] == days
    assert charts["chart-monthly"]["traces"][0]["type"] == "heatmap"
    assert charts["chart-monthly"]["traces"][0]["points"] == 24  # two years of months
    trades = result["trades"]
    prices = {c["title"].split(":")[0]: c for n, c in charts.items() if "price" in n}
    assert set(prices) == {"600519.SH", "000001.SZ"}
    for symbol, chart in prices.items():
        close, buys, sells = chart["traces"]
        assert close["points"] == days
        assert buys["points"] == sum(
            1 for t in trades if t["symbol"] == symbol and t["action"] == "buy"
        )
        assert sells["points"] == sum(
            1 for t in trades if t["symbol"] == symbol and t["action"] == "sell"
        )
        assert buys["points"] > 0
    assert charts["chart-records"]["traces"][0]["name"] == "cash"


@pytest.mark.slow
def test_a_grid_report_draws_its_heat_map(api: Api, user: Account) -> None:
    grid = start(
        api, user, make_strategy(api, user), param_grid={"fast": [3, 5, 10], "slow": [20, 40]}
    )
    seen = _open_in_chromium(_report(api, user, grid["id"]))
    assert seen["problems"] == []
    assert seen["refused"] == []
    (heat,) = seen["charts"]["chart-grid"]["traces"]
    assert heat["type"] == "heatmap"
    assert heat["points"] == 6
    assert "chart-equity" in seen["charts"]
