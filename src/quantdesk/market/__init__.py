"""The market domain: instruments, daily bars, indicators, indices, sectors and watchlists."""
