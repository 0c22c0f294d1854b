"""Backtest endpoints (API.md "Backtests"): thin views over backtests.service, report and export."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask_smorest import Api

from quantdesk.auth.tokens import current_user, login_required
from quantdesk.backtests import export as exports
from quantdesk.backtests import grids, results, service
from quantdesk.backtests.report import render_report
from quantdesk.backtests.schemas import (
    BacktestCreateIn,
    BacktestExportIn,
    BacktestGridOut,
    BacktestListArgs,
    BacktestMetricsOut,
    BacktestOut,
    BacktestResultOut,
)
from quantdesk.extensions import current_extensions
from quantdesk.openapi import BEARER, ApiBlueprint
from quantdesk.schemas import page_of, paginate
from quantdesk.web import requires_json

blp = ApiBlueprint(
    "backtests",
    __name__,
    url_prefix="/api/backtests",
    description="Backtests on stored bars in the sandbox; reports, exports, parameter grids",
)


@blp.get("")
@login_required()
@blp.arguments(BacktestListArgs, location="query")
@blp.response(200, page_of(BacktestOut))
@blp.doc(security=BEARER)
def list_backtests(args: dict[str, Any]) -> Any:
    """Own backtests, newest first; a grid's combinations with `grid_id`."""
    session = current_extensions().db.read_session
    stmt = service.list_backtests(
        session,
        user=current_user(),
        strategy_id=args.get("strategy_id"),
        status=args.get("status"),
        grid_id=args.get("grid_id"),
        sort=args["sort"],
    )
    return paginate(session, stmt, page=args["page"], per_page=args["per_page"])


@blp.post("")
@login_required()
@requires_json
@blp.arguments(BacktestCreateIn)
@blp.response(202, BacktestOut)
@blp.doc(security=BEARER)
def create_backtest(body: dict[str, Any]) -> Any:
    """Queue a backtest (or a `param_grid` of them); an identical stored run is reused."""
    ext = current_extensions()
    return service.create_backtest(
        ext.db.session,
        runtime=ext,
        user=current_user(),
        benchmark=body.pop("benchmark", ...),
        **body,
    )


@blp.get("/<int:backtest_id>")
@login_required()
@blp.response(200, BacktestOut)
@blp.doc(security=BEARER)
def get_backtest(backtest_id: int) -> Any:
    """Config, status, progress (0..1), error, timings and what makes it reproducible."""
    return service.get_backtest(
        current_extensions().db.session, user=current_user(), backtest_id=backtest_id
    )


@blp.delete("/<int:backtest_id>")
@login_required()
@blp.response(204)
@blp.doc(security=BEARER)
def delete_backtest(backtest_id: int) -> None:
    """Cancel a queued or running backtest (it stays, `cancelled`); delete any other."""
    service.delete_backtest(
        current_extensions().db.session, user=current_user(), backtest_id=backtest_id
    )


@blp.get("/<int:backtest_id>/result")
@login_required()
@blp.response(200, BacktestResultOut)
@blp.doc(security=BEARER)
def get_result(backtest_id: int) -> Any:
    """Final value, metrics, daily equity curve, trades with costs, refusals, logs (409 before)."""
    return results.result_document(
        current_extensions().db.session, user=current_user(), backtest_id=backtest_id
    )


@blp.get("/<int:backtest_id>/metrics")
@login_required()
@blp.response(200, BacktestMetricsOut)
@blp.doc(security=BEARER)
def get_metrics(backtest_id: int) -> Any:
    """The metrics of STRATEGY_API.md section 4 (a grid: its best combination's)."""
    return results.metrics_document(
        current_extensions().db.session, user=current_user(), backtest_id=backtest_id
    )


@blp.get("/<int:backtest_id>/grid")
@login_required()
@blp.response(200, BacktestGridOut)
@blp.doc(security=BEARER)
def get_grid(backtest_id: int) -> Any:
    """A grid's combinations ranked by its `rank_by` metric, best first."""
    return grids.grid_table(
        current_extensions().db.session, user=current_user(), grid_id=backtest_id
    )


@blp.get("/<int:backtest_id>/report")
@login_required()
@blp.doc(
    security=BEARER,
    responses={
        "200": {
            "description": "a self-contained HTML page; its charts work offline",
            "content": {"text/html": {"schema": {"type": "string"}}},
        }
    },
)
def get_report(backtest_id: int) -> Response:
    """The HTML report: charts, metrics, trades with costs, refusals, costs, rulebook, logs."""
    session = current_extensions().db.read_session
    backtest, run, grid = results.finished_with_grid(
        session, user=current_user(), backtest_id=backtest_id
    )
    report = render_report(run, backtest=backtest, grid=grid)
    return Response(
        report.html,
        mimetype="text/html",
        headers={
            "Content-Security-Policy": report.content_security_policy,
            "Cache-Control": "private, no-store",
        },
    )


@blp.post("/<int:backtest_id>/export")
@login_required()
@requires_json
@blp.arguments(BacktestExportIn)
@blp.doc(
    security=BEARER,
    responses={
        "200": {
            "description": "the file, as an attachment",
            "content": {
                "application/zip": {"schema": {"type": "string", "format": "binary"}},
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {
                    "schema": {"type": "string", "format": "binary"}
                },
                "application/json": {"schema": {"type": "object"}},
            },
        }
    },
)
def export_backtest(body: dict[str, Any], backtest_id: int) -> Response:
    """csv (a zip of trades.csv and equity.csv), xlsx (summary, equity, trades) or json."""
    session = current_extensions().db.session
    backtest, run, grid = results.finished_with_grid(
        session, user=current_user(), backtest_id=backtest_id
    )
    made = exports.export(body["format"], backtest=BacktestOut().dump(backtest), run=run, grid=grid)
    return Response(
        made.content,
        mimetype=made.mimetype,
        headers={
            "Content-Disposition": f'attachment; filename="{made.filename}"',
            "Cache-Control": "private, no-store",
        },
    )


def register_routes(api: Api) -> None:
    api.register_blueprint(blp)
