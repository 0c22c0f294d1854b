"""Where a paper-trading run left off, so the next step goes on from there instead of replaying.

A step sees history before ``trade_from`` (for its indicators) but is called, and trades, only
from ``trade_from`` on, starting from the stored cash, positions, queued orders and ctx.state.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from quantdesk.engine.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Resume:
    """The book and state a run starts from, and the first date it may trade on.

    ``positions`` maps symbol -> (shares, avg_cost), all sellable on ``trade_from`` (bought on
    an earlier day). ``pending`` are the orders queued after the last processed bar, as
    (symbol, signed shares): they fill on the first bar on or after ``trade_from``.
    ``initialize`` runs the strategy's ``initialize`` first: a paper run's first step, which
    starts from the initial capital but has history before ``trade_from``.
    """

    trade_from: date
    cash: float
    positions: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    pending: Sequence[tuple[str, float]] = ()
    state: Mapping[str, Any] = field(default_factory=dict)
    initialize: bool = False

    @classmethod
    def coerce(cls, value: Resume | Mapping[str, Any] | None) -> Resume | None:
        """A Resume from itself or its JSON form (see :meth:`as_dict`); None passes through."""
        if value is None or isinstance(value, Resume):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError("resume must be an object")
        keys = {"trade_from", "cash", "positions", "pending", "state", "initialize"}
        unknown = sorted(set(value) - keys)
        if unknown:
            raise ConfigError(f"unknown resume keys: {', '.join(unknown)}")
        try:
            trade_from = date.fromisoformat(str(value["trade_from"]))
            cash = float(value["cash"])
            positions = {
                str(symbol): (float(p["shares"]), float(p.get("avg_cost", 0.0)))
                for symbol, p in dict(value.get("positions") or {}).items()
            }
            pending = [(str(o["symbol"]), float(o["shares"])) for o in value.get("pending") or []]
            state = dict(value.get("state") or {})
            initialize = value.get("initialize", False)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"resume is malformed: {exc!r}") from exc
        if not isinstance(initialize, bool):
            raise ConfigError("resume.initialize must be true or false")
        return cls(trade_from, cash, positions, pending, state, initialize).checked()

    def checked(self) -> Resume:
        """Refuse a book no real run could have: negative or fractional shares, bad numbers."""
        if not math.isfinite(self.cash) or self.cash < 0:
            raise ConfigError(f"resume.cash must be a finite amount >= 0, got {self.cash!r}")
        for symbol, (shares, avg_cost) in self.positions.items():
            if not (shares > 0 and shares == math.floor(shares)) or not math.isfinite(avg_cost):
                raise ConfigError(f"resume position {symbol}: {shares!r} shares at {avg_cost!r}")
        for symbol, shares in self.pending:
            if shares == 0 or shares != math.trunc(shares) or not math.isfinite(shares):
                raise ConfigError(f"resume order {symbol}: {shares!r} is not a whole number")
        try:
            json.dumps(self.state, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"resume.state must be JSON: {exc}") from exc
        return self

    def state_copy(self) -> dict[str, Any]:
        return copy.deepcopy(dict(self.state))

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (what a config carries, e.g. into the sandbox)."""
        return {
            "trade_from": self.trade_from.isoformat(),
            "cash": self.cash,
            "positions": {
                s: {"shares": shares, "avg_cost": cost}
                for s, (shares, cost) in self.positions.items()
            },
            "pending": [{"symbol": s, "shares": q} for s, q in self.pending],
            "state": dict(self.state),
            "initialize": self.initialize,
        }
