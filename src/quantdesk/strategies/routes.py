"""Strategy endpoints (API.md "Strategies"): thin views over strategies.service."""

from __future__ import annotations

from typing import Any

from flask_smorest import Api

from quantdesk.auth.tokens import current_user, login_required
from quantdesk.extensions import current_extensions
from quantdesk.openapi import BEARER, ApiBlueprint
from quantdesk.schemas import PageArgs, page_of, paginate
from quantdesk.strategies import paper, service
from quantdesk.strategies import templates as builtin
from quantdesk.strategies.schemas import (
    ExecutionLogListArgs,
    ExecutionLogOut,
    ExecutionOut,
    StrategyCopyIn,
    StrategyCreateIn,
    StrategyListArgs,
    StrategyOut,
    StrategyRunIn,
    StrategySignalListArgs,
    StrategySignalOut,
    StrategySummaryOut,
    StrategyUpdateIn,
    TemplateListOut,
    ValidateIn,
    ValidateOut,
    VersionOut,
    VersionSummaryOut,
)
from quantdesk.web import requires_json

blp = ApiBlueprint(
    "strategies", __name__, url_prefix="/api/strategies", description="Strategies and paper trading"
)


@blp.get("")
@login_required()
@blp.arguments(StrategyListArgs, location="query")
@blp.response(200, page_of(StrategySummaryOut))
@blp.doc(security=BEARER)
def list_strategies(args: dict[str, Any]) -> Any:
    """Own strategies, newest change first; `q` searches name and description."""
    session = current_extensions().db.read_session
    stmt = service.list_strategies(
        session,
        user=current_user(),
        query=args.get("q"),
        category=args.get("category"),
        status=args.get("status"),
        sort=args["sort"],
    )
    return paginate(session, stmt, page=args["page"], per_page=args["per_page"])


@blp.post("")
@login_required()
@requires_json
@blp.arguments(StrategyCreateIn)
@blp.response(201, StrategyOut)
@blp.doc(security=BEARER)
def create_strategy(body: dict[str, Any]) -> Any:
    """Save a new strategy (version 1); code failing the sandbox check is a 422."""
    body.pop("language", None)
    return service.create_strategy(current_extensions().db.session, user=current_user(), **body)


@blp.post("/validate")
@login_required()
@requires_json
@blp.arguments(ValidateIn)
@blp.response(200, ValidateOut)
@blp.doc(security=BEARER)
def validate(body: dict[str, Any]) -> Any:
    """Check code without saving it: validity, API, violations with line and column."""
    return service.validate_code(body["code"]).to_dict()


@blp.get("/templates")
@login_required()
@blp.response(200, TemplateListOut)
@blp.doc(security=BEARER)
def list_templates() -> Any:
    """The built-in example strategies to start from."""
    return {"items": builtin.templates()}


@blp.get("/<int:strategy_id>")
@login_required()
@blp.response(200, StrategyOut)
@blp.doc(security=BEARER)
def get_strategy(strategy_id: int) -> Any:
    """One own strategy with its current code."""
    return service.get_strategy(
        current_extensions().db.session, user=current_user(), strategy_id=strategy_id
    )


@blp.put("/<int:strategy_id>")
@login_required()
@requires_json
@blp.arguments(StrategyUpdateIn)
@blp.response(200, StrategyOut)
@blp.doc(security=BEARER)
def update_strategy(body: dict[str, Any], strategy_id: int) -> Any:
    """Change fields; changing code or params stores a new version with `changelog`."""
    changelog = body.pop("changelog", None)
    return service.update_strategy(
        current_extensions().db.session,
        user=current_user(),
        strategy_id=strategy_id,
        changes=body,
        changelog=changelog,
    )


@blp.delete("/<int:strategy_id>")
@login_required()
@blp.response(204)
@blp.doc(security=BEARER)
def delete_strategy(strategy_id: int) -> None:
    """Delete a strategy with its versions and runs (stop paper trading first)."""
    service.delete_strategy(
        current_extensions().db.session, user=current_user(), strategy_id=strategy_id
    )


@blp.post("/<int:strategy_id>/copy")
@login_required()
@requires_json
@blp.arguments(StrategyCopyIn)
@blp.response(201, StrategyOut)
@blp.doc(security=BEARER)
def copy_strategy(body: dict[str, Any], strategy_id: int) -> Any:
    """An independent copy with its own version history (the body is optional)."""
    return service.copy_strategy(
        current_extensions().db.session,
        user=current_user(),
        strategy_id=strategy_id,
        name=body.get("name"),
    )


