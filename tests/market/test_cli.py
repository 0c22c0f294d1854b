"""`quantdesk data sync`, `data indicators`, `seed-demo`, and `serve` loading the sample once."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from quantdesk.cli import main
from tests.support import BIN, free_port, post_json, running_server, server_env


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return server_env(VAR_DIR=str(tmp_path), DATABASE_URL="", MARKET_SYNC_RETRIES="0")


def test_seed_demo_then_sync_and_store_indicators(env: dict[str, str]) -> None:
    runner = CliRunner()
    seeded = runner.invoke(main, ["seed-demo"], env=env)
    assert seeded.exit_code == 0, seeded.output
    assert "sample sync #1 finished: 62 of 62 symbols, 133053 bars written" in seeded.output
    again = runner.invoke(main, ["seed-demo"], env=env)
    assert "62 of 62 symbols, 0 bars written" in again.output
    synced = runner.invoke(
        main, ["data", "sync", "--provider", "sample", "--symbols", "sh600519,aapl"], env=env
    )
    assert synced.exit_code == 0, synced.output
    assert "2 of 2 symbols" in synced.output
    assert "sample sync" in synced.output  # the progress bar's label
    full = runner.invoke(
        main,
        [
            "data",
            "sync",
            "--provider",
            "sample",
            "--symbols",
            "MSFT",
            "--start",
            "2013-01-02",
            "--end",
            "2013-01-31",
        ],
        env=env,
    )
    assert full.exit_code == 0, full.output
    stored = runner.invoke(
        main, ["data", "indicators", "--symbols", "600519.SH", "--names", "sma,rsi"], env=env
    )
    assert stored.exit_code == 0, stored.output
    assert "600519.SH:" in stored.output
    assert "indicator values stored" in stored.output


def test_a_failed_symbol_is_reported_with_a_failing_exit_code(env: dict[str, str]) -> None:
    result = CliRunner().invoke(
        main, ["data", "sync", "--provider", "yfinance", "--symbols", "600519.SH"], env=env
    )
    assert result.exit_code == 1
    assert "failed 600519.SH" in result.output
    assert "stored bars are unchanged" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give --symbols or --all"),
        (["--symbols", "AAPL", "--all"], "give --symbols or --all"),
        (["--symbols", "AAPL,???"], "not symbols: ???"),
        (["--all", "--start", "2024-02-01", "--end", "2024-01-01"], "--start is after --end"),
        (["--all", "--start", "2024-13-01"], "2024-13-01"),
        (["--all", "--provider", "bloomberg"], "bloomberg"),
    ],
)
def test_bad_sync_arguments_are_usage_errors(
    env: dict[str, str], args: list[str], message: str
) -> None:
    result = CliRunner().invoke(main, ["data", "sync", *args], env=env)
    assert result.exit_code == 2
    assert message in result.output


@pytest.mark.slow
def test_serve_loads_the_sample_data_once(tmp_path: Path) -> None:
    env = server_env(VAR_DIR=str(tmp_path))
    outputs = []
    for attempt in range(2):
        port = free_port()
        argv = [str(BIN / "quantdesk"), "serve", "--host", "127.0.0.1", "--port", str(port)]
        with running_server(argv, env, port) as process:
            base = f"http://127.0.0.1:{port}/api"
            body = json.dumps(
                {
                    "username": f"viewer{attempt}",
                    "email": f"v{attempt}@example.com",
                    "password": "long enough pw",
                }
            )
            assert post_json(f"{base}/auth/register", body)[0] == 201
            status, raw = post_json(f"{base}/auth/login", body)
            assert status == 200, raw
            token = json.loads(raw)["access_token"]
            request = urllib.request.Request(
                f"{base}/data/stocks?per_page=1", headers={"Authorization": f"Bearer {token}"}
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                assert json.loads(response.read())["total"] == 62
        assert process.stdout is not None
        outputs.append(process.stdout.read().decode())
    assert "loading the sample market data" in outputs[0]
    assert "loading the sample market data" not in outputs[1]
