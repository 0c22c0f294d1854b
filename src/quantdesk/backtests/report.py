"""The backtest report: one self-contained HTML page whose charts work offline (plotly.js inline).

It reads only what the run stored (ARCHITECTURE.md, step 5). Figures are plain plotly.js JSON
in `<script type="application/json">` blocks drawn by one small script, so the page's Content
Security Policy allows scripts by nonce only (no inline handlers, nothing from elsewhere).
plotly.js is embedded whole (about 4.8 MB): the "cdn" mode fails without internet
(REFERENCE.md, "Browser tests").
"""

from __future__ import annotations

import json
import math
import secrets
from dataclasses import dataclass
from functools import cache
from typing import Any

import jinja2
import pandas as pd

from quantdesk.backtests import spec
from quantdesk.backtests.models import Backtest
from quantdesk.backtests.results import Stored

MAX_TABLE_ROWS = 2000  # trades and refusals shown; the exports hold every row
PERCENT = frozenset(
    {
        "total_return",
        "annual_return",
        "annual_volatility",
        "max_drawdown",
        "win_rate",
        "benchmark_return",
        "alpha",
        "tracking_error",
    }
)
MONEY = frozenset({"final_value"})
COUNT = frozenset({"max_drawdown_duration", "trades_count", "round_trips_count"})
# Losses red, gains green, zero white (plotly.js has no RdYlGn of its own).
RED_WHITE_GREEN = [[0.0, "#c0392b"], [0.5, "#f7f7f7"], [1.0, "#27ae60"]]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


@dataclass(frozen=True)
class Report:
    html: str
    nonce: str

    @property
    def content_security_policy(self) -> str:
        """Scripts of this page only (by nonce); plotly.js sets inline styles at run time."""
        return (
            f"default-src 'none'; script-src 'nonce-{self.nonce}'; "
            "style-src 'unsafe-inline'; img-src data: blob:; font-src data:; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
        )


@cache
def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return str(get_plotlyjs())


