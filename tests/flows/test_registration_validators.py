from datetime import date

import pytest

from kizuna.flows.registration.validators import (
    InvalidInput,
    fold_digits,
    is_skip,
    parse_birthday,
    parse_birthday_param,
    parse_email,
    parse_gender,
    parse_name,
    parse_name_kana,
    parse_phone,
    parse_prefecture,
)
from kizuna.storage import prefectures

TODAY = date(2025, 6, 1)


def message_for(parse, *args) -> str:
    with pytest.raises(InvalidInput) as info:
        parse(*args)
    message = info.value.message_ja
    assert message and str(info.value) == message
    return message


def test_invalid_input_carries_the_japanese_message():
    error = InvalidInput("生年月日は 1990/01/31 のように入力してください")
    assert error.message_ja == "生年月日は 1990/01/31 のように入力してください"
    assert isinstance(error, ValueError)


def test_fold_digits_only_touches_full_width_digits():
    assert fold_digits("０９０－１２３４ abc ５") == "090－1234 abc 5"


# --- name -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("山田花子", "山田花子"),
        ("山田　花子", "山田 花子"),  # full-width space
        ("  山田 \t  花子  ", "山田 花子"),
        ("ﾔﾏﾀﾞ ﾀﾛｳ", "ヤマダ タロウ"),  # half-width katakana
        ("ｊｏｈｎ　ｓｍｉｔｈ", "john smith"),  # full-width latin
        ("John Smith", "John Smith"),
        ("O'Brien", "O'Brien"),
        ("Jean-Luc Picard", "Jean-Luc Picard"),
        ("ジョン・スミス", "ジョン・スミス"),
        ("佐々木 一郎", "佐々木 一郎"),
        ("Nguyễn Văn An", "Nguyễn Văn An"),
        ("김민수", "김민수"),
        ("あ", "あ"),
        ("山" * 40, "山" * 40),
    ],
)
def test_names_are_normalised(typed, expected):
    assert parse_name(typed) == expected


@pytest.mark.parametrize(
    ("typed", "hint"),
    [
        ("", "お名前"),
        ("　 ", "お名前"),
        ("09012345678", "数字"),
        ("１２３", "数字"),
        ("山田2", "数字"),
        ("https://example.com/x", "URL"),
        ("www.example.jp", "URL"),
        ("shop.example.com", "URL"),
        ("山田花子🌸", "絵文字"),
        ("花子😊", "絵文字"),
        ("★花子★", "記号"),
        ("山田(はなこ)", "記号"),
        ("@hanako", "記号"),
        ("・・・", "お名前"),
        ("山" * 41, "40文字"),
    ],
)
def test_non_names_are_refused_with_a_reason(typed, hint):
    assert hint in message_for(parse_name, typed)


# --- furigana -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("やまだ はなこ", "ヤマダ ハナコ"),
        ("ヤマダ　ハナコ", "ヤマダ ハナコ"),
        ("ﾔﾏﾀﾞ ﾊﾅｺ", "ヤマダ ハナコ"),  # half-width with dakuten
        ("ﾊﾟｰｸ", "パーク"),
        ("さとう たろー", "サトウ タロー"),
        ("ｻﾄｳ ﾀﾛ-", "サトウ タロー"),  # ASCII hyphen as the long vowel
        ("ジョン・スミス", "ジョン・スミス"),
        ("ゔぃくとりあ", "ヴィクトリア"),
    ],
)
def test_furigana_becomes_full_width_katakana(typed, expected):
    assert parse_name_kana(typed) == expected


@pytest.mark.parametrize("typed", ["山田 花子", "yamada hanako", "やまだ花子", "ヤマダ1", "ーー", "", "ハナコ🌸"])
def test_furigana_refuses_kanji_latin_and_junk(typed):
    assert "ヤマダ ハナコ" in message_for(parse_name_kana, typed)


