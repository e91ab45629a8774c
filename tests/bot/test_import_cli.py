"""`kizuna import orders FILE.csv [--dry-run]`: real files, the real database of the run."""

from __future__ import annotations

import asyncio
import csv
import io

import pytest
import sqlalchemy as sa

from kizuna.bot.cli import main
from kizuna.storage.db import create_engine
from kizuna.storage.imports import ORDERS_HEADER
from kizuna.storage.models import Customer, Interaction, Order, OrderItem


def query(url: str, statement) -> list:
    async def run() -> list:
        engine = create_engine(url)
        try:
            async with engine.connect() as connection:
                return (await connection.execute(statement)).all()
        finally:
            await engine.dispose()

    return asyncio.run(run())


def counts(url: str) -> tuple[int, int, int, int]:
    return tuple(query(url, sa.select(sa.func.count()).select_from(model))[0][0]
                 for model in (Order, OrderItem, Customer, Interaction))


def csv_text(rows: list[dict], header: tuple[str, ...] = ORDERS_HEADER) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def line(external_id: str, sku: str = "SH-01", **cells) -> dict:
    values = {"external_id": external_id, "ordered_at": "2026-12-01T10:30:00+09:00", "total": "5500",
              "email": f"{external_id.lower()}@example.com", "channel": "ec", "status": "completed",
              "sku": sku, "name": "シャンプー", "category": "ヘアケア", "quantity": "1", "unit_price": "3300"}
    values.update(cells)
    return values


def test_an_import_then_the_same_file_again_changes_nothing(env, tmp_path, capsys):
    header = tuple(reversed(ORDERS_HEADER))  # columns in any order
    rows = [line("A-1"), line("A-1", sku="TR-02", name="トリートメント", unit_price="2,200"),
            line("B-1", email="", phone="０９０-１２３４-５６７８", total="¥1,100", ordered_at="2026/12/02 18:05"),
            line("C-1", sku="", name="", category="", quantity="", unit_price="", email="A-1@EXAMPLE.COM")]
    path = tmp_path / "orders.csv"
    path.write_text(csv_text(rows, header), encoding="utf-8-sig")  # with a BOM
    assert main(["import", "orders", str(path)]) == 0
    out = capsys.readouterr().out
    assert "read 4 rows (UTF-8)" in out
    assert "orders: 3 created, 0 updated, 0 unchanged; customers created: 2; merge candidates: 0" in out
    assert counts(env) == (3, 3, 2, 3)
    stored = dict(query(env, sa.select(Order.external_id, Order.total)))
    assert stored == {"A-1": 5500, "B-1": 1100, "C-1": 5500}
    # An ordered_at without an offset is the shop's time (Asia/Tokyo): 18:05 JST is 09:05 UTC.
    (when,) = query(env, sa.select(Order.ordered_at).where(Order.external_id == "B-1"))[0]
    assert (when.hour, when.minute) == (9, 5)

    assert main(["import", "orders", str(path)]) == 0
    assert "orders: 0 created, 0 updated, 3 unchanged; customers created: 0" in capsys.readouterr().out
    assert counts(env) == (3, 3, 2, 3)


def test_a_shift_jis_file_without_bom(env, tmp_path, capsys):
    path = tmp_path / "pos.csv"
    rows = [line("P-1", name="髙島屋限定　ヘアオイル①", category="ヘアケア", store="渋谷店", channel="store")]
    path.write_bytes(csv_text(rows).encode("cp932"))
    assert main(["import", "orders", str(path)]) == 0
    assert "(Shift_JIS/CP932)" in capsys.readouterr().out
    assert query(env, sa.select(OrderItem.name, OrderItem.category)) == [("髙島屋限定　ヘアオイル①", "ヘアケア")]
    assert query(env, sa.select(Order.store, Order.channel)) == [("渋谷店", "store")]