def fmt(name: str, value: Any) -> str:
    """A metric as people read it: 12.34% for fractions, 1,234,567.89 for money."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if name in PERCENT:
        return f"{value * 100:.2f}%"
    if name in MONEY:
        return f"{value:,.2f}"
    if name in COUNT:
        return f"{int(value):,}"
    return f"{value:.3f}"


def money(value: float | None) -> str:
    return "" if value is None else f"{value:,.2f}"


def _figure_json(figure: dict[str, Any]) -> str:
    """JSON safe inside a <script> element: no '<', '>' or '&' left as such."""
    text = json.dumps(figure, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    return {
        "title": {"text": title},
        "margin": {"l": 60, "r": 20, "t": 50, "b": 40},
        "height": 360,
        "hovermode": "x unified",
        "legend": {"orientation": "h"},
        **extra,
    }


def equity_figure(run: Stored) -> dict[str, Any]:
    dates = [e.date.isoformat() for e in run.equity]
    data = [
        {
            "type": "scatter",
            "mode": "lines",
            "name": "equity",
            "x": dates,
            "y": [e.equity for e in run.equity],
        },
    ]
    if any(e.benchmark is not None for e in run.equity):
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": f"benchmark ({run.backtest.benchmark})",
                "x": dates,
                "y": [e.benchmark for e in run.equity],
            }
        )
    return {"data": data, "layout": _layout("Equity against the benchmark")}


def drawdown_figure(run: Stored) -> dict[str, Any]:
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines",
                "fill": "tozeroy",
                "name": "drawdown",
                "x": [e.date.isoformat() for e in run.equity],
                "y": [-e.drawdown * 100 for e in run.equity],
                "line": {"color": "#c0392b"},
            }
        ],
        "layout": _layout("Drawdown (%)", yaxis={"ticksuffix": "%"}),
    }


def monthly_returns(run: Stored) -> pd.DataFrame:
    """Returns per calendar month (rows: years, columns: 1..12), as fractions."""
    series = pd.Series(
        [e.equity for e in run.equity], index=pd.to_datetime([e.date for e in run.equity])
    )
    month_end = series.resample("ME").last().dropna()
    previous = month_end.shift(1)
    previous.iloc[0] = series.iloc[0]
    returns = month_end / previous - 1
    months = pd.DatetimeIndex(returns.index)
    table = pd.DataFrame({"year": months.year, "month": months.month, "r": returns.to_numpy()})
    return table.pivot(index="year", columns="month", values="r").reindex(columns=range(1, 13))


def monthly_figure(run: Stored) -> dict[str, Any]:
    table = monthly_returns(run)
    z = [[None if pd.isna(v) else round(float(v) * 100, 2) for v in row] for row in table.values]
    text = [["" if v is None else f"{v:.1f}%" for v in row] for row in z]
    return {
        "data": [
            {
                "type": "heatmap",
                "x": MONTHS,
                "y": [str(y) for y in table.index],
                "z": z,
                "text": text,
                "texttemplate": "%{text}",
                "colorscale": RED_WHITE_GREEN,
                "zmid": 0,
                "hovertemplate": "%{y} %{x}: %{z:.2f}%<extra></extra>",
            }
        ],
        "layout": _layout(
            "Monthly returns (%)",
            height=max(260, 40 * len(z) + 120),
            yaxis={"type": "category", "autorange": "reversed"},
        ),
    }


def price_figures(run: Stored) -> list[dict[str, Any]]:
    """Each charted symbol's close with its buys and sells marked at their fill prices."""
    prices = run.result.prices or {}
    dates = prices.get("dates", [])
    figures = []
    for symbol, closes in (prices.get("close") or {}).items():
        data: list[dict[str, Any]] = [
            {
                "type": "scatter",
                "mode": "lines",
                "name": "close",
                "x": dates,
                "y": closes,
                "line": {"color": "#34495e"},
            }
        ]
        for action, marker, color in (
            ("buy", "triangle-up", "#27ae60"),
            ("sell", "triangle-down", "#c0392b"),
        ):
            trades = [t for t in run.trades if t.symbol == symbol and t.action == action]
            data.append(
                {
                    "type": "scatter",
                    "mode": "markers",
                    "name": f"{action}s ({len(trades)})",
                    "x": [t.timestamp.isoformat() for t in trades],
                    "y": [t.price for t in trades],
                    "text": [f"{t.quantity:g} @ {t.price:.2f}" for t in trades],
                    "marker": {"symbol": marker, "size": 9, "color": color},
                }
            )
        figures.append({"data": data, "layout": _layout(f"{symbol}: price, buys and sells")})
    return figures


def records_figure(run: Stored) -> dict[str, Any] | None:
    records = run.result.records or {}
    series = records.get("series") or {}
    if not series:
        return None
    dates = records.get("dates", [])
    data = [
        {"type": "scatter", "mode": "lines", "name": name, "x": dates, "y": values}
        for name, values in series.items()
    ]
    return {"data": data, "layout": _layout("Recorded series (ctx.record)")}


