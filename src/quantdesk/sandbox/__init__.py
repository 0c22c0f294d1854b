"""The strategy sandbox: the only way user strategy code is ever executed."""