def test_a_bad_row_keeps_its_whole_batch_out_and_names_its_row(env, tmp_path, capsys):
    # 1,200 orders of two lines: the first batch holds orders 1-1,000 (rows 2-2,001), the second the rest.
    rows = []
    for number in range(1, 1201):
        rows += [line(f"O-{number:04d}"), line(f"O-{number:04d}", sku="TR-02")]
    rows[999]["quantity"] = "0"  # row 1,001: the second line of order 500
    rows[1501]["total"] = "9999"  # row 1,503: disagrees with its order's first line (row 1,502)
    path = tmp_path / "big.csv"
    path.write_text(csv_text(rows), encoding="utf-8")
    assert main(["import", "orders", str(path)]) == 1
    captured = capsys.readouterr()
    assert "row 1001: quantity: Input should be greater than or equal to 1" in captured.err
    assert "row 1503: total: differs from row 1502 of the same order" in captured.err
    assert "2 bad rows: 1 batches not imported" in captured.out
    assert "orders: 200 created" in captured.out
    stored = [external_id for (external_id,) in query(env, sa.select(Order.external_id).order_by(Order.external_id))]
    assert stored == [f"O-{number:04d}" for number in range(1001, 1201)]  # nothing of the first batch

    rows[999]["quantity"], rows[1501]["total"] = "1", "5500"
    path.write_text(csv_text(rows), encoding="utf-8")
    assert main(["import", "orders", str(path)]) == 0
    assert "orders: 1000 created, 0 updated, 200 unchanged" in capsys.readouterr().out


def test_orders_typed_as_spreadsheets_type_them_are_the_same_orders(env, tmp_path, capsys):
    # Plain cells take the import's short cut; these take the model's path: both must agree, or a
    # re-sent order would count as changed.
    plain = [line("A-1", total="5500", unit_price="3300", quantity="2", email="hanako@example.com", phone="09012345678"),
             line("B-1", ordered_at="2026-12-02T18:05:00+09:00", external_customer_id="C-1", email="")]
    typed = [line("A-1", total="¥5,500", unit_price="３３００円", quantity="２", email="HANAKO@Example.com", phone="090-1234-5678"),
             line("B-1", ordered_at="2026/12/02 18:05", external_customer_id="Ｃ-1", email="")]
    path = tmp_path / "orders.csv"
    path.write_text(csv_text(plain), encoding="utf-8")
    assert main(["import", "orders", str(path)]) == 0
    assert "orders: 2 created" in capsys.readouterr().out
    path.write_text(csv_text(typed), encoding="utf-8")
    assert main(["import", "orders", str(path)]) == 0
    assert "orders: 0 created, 0 updated, 2 unchanged; customers created: 0" in capsys.readouterr().out
    assert query(env, sa.select(OrderItem.quantity, OrderItem.unit_price).order_by(OrderItem.id)) == [(2, 3300), (1, 3300)]


def test_an_order_in_two_batches_is_stored_then_updated_and_a_bad_batch_stays_out(env, tmp_path, capsys):
    # Good batches are stored together; an order that comes again in a later batch is its update.
    rows = [line(f"O-{number:04d}") for number in range(1, 2501)]
    rows[1499]["unit_price"] = "-1"  # row 1,501: order 1,500, in the second batch (orders 1,001-2,000)
    rows.append(line("O-0001", total="6600"))  # the third batch: O-0001 again, changed
    path = tmp_path / "orders.csv"
    path.write_text(csv_text(rows), encoding="utf-8")
    assert main(["import", "orders", str(path)]) == 1
    captured = capsys.readouterr()
    assert "row 1501: unit_price: Input should be greater than or equal to 0" in captured.err
    assert "orders: 1500 created, 1 updated, 0 unchanged" in captured.out
    stored = dict(query(env, sa.select(Order.external_id, Order.total)))
    assert len(stored) == 1500 and stored["O-0001"] == 6600 and "O-1001" not in stored and "O-2001" in stored
    kinds = query(env, sa.select(Interaction.kind).join(Order, Order.customer_id == Interaction.customer_id)
                  .where(Order.external_id == "O-0001").order_by(Interaction.id))
    assert [kind for (kind,) in kinds] == ["order.placed", "order.updated"]


