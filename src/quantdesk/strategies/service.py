"""Strategy management rules: ownership, the sandbox check on every save, and version history.

Plain functions over a Session; every query is filtered by the owner, so another user's
strategy is indistinguishable from a missing one (404, API.md).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import Session

from quantdesk.auth.models import User
from quantdesk.errors import Conflict, Invalid, NotFound
from quantdesk.sandbox.checker import CheckResult, check
from quantdesk.strategies import templates as builtin
from quantdesk.strategies.models import Strategy, StrategyStatus, StrategyVersion

SORTS: dict[str, ColumnElement[Any]] = {
    "created_at": Strategy.created_at.asc(),
    "-created_at": Strategy.created_at.desc(),
    "updated_at": Strategy.updated_at.asc(),
    "-updated_at": Strategy.updated_at.desc(),
    "name": Strategy.name.asc(),
    "-name": Strategy.name.desc(),
}


def validate_code(code: str) -> CheckResult:
    """The sandbox's static check, as `POST /api/strategies/validate` shows it."""
    return check(code)


def _checked(code: str) -> CheckResult:
    result = check(code)
    if not result.valid:
        raise Invalid(
            "The code breaks the strategy rules.",
            details={
                "code": [f"line {v.line}, col {v.col}: {v.message}" for v in result.violations],
                "violations": [v.to_dict() for v in result.violations],
            },
        )
    return result