def grid_figure(table: dict[str, Any]) -> dict[str, Any] | None:
    """A heat map of the rank metric over the grid's first two parameters (best of the rest)."""
    names: list[str] = table["parameters"]
    rank_by = table["rank_by"]
    rows = [r for r in table["rows"] if r["score"] is not None]
    if not names or not rows:
        return None
    label = spec.canonical
    if len(names) == 1:
        values = table["param_grid"][names[0]]
        scores = {label(r["params"][names[0]]): r["score"] for r in rows}
        return {
            "data": [
                {
                    "type": "bar",
                    "x": [str(v) for v in values],
                    "y": [scores.get(label(v)) for v in values],
                    "name": rank_by,
                }
            ],
            "layout": _layout(
                f"{rank_by} by {names[0]}", xaxis={"type": "category", "title": {"text": names[0]}}
            ),
        }
    x_name, y_name = names[0], names[1]
    xs, ys = table["param_grid"][x_name], table["param_grid"][y_name]
    best: dict[tuple[str, str], float] = {}
    for r in rows:
        key = (label(r["params"][x_name]), label(r["params"][y_name]))
        if key not in best or spec.sort_key(rank_by, r["score"]) < spec.sort_key(
            rank_by, best[key]
        ):
            best[key] = r["score"]
    z = [[best.get((label(x), label(y))) for x in xs] for y in ys]
    title = f"{rank_by} by {x_name} and {y_name}"
    if len(names) > 2:
        title += f" (best over {', '.join(names[2:])})"
    return {
        "data": [
            {
                "type": "heatmap",
                "x": [str(x) for x in xs],
                "y": [str(y) for y in ys],
                "z": z,
                "colorscale": "Viridis",
                "reversescale": rank_by in spec.LOWER_IS_BETTER,
                "texttemplate": "%{z:.3f}",
                "hovertemplate": f"{x_name}=%{{x}}, {y_name}=%{{y}}: %{{z:.4f}}<extra></extra>",
            }
        ],
        "layout": _layout(
            title,
            xaxis={"type": "category", "title": {"text": x_name}},
            yaxis={"type": "category", "title": {"text": y_name}},
        ),
    }


def render_report(run: Stored, *, backtest: Backtest, grid: dict[str, Any] | None = None) -> Report:
    """The report of `backtest` (a grid: its heat map and table, then its best combination)."""
    figures: list[tuple[str, dict[str, Any]]] = []
    if grid is not None:
        heat = grid_figure(grid)
        if heat is not None:
            figures.append(("grid", heat))
    figures += [
        ("equity", equity_figure(run)),
        ("drawdown", drawdown_figure(run)),
        ("monthly", monthly_figure(run)),
    ]
    figures += [(f"price-{i}", f) for i, f in enumerate(price_figures(run))]
    recorded = records_figure(run)
    if recorded is not None:
        figures.append(("records", recorded))
    nonce = secrets.token_urlsafe(18)
    html = _template().render(
        backtest=backtest,
        run=run,
        grid=grid,
        metrics=[(m, fmt(m, getattr(run.result, m))) for m in spec.METRICS],
        costs=run.cost_summary,
        figures=[(name, _figure_json(f)) for name, f in figures],
        trades=run.trades[:MAX_TABLE_ROWS],
        refusals=run.refusals[:MAX_TABLE_ROWS],
        max_rows=MAX_TABLE_ROWS,
        plotly_js=_plotly_js(),
        nonce=nonce,
        money=money,
        fmt=fmt,
        reasons=_reason_counts(run),
    )
    return Report(html=html, nonce=nonce)


def _reason_counts(run: Stored) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for r in run.refusals:
        counts[r.reason] = counts.get(r.reason, 0) + 1
    return sorted(counts.items(), key=lambda item: -item[1])


@cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(_TEMPLATE)