def test_dry_run_checks_everything_and_stores_nothing(env, tmp_path, capsys):
    rows = [line("A-1"), line("B-1", email="", phone=""), line("C-1", ordered_at="yesterday"), line("A-1")]
    path = tmp_path / "orders.csv"
    path.write_text(csv_text(rows), encoding="utf-8")
    assert main(["import", "orders", str(path), "--dry-run"]) == 1
    captured = capsys.readouterr()
    assert "row 3: needs a customer reference" in captured.err
    assert "row 4: ordered_at:" in captured.err
    assert "row 5: external_id: order A-1 was in row 2: an order's lines must be consecutive rows" in captured.err
    assert "dry run: nothing was stored" in captured.out
    del rows[1:]
    path.write_text(csv_text(rows), encoding="utf-8")
    assert main(["import", "orders", str(path), "--dry-run"]) == 0
    assert counts(env) == (0, 0, 0, 0)


@pytest.mark.parametrize(("header", "message"), [
    ("external_id,ordered_at,total,email,colour", "row 1: unknown column 'colour'"),
    ("external_id,total,email", "row 1: the column 'ordered_at' is missing"),
    ("", "is empty"),
])
def test_a_header_that_cannot_be_read_imports_nothing(env, tmp_path, capsys, header, message):
    path = tmp_path / "orders.csv"
    path.write_text(header + ("\n" if header else ""), encoding="utf-8")
    assert main(["import", "orders", str(path)]) == 1
    err = capsys.readouterr().err
    assert message in err and "nothing was imported" in err


def test_a_file_in_neither_encoding(env, tmp_path, capsys):
    path = tmp_path / "orders.csv"
    path.write_bytes(b"external_id,ordered_at,total,email\n\xff\xfe\xfa,1,2,3\n")
    assert main(["import", "orders", str(path)]) == 1
    assert "is neither UTF-8 nor Shift_JIS" in capsys.readouterr().err


def test_customers_from_a_shift_jis_export(env, tmp_path, capsys):
    text = (
        "external_customer_id,name,kana,email,phone,birthday,gender,prefecture,tags\r\n"
        "C-001,山田 花子,ヤマダ ハナコ,Hanako@Example.com,090-1234-5678,1990/01/31,女性,大阪,EC会員|VIP\r\n"
        "C-002,鈴木 一郎,スズキ イチロウ,,０８０－１１１１－２２２２,,男性,東京都,\r\n")
    path = tmp_path / "customers.csv"
    path.write_bytes(text.encode("cp932"))
    assert main(["import", "customers", str(path)]) == 0
    out = capsys.readouterr().out
    assert "(Shift_JIS/CP932)" in out and "customers: 2 created, 0 updated, 0 unchanged" in out
    assert sorted(query(env, sa.select(Customer.full_name, Customer.phone, Customer.gender, Customer.prefecture))) == [
        ("山田 花子", "+819012345678", "female", "大阪府"), ("鈴木 一郎", "+818011112222", "male", "東京都")]
    assert main(["import", "customers", str(path)]) == 0
    assert "customers: 0 created, 0 updated, 2 unchanged" in capsys.readouterr().out

    path.write_bytes((text + "C-003,,,,,1990/02/30,,,\r\nC-001,,,,,,,,\r\n").encode("cp932"))
    assert main(["import", "customers", str(path), "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert "row 4: birthday:" in err and "row 5: external_customer_id: C-001 is already in row 2" in err


def test_an_import_sets_the_deciles_and_metrics_refresh_rebuilds_them(env, tmp_path, capsys):
    from kizuna.storage.models import CustomerMetrics

    rows = [line(f"D-{i}", total=str((i + 1) * 1000)) for i in range(10)]
    path = tmp_path / "orders.csv"
    path.write_text(csv_text(rows), encoding="utf-8")
    assert main(["import", "orders", str(path)]) == 0
    deciles = query(env, sa.select(CustomerMetrics.monetary, CustomerMetrics.decile).order_by(CustomerMetrics.monetary.desc()))
    assert deciles == [((10 - i) * 1000, i + 1) for i in range(10)]
    async def spoil() -> None:  # stale rows, as if changed by hand
        engine = create_engine(env)
        async with engine.begin() as connection:
            await connection.execute(sa.update(CustomerMetrics).values(decile=None, frequency=99))
        await engine.dispose()

    asyncio.run(spoil())
    assert main(["metrics", "refresh"]) == 0
    assert "done in" in capsys.readouterr().out
    assert query(env, sa.select(CustomerMetrics.frequency, CustomerMetrics.decile).order_by(CustomerMetrics.monetary.desc())) == [
        (1, i + 1) for i in range(10)]