# --- birthday -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "typed",
    [
        "1990/1/31",
        "1990/01/31",
        "1990-01-31",
        "1990.1.31",
        "1990年1月31日",
        "1990年01月31日",
        "1990年1月31日生まれ",
        "西暦1990年1月31日",
        "19900131",
        "１９９０／０１／３１",
        "１９９０年１月３１日",
        "1990ー01ー31",  # kana-mode hyphen
        " 1990 / 1 / 31 ",
        "平成2年1月31日",
        "平成２年１月３１日",
        "㍻2年1月31日",
        "H2.1.31",
        "h2/1/31",
        "Ｈ２．１．３１",
    ],
)
def test_birthday_formats(typed):
    assert parse_birthday(typed, TODAY) == date(1990, 1, 31)


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("昭和63年5月5日", date(1988, 5, 5)),
        ("S63.5.5", date(1988, 5, 5)),
        ("昭和64年1月7日", date(1989, 1, 7)),  # last day of Shōwa
        ("平成元年1月8日", date(1989, 1, 8)),  # first day of Heisei
        ("平成1年1月8日", date(1989, 1, 8)),
        ("平成31年4月30日", date(2019, 4, 30)),
        ("令和元年5月1日", date(2019, 5, 1)),
        ("R2.2.29", date(2020, 2, 29)),
        ("大正15年12月24日", date(1926, 12, 24)),
        ("昭和元年12月25日", date(1926, 12, 25)),
        ("2000/2/29", date(2000, 2, 29)),
        ("2025/6/1", TODAY),  # born today
        ("1904/6/2", date(1904, 6, 2)),  # 120, turning 121 tomorrow
    ],
)
def test_birthday_eras_and_edges(typed, expected):
    assert parse_birthday(typed, TODAY) == expected


@pytest.mark.parametrize(
    ("typed", "hint"),
    [
        ("1990/2/30", "ありません"),
        ("1990/13/1", "ありません"),
        ("19900230", "ありません"),
        ("2001/2/29", "ありません"),
        ("平成31年5月1日", "ありません"),  # that day is 令和元年
        ("昭和64年1月8日", "ありません"),
        ("令和元年4月30日", "ありません"),
        ("平成0年1月1日", "ありません"),
        ("2025/6/2", "未来"),
        ("令和9年1月1日", "未来"),
        ("1904/6/1", "ご確認"),  # 121 today
        ("明治30年1月1日", "ご確認"),
        ("90/1/31", "1990/01/31"),  # two-digit year is ambiguous
        ("1990", "1990/01/31"),
        ("誕生日です", "1990/01/31"),
        ("", "1990/01/31"),
    ],
)
def test_birthday_refusals(typed, hint):
    message = message_for(parse_birthday, typed, TODAY)
    assert hint in message
    assert "1990/01/31" in message  # every re-prompt shows an example


def test_birthday_param_from_the_datetime_picker():
    assert parse_birthday_param("1990-01-31") == date(1990, 1, 31)
    assert parse_birthday_param("1990-01-31", today=TODAY) == date(1990, 1, 31)
    for bad in ("1990-02-30", "1990/01/31", "19900131", "", "1990-1-31"):
        message_for(parse_birthday_param, bad)
    assert "未来" in message_for(parse_birthday_param, "2030-01-01", TODAY)


# --- gender -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("女性", "female"),
        ("女", "female"),
        ("じょせい", "female"),
        ("ジョセイ", "female"),
        ("女性です", "female"),
        ("👩 女性", "female"),
        ("Female", "female"),
        ("男性", "male"),
        ("男", "male"),
        ("ｵﾄｺ", "male"),
        ("MALE", "male"),
        ("その他", "other"),
        ("そのた", "other"),
        ("回答しない", "unanswered"),
        ("答えない", "unanswered"),
        ("答えたくない", "unanswered"),
        ("無回答", "unanswered"),
        ("ひみつ", "unanswered"),
    ],
)
def test_gender(typed, expected):
    assert parse_gender(typed) == expected


@pytest.mark.parametrize("typed", ["", "どちらでもない?", "女性男性", "1", "🌸"])
def test_gender_refuses_unclear_answers(typed):
    assert "女性" in message_for(parse_gender, typed)


