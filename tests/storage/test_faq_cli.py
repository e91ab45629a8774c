"""`kizuna faq import FILE.csv [--replace]` and `kizuna faq export [-o FILE]`."""

from __future__ import annotations

import csv
import io

from kizuna.bot.cli import main


def test_import_export_and_errors(env, tmp_path, capsys):
    good = tmp_path / "faq.csv"
    good.write_text("id,question,answer,alternates\nfee,送料は?,550円です。,送料いくら\nhours,営業時間は?,10時からです。,\n",
                    encoding="utf-8-sig")
    assert main(["faq", "import", str(good)]) == 0
    assert "2 created, 0 updated, 0 unchanged" in capsys.readouterr().out

    bad = tmp_path / "bad.csv"
    bad.write_text("id,question,answer,alternates\nfee,送料は?,,\nfee,q,a,\n", encoding="utf-8")
    assert main(["faq", "import", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "nothing was imported" in err
    assert "row 2: answer is missing" in err and "row 3: id 'fee' is already used in row 2" in err

    one = tmp_path / "one.csv"
    one.write_text("id,question,answer,alternates\nfee,送料は?,600円です。,\n", encoding="utf-8")
    assert main(["faq", "import", str(one)]) == 0
    out = capsys.readouterr().out
    assert "0 created, 1 updated" in out and "1 not in the file were kept as they are (use --replace to disable them): hours" in out
    assert main(["faq", "import", str(one), "--replace"]) == 0
    assert "1 not in the file were disabled: hours" in capsys.readouterr().out

    assert main(["faq", "export"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["id"], r["answer"], r["enabled"]) for r in rows] == [("fee", "600円です。", "true"), ("hours", "10時からです。", "false")]
    target = tmp_path / "out.csv"
    assert main(["faq", "export", "-o", str(target)]) == 0
    assert target.read_bytes().startswith(b"id,question,answer,alternates,category,enabled\r\nfee,")
    assert main(["faq", "import", str(tmp_path / "missing.csv")]) == 1


def test_demo_loads_the_example_faq_only_into_an_empty_knowledge_base(env, tmp_path, capsys):
    """`make run` runs `kizuna demo`: a first try in the emulator has questions to ask."""
    assert main(["demo"]) == 0
    assert "imported the example FAQ (34 entries" in capsys.readouterr().out
    assert main(["faq", "export"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 34 and rows[0]["id"] and all(row["enabled"] == "true" for row in rows)

    own = tmp_path / "own.csv"
    own.write_text("id,question,answer,alternates\nfee,送料は?,600円です。,\n", encoding="utf-8")
    assert main(["faq", "import", str(own), "--replace"]) == 0
    capsys.readouterr()
    assert main(["demo"]) == 0
    assert "the FAQ already has entries; left as it is" in capsys.readouterr().out
    assert main(["faq", "export"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [row["id"] for row in rows if row["enabled"] == "true"] == ["fee"]
