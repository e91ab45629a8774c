"""`kizuna demo-orders FILE.csv`: a demo shop's history that a newcomer imports and then sees in
the segments and the churn model."""

from __future__ import annotations

import asyncio
import csv
from datetime import datetime, timezone

from kizuna.bot.cli import main
from kizuna.campaigns import segments
from kizuna.storage.db import create_engine, session_factory
from kizuna.storage.imports import ORDERS_HEADER


def preset_counts(url: str) -> dict[str, int]:
    async def run() -> dict[str, int]:
        engine = create_engine(url)
        try:
            async with session_factory(engine)() as session:
                now = datetime.now(timezone.utc)
                return {preset.key: (await segments.preview(session, preset.rule, now=now, sample=0)).count
                        for preset in segments.presets(now)}
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_the_demo_history_imports_and_fills_the_presets(env, tmp_path, capsys):
    path = tmp_path / "demo_orders.csv"
    assert main(["demo-orders", str(path), "--customers", "300"]) == 0
    assert "(Shift_JIS)" in capsys.readouterr().out
    with path.open(encoding="cp932", newline="") as file:
        reader = csv.DictReader(file)
        assert tuple(reader.fieldnames) == ORDERS_HEADER
        categories = {row["category"] for row in reader}
    assert {"ヘアケア", "スキンケア"} <= categories

    assert main(["import", "orders", str(path)]) == 0
    assert main(["metrics", "refresh"]) == 0
    assert "churn model fitted" in capsys.readouterr().out
    counts = preset_counts(env)
    # today's dates: recent, lapsed and slipping customers are all there
    assert counts["new"] > 0 and counts["dormant"] > 0 and counts["churn_risk"] > 0, counts


def test_a_bad_customer_count_is_refused(tmp_path, capsys):
    assert main(["demo-orders", str(tmp_path / "x.csv"), "--customers", "0"]) == 2
    assert "--customers must be from 1 to 1,000,000" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()
