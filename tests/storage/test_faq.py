"""FAQ storage: the CSV reader's rules, the revision counters, import semantics."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from kizuna.storage import faq
from kizuna.storage.db import create_engine, session_factory, transaction
from kizuna.storage.models import FaqEntry, InquirySettings

HEADER = "id,question,answer,alternates\n"


def parse(text: str) -> faq.ParsedCsv:
    return faq.parse_csv(text.encode())


def errors_of(data: bytes) -> list[str]:
    with pytest.raises(faq.CsvError) as caught:
        faq.parse_csv(data)
    return [str(error) for error in caught.value.errors]


def test_a_good_file():
    parsed = parse(HEADER + "a, 質問 ,答え, 別1 | | 別2 |別1\n\n,,,\nb,q,\"a, with comma\",\n")
    assert [(e.id, e.question, e.answer, e.alternates) for e in parsed.entries] == [
        ("a", "質問", "答え", ("別1", "別2")), ("b", "q", "a, with comma", ())]
    assert not parsed.has_category and not parsed.has_enabled and parsed.warnings == []


def test_every_bad_row_is_named_with_spreadsheet_row_numbers():
    data = (HEADER + "a,q,a,\n"  # row 2
            "\"b\",\"multi\nline\",a,\n"  # row 3 (lines 3-4)
            ",q,a,\n"  # row 4, line 5
            "a,q,a,\n").encode()  # row 5, line 6
    assert errors_of(data) == ["row 4 (line 5): id is missing", "row 5 (line 6): id 'a' is already used in row 2"]


def test_thousands_separators_are_repaired_and_other_extra_commas_are_not():
    parsed = parse(HEADER + "fee,送料は?,税込5,500円以上で無料、1,000,000円まで,\n")
    assert parsed.entries[0].answer == "税込5,500円以上で無料、1,000,000円まで"
    assert parsed.warnings == ["row 2: has an unquoted comma in a number (like 5,500); it was read as part of the number"]
    assert errors_of((HEADER + "fee,送料は?,無料です,はい,いいえ\n").encode()) == [
        "row 2: has 5 columns; the header has 4 (put a value that contains a comma in double quotes)"]


@pytest.mark.parametrize("data, message", [
    (b"", "the file is empty; the first row must be the header id,question,answer,alternates"),
    (HEADER.encode(), "the file has a header but no FAQ entries"),
    (b"id,question,answer\na,b,c\n", "row 1: bad header (missing alternates): it must name the columns "
                                      "id,question,answer,alternates (optionally also category,enabled)"),
    (b"id,question,answer,alternates,id\n", "row 1: bad header (repeated id): it must name the columns "
                                             "id,question,answer,alternates (optionally also category,enabled)"),
    ((HEADER + "a,q,a\x00,\n").encode(), "line 2: the file contains a NUL character (is it a spreadsheet file rather than CSV?)"),
    ((HEADER + "a,q,\xe7\x94,\n").encode("latin-1"), None),
])
def test_file_level_errors(data, message):
    errors = errors_of(data)
    assert len(errors) == 1
    if message is not None:
        assert errors[0] == message


def test_a_bom_and_the_header_in_any_order():
    parsed = faq.parse_csv("\ufeffAnswer, ID ,alternates,question,Category\n答え,x,,質問,送料\n".encode())
    assert (parsed.entries[0].id, parsed.entries[0].category, parsed.has_category) == ("x", "送料", True)


def test_limits():
    long = "あ" * 5001
    errors = errors_of((HEADER + f"a,q,{long},\nb,q,a,{'x' * 201}\nc,q,a,{'|'.join(str(i) for i in range(51))}\n").encode())
    assert errors == ["row 2: answer is 5001 characters long; at most 5000",
                      "row 3: alternates a phrasing is 201 characters long; at most 200",
                      "row 4: alternates has 51 phrasings; at most 50"]


def test_too_many_errors_are_cut():
    data = (HEADER + "".join(f",q{i},a,\n" for i in range(120))).encode()
    with pytest.raises(faq.CsvError) as caught:
        faq.parse_csv(data)
    assert len(caught.value.errors) == faq.MAX_REPORTED_ERRORS and caught.value.total == 120
    assert str(caught.value).endswith("(and 70 more)")


# -- with a database ----------------------------------------------------------------------------


@pytest.fixture
async def sessions(database_url):
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


async def test_revisions_move_with_every_change_and_only_then(sessions):
    async with sessions() as session:
        start = await faq.read_settings(session)
    async with transaction(sessions) as session:
        await faq.create_entry(session, faq.FaqFields("a", " 質問 ", "答え", ("x", "x", "")))
    async with transaction(sessions) as session:
        entry = await faq.get_entry(session, "a")
        assert (entry.question, entry.alternates) == ("質問", ["x"])
        assert await faq.update_entry(session, "a", {"question": "質問"}) is not None  # no change
    async with sessions() as session:
        assert (await faq.read_settings(session)).faq_revision == start.faq_revision + 1
    async with transaction(sessions) as session:
        await faq.update_entry(session, "a", {"enabled": False})
        await faq.set_business_hours(session, {"mon": [["10:00", "18:00"]]}, ["2026-12-31"])
    async with sessions() as session:
        settings = await faq.read_settings(session)
    assert (settings.faq_revision, settings.config_revision) == (start.faq_revision + 2, start.config_revision + 1)
    assert settings.weekly_hours == {"mon": [["10:00", "18:00"]]} and settings.holidays == ("2026-12-31",)

    with pytest.raises(faq.FaqInvalid):
        async with transaction(sessions) as session:
            await faq.update_entry(session, "a", {"answer": ""})
    with pytest.raises(faq.FaqExists):
        async with transaction(sessions) as session:
            await faq.create_entry(session, faq.FaqFields("a", "q", "a"))
    async with sessions() as session:
        assert (await faq.read_settings(session)).faq_revision == start.faq_revision + 2  # rolled back


async def test_a_missing_settings_row_is_recreated(sessions):
    async with transaction(sessions) as session:
        await session.execute(sa.delete(InquirySettings))
    async with sessions() as session:
        assert await faq.read_settings(session) == faq.Settings()
    async with transaction(sessions) as session:
        await faq.create_entry(session, faq.FaqFields("a", "q", "a"))
    async with sessions() as session:
        assert (await faq.read_settings(session)).faq_revision == 1


async def test_import_keeps_or_disables_the_rest(sessions):
    async with transaction(sessions) as session:
        report = await faq.import_entries(session, parse(HEADER + "a,q1,a1,\nb,q2,a2,\n"))
    assert (report.created, report.kept) == (["a", "b"], [])
    async with transaction(sessions) as session:
        await faq.update_entry(session, "a", {"enabled": False, "category": "keep-me"})
        report = await faq.import_entries(session, parse(HEADER + "a,q1,a1,\n"))
    assert (report.updated, report.kept) == (["a"], ["b"])  # re-enabled by the import
    async with transaction(sessions) as session:
        report = await faq.import_entries(session, parse(HEADER + "a,q1,a1,\n"), replace=True)
    assert (report.unchanged, report.disabled) == (["a"], ["b"])
    async with sessions() as session:
        rows = {e.id: (e.enabled, e.category) for e in (await session.execute(sa.select(FaqEntry))).scalars()}
    assert rows == {"a": (True, "keep-me"), "b": (False, None)}  # no category column: category kept


async def test_export_is_the_import_format(sessions):
    text = HEADER + 'a,"q, with comma","line1\nline2 ""quoted""",x|y\n'
    async with transaction(sessions) as session:
        await faq.import_entries(session, parse(text))
        exported = faq.to_csv(await faq.list_entries(session))
    assert exported.splitlines()[0] == "id,question,answer,alternates,category,enabled"
    again = faq.parse_csv(exported.encode())
    assert [(e.id, e.question, e.answer, e.alternates, e.enabled) for e in again.entries] == [
        ("a", "q, with comma", 'line1\nline2 "quoted"', ("x", "y"), True)]
