"""Market data providers behind one small interface, picked by name (settings.MARKET_PROVIDER)."""

from __future__ import annotations

from quantdesk.errors import Invalid
from quantdesk.market.providers.base import Provider
from quantdesk.settings import MarketProvider, Settings

NAMES = tuple(p.value for p in MarketProvider)


def get_provider(name: str, settings: Settings) -> Provider:
    """The provider called `name`, configured from the settings; the libraries load lazily."""
    if name == MarketProvider.SAMPLE:
        from quantdesk.market.providers.sample import SampleProvider

        return SampleProvider()
    if name == MarketProvider.AKSHARE:
        from quantdesk.market.providers.akshare import AkshareProvider

        return AkshareProvider(
            timeout=settings.AKSHARE_TIMEOUT_SECONDS,
            interval=settings.AKSHARE_REQUEST_INTERVAL_SECONDS,
        )
    if name == MarketProvider.YFINANCE:
        from quantdesk.market.providers.yfinance import YFinanceProvider

        return YFinanceProvider(
            timeout=settings.YFINANCE_TIMEOUT_SECONDS,
            cache_dir=settings.VAR_DIR / "yfinance-cache",
        )
    raise Invalid(f"unknown provider {name!r}", details={"provider": [f"One of {list(NAMES)}."]})