@blp.get("/<int:strategy_id>/versions")
@login_required()
@blp.arguments(PageArgs, location="query")
@blp.response(200, page_of(VersionSummaryOut))
@blp.doc(security=BEARER)
def list_versions(args: dict[str, Any], strategy_id: int) -> Any:
    """The strategy's versions, newest first."""
    session = current_extensions().db.session
    stmt = service.list_versions(session, user=current_user(), strategy_id=strategy_id)
    return paginate(session, stmt, page=args["page"], per_page=args["per_page"])


@blp.get("/<int:strategy_id>/versions/<int:version>")
@login_required()
@blp.response(200, VersionOut)
@blp.doc(security=BEARER)
def get_version(strategy_id: int, version: int) -> Any:
    """One version's code, params and changelog."""
    return service.get_version(
        current_extensions().db.session,
        user=current_user(),
        strategy_id=strategy_id,
        version=version,
    )


# ---------------------------------------------------------------- paper trading


@blp.post("/<int:strategy_id>/run")
@login_required()
@requires_json
@blp.arguments(StrategyRunIn)
@blp.response(202, ExecutionOut)
@blp.doc(security=BEARER)
def run(body: dict[str, Any], strategy_id: int) -> Any:
    """Start paper trading and step it once now; then on every tick of its schedule."""
    ext = current_extensions()
    return paper.start_run(
        ext.db.session,
        user=current_user(),
        strategy_id=strategy_id,
        symbols=body["symbols"],
        initial_capital=body["initial_capital"],
        schedule=body.get("schedule"),
        settings=ext.settings,
        runtime=ext,
    )


@blp.post("/<int:strategy_id>/stop")
@login_required()
@blp.response(200, ExecutionOut)
@blp.doc(security=BEARER)
def stop(strategy_id: int) -> Any:
    """Stop paper trading (409 when it is not running)."""
    return paper.stop_run(
        current_extensions().db.session, user=current_user(), strategy_id=strategy_id
    )


@blp.get("/<int:strategy_id>/execution")
@login_required()
@blp.response(200, ExecutionOut)
@blp.doc(security=BEARER)
def get_execution(strategy_id: int) -> Any:
    """The latest run: status, paper portfolio, pending orders, P&L, next scheduled step."""
    return paper.get_execution(
        current_extensions().db.session, user=current_user(), strategy_id=strategy_id
    )


@blp.get("/<int:strategy_id>/executions")
@login_required()
@blp.arguments(PageArgs, location="query")
@blp.response(200, page_of(ExecutionOut))
@blp.doc(security=BEARER)
def list_executions(args: dict[str, Any], strategy_id: int) -> Any:
    """Every paper-trading run of the strategy, newest first."""
    session = current_extensions().db.session
    stmt = paper.list_executions(session, user=current_user(), strategy_id=strategy_id)
    return paginate(session, stmt, page=args["page"], per_page=args["per_page"])


@blp.get("/<int:strategy_id>/executions/<int:execution_id>")
@login_required()
@blp.response(200, ExecutionOut)
@blp.doc(security=BEARER)
def get_execution_by_id(strategy_id: int, execution_id: int) -> Any:
    """One paper-trading run."""
    return paper.get_execution(
        current_extensions().db.session,
        user=current_user(),
        strategy_id=strategy_id,
        execution_id=execution_id,
    )


@blp.get("/<int:strategy_id>/logs")
@login_required()
@blp.arguments(ExecutionLogListArgs, location="query")
@blp.response(200, page_of(ExecutionLogOut))
@blp.doc(security=BEARER)
def list_logs(args: dict[str, Any], strategy_id: int) -> Any:
    """Log lines of the paper-trading runs (time, level, message), newest first."""
    session = current_extensions().db.session
    stmt = paper.list_logs(
        session,
        user=current_user(),
        strategy_id=strategy_id,
        execution_id=args.get("execution_id"),
        level=args.get("level"),
        sort=args["sort"],
    )
    return paginate(session, stmt, page=args["page"], per_page=args["per_page"])


@blp.get("/<int:strategy_id>/signals")
@login_required()
@blp.arguments(StrategySignalListArgs, location="query")
@blp.response(200, page_of(StrategySignalOut))
@blp.doc(security=BEARER)
def list_signals(args: dict[str, Any], strategy_id: int) -> Any:
    """The orders paper trading would place at the next open, newest first."""
    session = current_extensions().db.session
    stmt = paper.list_signals(
        session,
        user=current_user(),
        strategy_id=strategy_id,
        execution_id=args.get("execution_id"),
    )
    return paginate(session, stmt, page=args["page"], per_page=args["per_page"])


def register_routes(api: Api) -> None:
    api.register_blueprint(blp)
