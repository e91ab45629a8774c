"""Normalisation of customer-typed Japanese (kizuna.flows.faq.normalize)."""

import pytest

from kizuna.flows.faq.normalize import char_ngrams, fold_kana, normalize, strip_sentence_endings


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("ＪＲの駅から歩いて行けますか", "jrの駅から歩いて行けますか"),  # full-width ASCII
        ("ﾊﾟｰｿﾅﾙﾄﾚｰﾆﾝｸﾞの料金は？", "パーソナルトレーニングの料金は?"),  # half-width kana
        ("Ｗｉ－Ｆｉ　ありますか", "wi-fi ありますか"),  # width + case + ideographic space
        ("飲み放題ってありますか🍺", "飲み放題ってありますか"),  # emoji
        ("👨‍👩‍👧 家族割", "家族割"),  # ZWJ emoji sequence
        ("ありがと〜！！", "ありがと!"),  # wave-dash elongation, repeated punctuation
        ("定休日おしえてー", "定休日おしえて"),  # trailing long vowel on hiragana
        ("すご〜〜い", "すごーい"),
        ("ですかぁ？？", "ですか?"),  # small-vowel elongation
        ("ありがとう(笑)", "ありがとう"),
        ("それなｗｗｗ", "それな"),  # laughter
        ("10〜20時", "10〜20時"),  # a range stays
        ("シャンプーーー", "シャンプー"),  # repeated long vowel in katakana
        ("こんにちは\n\n送料は?", "こんにちは。送料は?"),  # line breaks end sentences
        ("😂😂😂", ""),
        ("", ""),
    ],
)
def test_normalize(raw, expected):
    assert normalize(raw) == expected


def test_normalize_is_idempotent():
    for s in ["ﾊﾟｰｿﾅﾙﾄﾚｰﾆﾝｸﾞの料金は？？😊", "ありがと〜ｗｗ", "ＯＫです！！"]:
        once = normalize(s)
        assert normalize(once) == once


@pytest.mark.parametrize(
    "a, b",
    [
        ("シャンプー", "しゃんぷう"),  # katakana vs hiragana, long vowel spelled out
        ("ｼｬﾝﾌﾟｰ", "シャンプー"),  # half-width
        ("ウェア", "ウエア"),  # small-kana variant
        ("ヴィーガン", "ビーガン"),  # ヴ
        ("パスワード", "ぱすわーど"),
        ("チューシャジョー", "ちゅうしゃじょう"),  # long vowel mark vs spelled-out vowel
        ("Wi-Fi", "ＷＩＦＩ"),
    ],
)
def test_fold_kana_makes_spelling_variants_equal(a, b):
    assert fold_kana(a) == fold_kana(b)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("送料はいくらですか?", "送料はいくら"),
        ("返品できますでしょうか", "返品でき"),
        ("ポイントっていつまで使えるのかな", "ポイントっていつまで使える"),
        ("予約できる?", "予約できる"),
        ("営業時間を教えてください", "営業時間を教えて"),
    ],
)
def test_strip_sentence_endings(raw, expected):
    assert strip_sentence_endings(raw) == expected


def test_char_ngrams():
    assert char_ngrams("送料", 2) == ["送料"]
    assert char_ngrams("配送料", 2) == ["配送", "送料"]
    assert char_ngrams("", 2) == []