# --- prefecture -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("東京", "東京都"),
        ("東京都", "東京都"),
        ("tokyo", "東京都"),
        ("Tokyo", "東京都"),
        ("ＴＯＫＹＯ", "東京都"),
        ("Tōkyō", "東京都"),
        ("とうきょう", "東京都"),
        ("ﾄｳｷｮｳ", "東京都"),
        ("京都", "京都府"),  # not 東京都!
        ("京都府", "京都府"),
        ("きょうと", "京都府"),
        ("kyoto", "京都府"),
        ("大阪府", "大阪府"),
        ("大阪", "大阪府"),
        ("おおさか", "大阪府"),
        ("osaka", "大阪府"),
        ("北海道", "北海道"),
        ("ほっかいどう", "北海道"),
        ("hokkaido", "北海道"),
        ("神奈川", "神奈川県"),
        ("かながわけん", "神奈川県"),
        ("沖縄", "沖縄県"),
        ("oita", "大分県"),
        (" 福岡県 ", "福岡県"),
        ("大阪府大阪市北区", "大阪府"),  # an address starting with the prefecture
    ],
)
def test_prefecture(typed, expected):
    assert parse_prefecture(typed) == expected


@pytest.mark.parametrize("typed", ["", "東", "京", "とうきょ", "日本", "ニューヨーク", "渋谷区"])
def test_prefecture_unknown_shows_an_example(typed):
    assert "東京都" in message_for(parse_prefecture, typed)


def test_prefecture_table_is_the_47_in_jis_order():
    table = prefectures.PREFECTURES
    assert [p.code for p in table] == list(range(1, 48))
    assert table[0].name == "北海道" and table[12].name == "東京都" and table[46].name == "沖縄県"
    assert prefectures.by_code(26).name == "京都府"
    assert prefectures.by_name("大阪府").code == 27
    assert all(p.name[-1] in "都道府県" for p in table)
    assert sum(p.name.endswith("府") for p in table) == 2


def test_every_prefecture_is_found_by_each_of_its_spellings():
    for p in prefectures.PREFECTURES:
        for spelling in (p.name, p.short_name, p.kana, p.romaji, p.romaji.upper()):
            assert prefectures.lookup(spelling) is p, spelling


# --- phone ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("090-1234-5678", "+819012345678"),
        ("09012345678", "+819012345678"),
        ("090 1234 5678", "+819012345678"),
        ("０９０－１２３４－５６７８", "+819012345678"),
        ("０９０ー１２３４ー５６７８", "+819012345678"),  # kana-mode hyphen
        ("+81 90-1234-5678", "+819012345678"),
        ("+81 090-1234-5678", "+819012345678"),
        ("＋８１９０１２３４５６７８", "+819012345678"),
        ("03-1234-5678", "+81312345678"),
        ("(03)1234-5678", "+81312345678"),
        ("06-6123-4567", "+81661234567"),
        ("050-1234-5678", "+815012345678"),
        ("+1 650-253-0000", "+16502530000"),
    ],
)
def test_phone(typed, expected):
    assert parse_phone(typed) == expected


@pytest.mark.parametrize(
    "typed", ["", "090-1234-567", "0000000000", "12345", "0120-ABC-DEF", "電話番号", "090-1234-5678 内線2"]
)
def test_phone_refusals(typed):
    assert "090-1234-5678" in message_for(parse_phone, typed)


# --- e-mail ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("hanako@example.com", "hanako@example.com"),
        (" hanako@example.com ", "hanako@example.com"),
        ("Hanako@EXAMPLE.COM", "Hanako@example.com"),
        ("ｈａｎａｋｏ＠ｅｘａｍｐｌｅ．ｃｏｍ", "hanako@example.com"),
        ("hanako@example。com", "hanako@example.com"),
        ("hanako+shop@mail.example.co.jp", "hanako+shop@mail.example.co.jp"),
    ],
)
def test_email(typed, expected):
    assert parse_email(typed) == expected


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "hanako",
        "hanako@",
        "@example.com",
        "hanako@example",
        "hanako@@example.com",
        "hanako@exa mple.com",
        "hana..ko@example.com",
        "山田@example.jp",
        "hanako@example.invalid",
    ],
)
def test_email_refusals(typed):
    assert "hanako@example.com" in message_for(parse_email, typed)


# --- skip ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "typed", ["スキップ", "すきっぷ", "ｽｷｯﾌﾟ", "飛ばす", "とばす", "なし", "無し", "ナシ", "特になし",
              "skip", "SKIP", " Skip ", "-", "－", "ー", "なし。"]
)
def test_is_skip(typed):
    assert is_skip(typed)


@pytest.mark.parametrize("typed", ["", "あり", "山田 花子", "hanako@example.com", "--x", "スキップしない"])
def test_is_not_skip(typed):
    assert not is_skip(typed)