_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Backtest {{ backtest.id }}: {{ backtest.name }}</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1200px;
padding:16px 24px;color:#222}
h1{font-size:1.5em;margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:.5em 0}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}th{background:#f5f5f5}
td.l,th.l{text-align:left}.muted{color:#777}.grid2{display:grid;grid-template-columns:1fr 1fr;
gap:8px 32px}.chart{min-height:260px}.scroll{max-height:480px;overflow:auto}
code{font-size:12px}.buy{color:#27ae60}.sell{color:#c0392b}
</style>
<script nonce="{{ nonce }}">{{ plotly_js | safe }}</script>
</head><body>
<h1>{{ backtest.name }}</h1>
<p class="muted">Backtest {{ backtest.id }} ({{ backtest.kind }}) of strategy
"{{ backtest.strategy_name }}" version {{ backtest.strategy_version }}, {{ backtest.status }};
{{ backtest.symbols | join(", ") }} from {{ backtest.start_date }} to {{ backtest.end_date }}.</p>
<div class="grid2">
<table id="setup"><tr><th class="l" colspan="2">Run</th></tr>
<tr><td class="l">market</td><td>{{ backtest.market }}</td></tr>
<tr><td class="l">initial capital</td><td>{{ money(backtest.initial_capital) }}</td></tr>
<tr><td class="l">benchmark</td><td>{{ backtest.benchmark or "none" }}</td></tr>
<tr><td class="l">data range</td><td>{{ run.backtest.data_start }} to {{ run.backtest.data_end }}
({{ run.backtest.bars_count }} trading days)</td></tr>
<tr><td class="l">fill, slippage</td>
<td>{{ backtest.fill }}, {{ backtest.slippage_bps }} bps</td></tr>
<tr><td class="l">prices</td><td>{{ backtest.adjust }}</td></tr>
<tr><td class="l">cost overrides</td><td><code>{{ backtest.costs | tojson }}</code></td></tr>
<tr><td class="l">params</td><td><code>{{ run.backtest.params | tojson }}</code></td></tr>
</table>
<table id="reproduce"><tr><th class="l" colspan="2">Reproducibility</th></tr>
<tr><td class="l">rulebook version</td>
<td id="rulebook-version">{{ run.backtest.rulebook_version }}</td></tr>
<tr><td class="l">engine version</td><td>{{ run.backtest.engine_version }}</td></tr>
<tr><td class="l">code sha256</td><td><code>{{ backtest.code_sha256[:16] }}</code></td></tr>
<tr><td class="l">data fingerprint</td>
<td><code>{{ backtest.data_fingerprint[:16] }}</code></td></tr>
<tr><td class="l">request hash</td><td><code>{{ run.backtest.request_hash[:16] }}</code></td></tr>
<tr><td class="l">reused from</td><td>{{ run.backtest.reused_from_id or "no (ran)" }}</td></tr>
</table></div>
{% if grid %}
<h2>Parameter grid</h2>
<p>{{ grid.rows | length }} combinations ranked by <b>{{ grid.rank_by }}</b>
({{ "lower" if grid.lower_is_better else "higher" }} is better). The rest of this report shows
the best one, backtest {{ run.backtest.id }}.</p>
{% endif %}
{% for name, figure in figures %}{% if name == "grid" %}
<div id="chart-{{ name }}" class="chart"></div>
<script type="application/json" data-figure="chart-{{ name }}">{{ figure | safe }}</script>
{% endif %}{% endfor %}
{% if grid %}
<div class="scroll"><table id="grid-table"><tr><th>rank</th>{% for p in grid.parameters %}
<th>{{ p }}</th>{% endfor %}<th>{{ grid.rank_by }}</th><th>total return</th><th>sharpe</th>
<th>max drawdown</th><th>trades</th><th class="l">status</th></tr>
{% for r in grid.rows %}<tr><td>{{ r.rank or "" }}</td>{% for p in grid.parameters %}
<td>{{ r.params[p] }}</td>{% endfor %}<td>{{ fmt(grid.rank_by, r.score) }}</td>
<td>{{ fmt("total_return", r.metrics.total_return) }}</td>
<td>{{ fmt("sharpe_ratio", r.metrics.sharpe_ratio) }}</td>
<td>{{ fmt("max_drawdown", r.metrics.max_drawdown) }}</td>
<td>{{ r.metrics.trades_count if r.metrics.trades_count is not none else "" }}</td>
<td class="l">{{ r.status }}{% if r.error %}: {{ r.error }}{% endif %}</td></tr>{% endfor %}
</table></div>
{% endif %}
<h2>Metrics</h2>
<table id="metrics">{% for name, value in metrics %}
<tr><td class="l">{{ name }}</td><td>{{ value }}</td></tr>{% endfor %}</table>
<h2>Charts</h2>
{% for name, figure in figures %}{% if name != "grid" %}
<div id="chart-{{ name }}" class="chart"></div>
<script type="application/json" data-figure="chart-{{ name }}">{{ figure | safe }}</script>
{% endif %}{% endfor %}
<h2>Costs</h2>
<table id="costs">
<tr><td class="l">commission (with minimum top-ups)</td><td>{{ money(costs.commission) }}</td></tr>
<tr><td class="l">fills that paid the minimum commission</td>
<td>{{ costs.min_commission_fills }} of {{ costs.fills }}</td></tr>
<tr><td class="l">minimum-commission top-ups</td>
<td>{{ money(costs.min_commission_topup) }}</td></tr>
<tr><td class="l">stamp duty</td><td>{{ money(costs.stamp_duty) }}</td></tr>
<tr><td class="l">transfer fees</td><td>{{ money(costs.transfer_fee) }}</td></tr>
<tr><td class="l">total costs</td><td>{{ money(costs.total) }}
({{ "%.3f" | format(costs.share_of_capital * 100) }}% of the capital)</td></tr>
<tr><td class="l">slippage (inside the fill prices)</td><td>{{ money(costs.slippage) }}</td></tr>
</table>
<h2>Trades ({{ run.trades | length }})</h2>
{% if run.trades | length > max_rows %}<p class="muted">The first {{ max_rows }}; the exports
hold all.</p>{% endif %}
<div class="scroll"><table id="trades"><tr><th class="l">date</th><th class="l">symbol</th>
<th class="l">action</th><th>quantity</th><th>price</th><th>value</th><th>commission</th>
<th>min top-up</th><th>stamp duty</th><th>transfer fee</th><th>slippage</th><th>P&amp;L</th></tr>
{% for t in trades %}<tr><td class="l">{{ t.timestamp }}</td><td class="l">{{ t.symbol }}</td>
<td class="l {{ t.action }}">{{ t.action }}</td><td>{{ "%g" | format(t.quantity) }}</td>
<td>{{ "%.4f" | format(t.price) }}</td><td>{{ money(t.value) }}</td>
<td>{{ money(t.commission) }}</td>
<td>{{ money(t.min_commission_topup) }}</td><td>{{ money(t.stamp_duty) }}</td>
<td>{{ money(t.transfer_fee) }}</td><td>{{ money(t.slippage) }}</td>
<td>{{ money(t.profit_loss) }}</td></tr>{% endfor %}</table></div>
<h2>Refused or trimmed orders ({{ run.refusals | length }})</h2>
{% if reasons %}<p>{% for reason, n in reasons %}{{ reason }}: {{ n }}{% if not loop.last %},
{% endif %}{% endfor %}</p>{% endif %}
<div class="scroll"><table id="refusals"><tr><th class="l">date</th><th class="l">symbol</th>
<th class="l">side</th><th>requested</th><th>filled</th><th class="l">reason</th></tr>
{% for r in refusals %}<tr><td class="l">{{ r.date }}</td><td class="l">{{ r.symbol }}</td>
<td class="l">{{ r.side }}</td><td>{{ "%g" | format(r.requested) }}</td>
<td>{{ "%g" | format(r.filled) }}</td><td class="l">{{ r.reason }}</td></tr>{% endfor %}
</table></div>
<h2>Log ({{ run.logs | length }} lines)</h2>
<div class="scroll"><table id="logs"><tr><th class="l">date</th><th class="l">message</th></tr>
{% for line in run.logs %}<tr><td class="l">{{ line.date or "" }}</td>
<td class="l">{{ line.message }}</td></tr>{% endfor %}</table></div>
{% if run.backtest.notices %}<h2>Notices</h2><ul>{% for n in run.backtest.notices %}
<li>{{ n }}</li>{% endfor %}</ul>{% endif %}
<script nonce="{{ nonce }}">
document.querySelectorAll("script[data-figure]").forEach(function (source) {
  var figure = JSON.parse(source.textContent);
  Plotly.newPlot(source.dataset.figure, figure.data, figure.layout,
                 {responsive: true, displaylogo: false});
});
</script>
</body></html>
"""
