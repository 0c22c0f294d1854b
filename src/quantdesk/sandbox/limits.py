"""Every resource a strategy run may use is bounded here, so a hostile run cannot starve others."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    """Limits of one sandboxed run; each one is reported to the user when it stops a run.

    Each field later maps to a setting (quantdesk.settings); the defaults are sized for a
    10-year daily backtest of a few hundred symbols, measured on the pre-warmed child.
    """

    # RLIMIT_CPU (soft; the hard limit is one second more and kills). A 2500-bar event
    # backtest takes about 0.1 s of CPU (benchmarks/sandbox.py); 60 s bounds a runaway loop
    # while leaving room for heavy vectorized work on many symbols.
    cpu_seconds: int = 60
    # Wall clock, enforced by the supervisor: sleeping or blocked code uses no CPU, so only
    # this stops it (REFERENCE.md, "Process isolation on Linux"). Twice the CPU budget.
    wall_seconds: float = 120.0
    # RLIMIT_AS, in MiB. The pre-warmed child (numpy, pandas, engine) maps about 160 MiB of
    # address space before user code runs; a 2500 x 500 panel is 10 MB per field and the
    # engine holds about 20 such arrays plus pandas copies for the vectorized API.
    memory_mb: int = 2048
    # RLIMIT_FSIZE and the size of the scratch tmpfs, in MiB: strategies need no files;
    # a little scratch space keeps libraries that write temporary files working.
    file_size_mb: int = 10
    # RLIMIT_NOFILE: stdio, the result pipe and a few files for lazily imported modules.
    open_files: int = 64
    # Extra processes or threads the child may start (RLIMIT_NPROC = 1 + this, counted for
    # the unprivileged user the child runs as). 0: no fork, no threads, no fork bomb.
    processes: int = 0
    # ctx.log caps (lines and UTF-8 bytes); one marker line says the log was cut.
    max_log_lines: int = 1000
    max_log_bytes: int = 100_000
    # ctx.record caps: named series, and values over all series (series x bars), so a
    # report's chart and the stored result stay small.
    max_record_series: int = 20
    max_record_points: int = 200_000
    # The result JSON, in bytes: a 2500-bar single-symbol result is about 0.4 MB; the cap
    # keeps a hostile child from filling the parent's memory or the database.
    max_result_bytes: int = 20_000_000

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"SandboxLimits.{f.name} must be a number, got {value!r}")
            if f.name == "processes":
                if value < 0 or int(value) != value:
                    raise ValueError(f"SandboxLimits.processes must be >= 0, got {value!r}")
            elif not value > 0:
                raise ValueError(f"SandboxLimits.{f.name} must be > 0, got {value!r}")

    def as_dict(self) -> dict[str, float]:
        """The limits as plain numbers (sent to the child, written into outcomes)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, values: dict[str, float]) -> SandboxLimits:
        """Rebuild from :meth:`as_dict` (unknown keys are an error)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown sandbox limits: {', '.join(unknown)}")
        return cls(**values)  # type: ignore[arg-type]
