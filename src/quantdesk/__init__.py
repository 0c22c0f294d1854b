"""QuantDesk: an open quant AI stock-strategy platform backend."""

__version__ = "0.1.0"