def merge_params(defaults: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The code's PARAMS with overrides on top; keys PARAMS does not have are refused."""
    overrides = overrides or {}
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        known = ", ".join(sorted(defaults)) or "none"
        raise Invalid(
            "Unknown parameters.",
            details={"params": [f"unknown: {', '.join(unknown)}; the code's PARAMS has: {known}"]},
        )
    try:
        json.dumps(overrides, allow_nan=False)
    except (TypeError, ValueError):
        raise Invalid(
            "Parameters must be JSON values.", details={"params": ["Not JSON."]}
        ) from None
    return {**defaults, **overrides}


def get_strategy(session: Session, *, user: User, strategy_id: int) -> Strategy:
    strategy = session.get(Strategy, strategy_id)
    if strategy is None or strategy.user_id != user.id:
        raise NotFound("No such strategy.")
    return strategy


def list_strategies(
    session: Session,
    *,
    user: User,
    query: str | None = None,
    category: str | None = None,
    status: str | None = None,
    sort: str = "-updated_at",
) -> Select[Strategy]:
    stmt = select(Strategy).where(Strategy.user_id == user.id)
    if query:
        pattern = f"%{query.lower()}%"
        stmt = stmt.where(
            func.lower(Strategy.name).like(pattern)
            | func.lower(func.coalesce(Strategy.description, "")).like(pattern)
        )
    if category:
        stmt = stmt.where(Strategy.category == category)
    if status:
        stmt = stmt.where(Strategy.status == status)
    return stmt.order_by(SORTS[sort], Strategy.id.desc())


def create_strategy(
    session: Session,
    *,
    user: User,
    name: str,
    code: str | None = None,
    template: str | None = None,
    description: str | None = None,
    category: str | None = None,
    risk_level: str | None = None,
    params: dict[str, Any] | None = None,
    changelog: str | None = None,
) -> Strategy:
    if template is not None:
        chosen = builtin.template(template)
        if chosen is None:
            slugs = ", ".join(t.slug for t in builtin.templates())
            raise Invalid("Unknown template.", details={"template": [f"one of: {slugs}"]})
        code = code or chosen.code
        description = description or chosen.description
        category = category or chosen.category
        risk_level = risk_level or chosen.risk_level
        changelog = changelog or f"Created from the template {chosen.slug}"
    if code is None:
        raise Invalid("Give the strategy's code.", details={"code": ["Missing data."]})
    checked = _checked(code)
    merged = merge_params(checked.params, params)
    strategy = Strategy(
        user_id=user.id,
        name=name,
        description=description,
        code=code,
        language="python",
        api=checked.api or "event",  # a valid check always names the API
        status=StrategyStatus.STOPPED,
        category=category,
        risk_level=risk_level,
        params=merged,
        version=1,
    )
    strategy.versions.append(
        StrategyVersion(version=1, code=code, params=merged, changelog=changelog or "Created")
    )
    session.add(strategy)
    session.commit()
    return strategy


def update_strategy(
    session: Session,
    *,
    user: User,
    strategy_id: int,
    changes: dict[str, Any],
    changelog: str | None = None,
) -> Strategy:
    """Change fields; a change of code or params stores the next version (1, 2, 3 ...)."""
    strategy = get_strategy(session, user=user, strategy_id=strategy_id)
    new_code = changes.get("code", strategy.code)
    code_changed = new_code != strategy.code
    checked = _checked(new_code) if code_changed else None
    old_defaults = check(strategy.code).params
    defaults = checked.params if checked else old_defaults
    if "params" in changes or code_changed:
        base = changes.get("params")
        if base is None:
            # New code brings new PARAMS; the user's own overrides (values that differed from
            # the old code's PARAMS) carry over where the new code still has the key.
            base = {
                k: v
                for k, v in strategy.params.items()
                if k in defaults and (k not in old_defaults or old_defaults[k] != v)
            }
        params = merge_params(defaults, base)
    else:
        params = strategy.params
    for field in ("name", "description", "category", "risk_level"):
        if field in changes:
            setattr(strategy, field, changes[field])
    if code_changed or params != strategy.params:
        if checked is not None and checked.api is not None:
            strategy.api = checked.api
        strategy.code, strategy.params = new_code, params
        strategy.version += 1
        strategy.versions.append(
            StrategyVersion(
                version=strategy.version,
                code=new_code,
                params=params,
                changelog=changelog or ("Code changed" if code_changed else "Parameters changed"),
            )
        )
    session.commit()
    return strategy


def delete_strategy(session: Session, *, user: User, strategy_id: int) -> None:
    strategy = get_strategy(session, user=user, strategy_id=strategy_id)
    if strategy.status == StrategyStatus.RUNNING:
        raise Conflict("The strategy is running as paper trading: stop it first.")
    session.delete(strategy)
    session.commit()


def copy_strategy(
    session: Session, *, user: User, strategy_id: int, name: str | None = None
) -> Strategy:
    """An independent strategy with the same code and params, and its own history from 1."""
    source = get_strategy(session, user=user, strategy_id=strategy_id)
    copy = Strategy(
        user_id=user.id,
        name=(name or f"Copy of {source.name}")[:100],
        description=source.description,
        code=source.code,
        language=source.language,
        api=source.api,
        status=StrategyStatus.STOPPED,
        category=source.category,
        risk_level=source.risk_level,
        params=dict(source.params),
        version=1,
    )
    copy.versions.append(
        StrategyVersion(
            version=1,
            code=source.code,
            params=dict(source.params),
            changelog=f"Copied from strategy {source.id} version {source.version}",
        )
    )
    session.add(copy)
    session.commit()
    return copy


def list_versions(session: Session, *, user: User, strategy_id: int) -> Select[StrategyVersion]:
    get_strategy(session, user=user, strategy_id=strategy_id)
    return (
        select(StrategyVersion)
        .where(StrategyVersion.strategy_id == strategy_id)
        .order_by(StrategyVersion.version.desc())
    )


def get_version(session: Session, *, user: User, strategy_id: int, version: int) -> StrategyVersion:
    get_strategy(session, user=user, strategy_id=strategy_id)
    found = session.scalars(
        select(StrategyVersion).where(
            StrategyVersion.strategy_id == strategy_id, StrategyVersion.version == version
        )
    ).first()
    if found is None:
        raise NotFound("No such version.")
    return found
