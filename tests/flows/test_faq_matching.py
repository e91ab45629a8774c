"""FAQ matching behaviour as a customer (and a shop owner editing the FAQ)
would notice it."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from kizuna.flows.faq import FaqDoc, FaqMatcher, MatchThresholds
from kizuna.flows.faq.analysis import get_analyzer
from kizuna.flows.faq.evaluation import (
    Costs,
    choose_thresholds,
    evaluate,
    leave_one_domain_out,
    load_faq_csv,
    load_queries_csv,
    rank_queries,
    report_for,
    threshold_grid,
    utility,
)
from tests.conftest import SHARED_FAQ as SHARED

DATA = Path(__file__).parent / "data"

needs_shared = pytest.mark.skipif(SHARED is None, reason="shared/data/faq not available")


@pytest.fixture(scope="module")
def analyzer():
    # the Sudachi dictionary is loaded once per process and shared
    return get_analyzer()


@pytest.fixture(scope="module")
def cosmetics(analyzer):
    """Cosmetics FAQ as the spec'd interface gives it (no answer texts)."""
    return FaqMatcher(load_faq_csv(SHARED / "cosmetics_faq.csv", with_answers=False), analyzer=analyzer)


@pytest.fixture(scope="module")
def cosmetics_with_answers(analyzer):
    return FaqMatcher(load_faq_csv(SHARED / "cosmetics_faq.csv"), analyzer=analyzer)


@pytest.fixture(scope="module")
def domain_matchers(analyzer):
    out = {name: FaqMatcher(load_faq_csv(DATA / f"{name}_faq.csv"), analyzer=analyzer)
           for name in ("restaurant", "gym", "hotel", "dental", "salon", "apparel", "sweets", "seikotsu", "rental",
                        "carservice", "school", "photo")}
    if SHARED is not None:
        out["cosmetics"] = FaqMatcher(load_faq_csv(SHARED / "cosmetics_faq.csv"), analyzer=analyzer)
    return out


# ---------------------------------------------------------------------------
# quality on labelled sets


@needs_shared
def test_dev_set_questions_only(cosmetics):
    """Dev set, FAQ given as question + alternates only (no answer texts)."""
    r = evaluate(cosmetics, load_queries_csv(SHARED / "cosmetics_dev_queries.csv"))
    assert r.top1_rate >= 0.94, r.summary()  # 34/35 at the time of writing
    assert r.answer_rate >= 0.82, r.summary()  # 30/35 answered directly and right
    assert r.answered_wrong <= 1, r.summary()
    assert r.reject_rate >= 0.95, r.summary()
    assert r.rej_answered == 0, r.summary()


@needs_shared
def test_dev_set_with_answer_texts(cosmetics_with_answers):
    """With the (optional) answer texts as weak evidence ranking improves.
    The issue's bar: the right answer text for >= 95% of answerable messages
    and no answer for >= 95% of unanswerable ones; 34/35 (97.1%) here with
    the cross-validated thresholds -- the other (会員をやめたいです: 退会 vs
    会員登録) is offered first among choices."""
    r = evaluate(cosmetics_with_answers, load_queries_csv(SHARED / "cosmetics_dev_queries.csv"))
    assert r.top1_rate >= 0.97, r.summary()
    assert r.answer_rate >= 0.95, r.summary()
    assert r.helpful_rate >= 0.97, r.summary()
    assert r.answered_wrong == 0, r.summary()
    assert r.reject_rate >= 0.95 and r.rej_answered == 0, r.summary()


# Other phrasings and other shops (tests/flows/data, see its README).  Floors
# are a little under what the matcher achieves; the point is: mostly answered
# and right, rarely wrong, unanswerable messages left to a person.  dental and
# salon were never used to choose anything (salon was written before any
# tuning); the others were used to choose the thresholds.
@pytest.mark.parametrize(
    "kb, queries, min_top1, min_answered",
    [
        ("restaurant", "restaurant_queries.csv", 0.88, 0.78),  # 93.5% / 83.9%
        ("gym", "gym_queries.csv", 0.92, 0.80),  # 98.3% / 86.2%
        ("hotel", "hotel_queries.csv", 0.80, 0.60),  # 84.3% / 66.7%
        pytest.param("cosmetics", "cosmetics_extra_queries.csv", 0.88, 0.78, marks=needs_shared),  # 94% / 84%
        ("dental", "dental_queries.csv", 0.80, 0.58),  # held out: 85.7% / 62.5%
        ("salon", "salon_queries.csv", 0.78, 0.60),  # held out: 83.6% / 65.6%
    ],
)
def test_held_out_sets(domain_matchers, kb, queries, min_top1, min_answered):
    r = evaluate(domain_matchers[kb], load_queries_csv(DATA / queries))
    assert r.n_unanswerable >= 20 and r.n_answerable + r.n_unanswerable >= 60
    assert r.top1_rate >= min_top1, r.summary()
    assert r.answer_rate >= min_answered, r.summary()
    assert r.answered_wrong <= 2, r.summary()
    assert r.wrong_answer_rate <= 0.08, r.summary()  # at most 1 of 35-52 answers at the time of writing
    assert r.reject_rate >= 0.95, r.summary()
    assert r.rej_answered <= 1, r.summary()


# Messages (and seven shops' FAQs) written on 2026-11-24 by writers who never saw
# the matcher (tests/flows/data/README.md).  apparel, sweets, seikotsu, rental,
# carservice and the cosmetics "tune" phrasings were then used for tuning; school, photo and the cosmetics
# "fresh" phrasings are fresh (only their totals were read).  They show where
# the matcher stands on phrasings nobody tuned it on: 50-67% answered directly,
# ~20% more offered as a choice, a few wrong answers.  The floors pin that level
# so a change that loses ground shows.
@pytest.mark.parametrize(
    "kb, queries, min_top1, min_answered, max_wrong, max_small_talk_answered",
    [("apparel", "apparel_queries.csv", 0.80, 0.64, 2, 1),  # 84.4% / 68.8%, 1 wrong
     ("sweets", "sweets_queries.csv", 0.82, 0.67, 3, 1),  # 85.9% / 71.9%, 2 wrong
     ("seikotsu", "seikotsu_queries.csv", 0.75, 0.55, 1, 1),  # 79.7% / 59.4%, 0 wrong
     ("rental", "rental_queries.csv", 0.71, 0.49, 4, 1),  # 75.0% / 53.1%, 3 wrong
     ("carservice", "carservice_queries.csv", 0.78, 0.58, 5, 2),  # 82.8% / 62.5%, 5 wrong
     pytest.param("cosmetics", "cosmetics_tune_queries.csv", 0.76, 0.54, 4, 1, marks=needs_shared),  # 80.9% / 58.8%, 3
     ("school", "school_queries.csv", 0.66, 0.47, 1, 1),  # fresh: 71.9% / 51.6%, 0 wrong
     ("photo", "photo_queries.csv", 0.74, 0.49, 4, 1),  # fresh: 78.1% / 53.1%, 3 wrong
     pytest.param("cosmetics", "cosmetics_fresh_queries.csv", 0.73, 0.63, 3, 1, marks=needs_shared)],  # fresh: 77.8% / 68.3%, 3
)
def test_messages_written_by_someone_else(domain_matchers, kb, queries, min_top1, min_answered, max_wrong,
                                         max_small_talk_answered):
    r = evaluate(domain_matchers[kb], load_queries_csv(DATA / queries))
    assert r.n_answerable >= 60 and r.n_unanswerable >= 20
    assert r.top1_rate >= min_top1, r.summary()
    assert r.answer_rate >= min_answered, r.summary()
    assert r.answered_wrong <= max_wrong, r.summary()
    assert r.rej_answered <= max_small_talk_answered, r.summary()  # of 22 must-not-answer messages


# ---------------------------------------------------------------------------
# small talk and unrelated messages

SMALL_TALK = [
    "ありがとう", "ありがとうございます！", "ありがと〜😊", "こんにちは", "こんばんは", "おはようございます",
    "はい", "いいえ", "了解です", "了解しました👍", "わかりました", "OK", "おけ", "うん", "よろしくお願いします",
    "お疲れさまです", "😊", "🙏🙏", "www", "笑", "！！", "。", "   ", "すごーい", "またね", "おやすみなさい",
    "今日はいい天気ですね", "暑いですね", "お腹すいた", "眠い", "おすすめの映画を教えて", "株価はどうなりますか",
    "明日の天気は？", "猫かわいい", "東京タワーの高さは？", "野球の結果教えて",
]


@pytest.mark.parametrize("text", SMALL_TALK)
def test_small_talk_is_never_answered(domain_matchers, text):
    for name, m in domain_matchers.items():
        r = m.match(text)
        assert r.outcome != "answer", (name, text, r)


# Statements are not questions: matched to an FAQ that asks (休みの日はいつですか,
# ペットを連れて行ってもいいですか) they are handed over, not answered or quizzed.
@pytest.mark.parametrize("text", ["明日休みだー", "猫かわいい", "うちの犬かわいい", "昨日の料理に髪の毛が入っていました",
                                  "予約してよかった！", "駐車場が広くて助かりました"])
def test_statements_are_not_answered(domain_matchers, text):
    r = domain_matchers["restaurant"].match(text)
    assert r.outcome == "none", r


def test_questions_and_problem_reports_are_answered(domain_matchers):
    m = domain_matchers["restaurant"]
    for text, expected in [("明日は休みかな", "holidays"), ("火曜日は休みですか", "holidays"),
                           ("何時まであいてますか", "hours")]:  # あいてる: Sudachi reads 会う; it is 開く
        r = m.match(text)
        assert r.outcome == "answer" and r.best.faq_id == expected, (text, r)
    # a report is answered by an FAQ that is itself a report
    m = domain_matchers["gym"]
    r = m.match("忘れ物しちゃいました")
    assert r.outcome == "answer" and r.best.faq_id == "lost_item", r


@pytest.mark.parametrize(
    "text, asks",
    [
        ("送料はいくらですか", 1.0), ("駐車場ある？", 1.0), ("返品したい", 1.0), ("予約をお願いします", 1.0),
        ("配信停止してください", 1.0), ("場所がわからないです", 1.0), ("カードで払えますか", 1.0),
        ("駐車場ある", 0.5), ("営業時間", 0.5), ("まだ荷物が届かないんだけど", 0.5), ("退会します", 0.5),
        ("猫かわいい", 0.25),
        ("明日休みだー", 0.0), ("商品が割れて届きました", 0.0), ("楽しかったです！", 0.0), ("わかりました", 0.0),
    ],
)
def test_asks_tells_questions_from_statements(analyzer, text, asks):
    assert analyzer.analyze(text).asks == asks


@pytest.mark.parametrize("text", ["ありがとう", "はい", "😊", "こんにちは", "了解です", ""])
def test_content_free_messages_get_none(domain_matchers, text):
    for m in domain_matchers.values():
        assert m.match(text).outcome == "none"


# ---------------------------------------------------------------------------
# how customers type


@needs_shared
@pytest.mark.parametrize(
    "text, expected",
    [
        ("送料はいくらですか", "shipping_fee"),
        ("送料はいくらですか？？😊😊", "shipping_fee"),  # punctuation + emoji
        ("そうりょうはいくらですか", "shipping_fee"),  # all hiragana
        ("ｿｳﾘｮｳはいくら", "shipping_fee"),  # half-width katakana
        ("送料って いくら？", "shipping_fee"),  # casual, spaces
        ("ぱすわーどわすれました", "password"),  # hiragana for a katakana word
        ("ﾊﾟｽﾜｰﾄﾞ忘れた", "password"),  # half-width
        ("パスワードをわすれちゃった…", "password"),
        ("ｶｳﾝｾﾘﾝｸﾞ予約したいです", "counseling"),
        ("詰替え用は売ってますか", "refill"),  # spelling variant 詰替え/詰め替え
        ("まだ荷物が届かないんだけど", "not_arrived"),  # negation
        ("商品が割れて届きました", "damaged"),  # ... and its absence
        ("ＰａｙＰａｙ使えますか", "payment"),
    ],
)
def test_customer_spellings(cosmetics_with_answers, text, expected):
    r = cosmetics_with_answers.match(text)
    assert r.outcome != "none", r
    assert r.candidates[0].faq_id == expected, r


@pytest.mark.parametrize(
    "text, expected",
    [
        ("ちゅーしゃじょーある？", "parking"),  # hiragana + long vowel marks
        ("駐車上ありますか", "parking"),  # wrong kanji (IME slip)
        ("えいぎょうじかんは", "hours"),
        ("営業じかん教えて", "hours"),  # mixed kanji/kana
        ("コシツある?", "private_room"),  # katakana for a kanji word
        ("ﾃｲｸｱｳﾄできる？", "takeout"),
        ("もちかえりできる？", "takeout"),
        ("カードつかえる？", "payment"),
        ("個室ありますか？？？？", "private_room"),
    ],
)
def test_customer_spellings_other_shop(domain_matchers, text, expected):
    r = domain_matchers["restaurant"].match(text)
    assert r.outcome == "answer" and r.candidates[0].faq_id == expected, r


@needs_shared
@pytest.mark.parametrize(
    "text, expected",
    [
        ("セール品にクーポン使えますか", "coupon_combine"),  # セール ~ 割引
        ("ボトルが割れていました", "damaged"),  # 割れる ~ 破損
        ("ポイントの貯め方を教えて", "points"),  # 貯める ~ 貯まる
        ("配達の日にちを指定したいです", "delivery_date"),
    ],
)
def test_different_words_for_the_same_thing(cosmetics_with_answers, text, expected):
    r = cosmetics_with_answers.match(text)
    assert r.best is not None and r.best.faq_id == expected, r


def test_customer_service_concepts_other_shops(domain_matchers):
    for kb, text, expected in [("gym", "やめたいんですけど", "cancel_membership"),  # やめる ~ 退会
                               ("gym", "月曜日ってお休みですか", "holidays"),  # お休み ~ 休館日
                               ("restaurant", "赤ちゃん連れでも入れますか", "kids")]:  # 赤ちゃん ~ 子供
        r = domain_matchers[kb].match(text)
        assert r.outcome == "answer" and r.best.faq_id == expected, (text, r)


def test_a_name_is_not_like_another_name(analyzer):
    """PayPay ~ 何 (the kind of word that answers it), but PayPay is not Wi-Fi."""
    m = FaqMatcher([FaqDoc("wifi", "Wi-Fiはありますか"), FaqDoc("payment", "支払い方法は何が使えますか"),
                    FaqDoc("hours", "営業時間を教えてください")], analyzer=analyzer)
    r = m.match("PayPay使えますか")
    assert r.best.faq_id == "payment", r
    assert all(c.faq_id != "wifi" for c in r.candidates), r


def test_a_name_listed_in_an_answer_finds_that_faq(domain_matchers):
    """支払い方法は何がありますか, whose answer lists PayPay, answers ＰａｙＰａｙ使える？"""
    r = domain_matchers["sweets"].match("ＰａｙＰａｙ使える？")
    assert r.outcome == "answer" and r.best.faq_id == "payment", r


@needs_shared
def test_nitsuite_is_a_particle_not_the_verb_tsuku(cosmetics_with_answers):
    """成分やアレルギーについて知りたい has no verb つく in it, so どれくらいつくのか does not match it."""
    r = cosmetics_with_answers.match("買い物したらポイントたまるんですか？どれくらいつくのか知りたい")
    assert r.outcome == "answer" and r.best.faq_id == "points", r


def test_saying_you_will_get_in_touch_later_is_not_a_question(domain_matchers):
    """わかりました、また連絡します closes the conversation; it does not ask for the phone FAQ."""
    r = domain_matchers["carservice"].match("わかりました、また連絡します")
    assert r.outcome == "none", r
    r = domain_matchers["carservice"].match("電話で問い合わせたいです")
    assert r.outcome == "answer" and r.best.faq_id == "phone", r


def test_trying_something_on_is_asking_about_a_fitting(domain_matchers):
    """V-てみる is trying V: 着てみる ~ 試着."""
    r = domain_matchers["apparel"].match("お店で着てみることはできますか")
    assert r.outcome == "answer" and r.best.faq_id == "fitting", r


def test_a_name_no_faq_mentions_is_not_answered_from_the_rest_of_the_message(domain_matchers):
    """ペイペイ appears only in the payment FAQ's answer (as PayPay); Wi-Fiは使えますか
    matches 使えますか but says nothing about ペイペイ."""
    r = domain_matchers["hotel"].match("ペイペイ使えますか")
    assert r.outcome != "answer" or r.best.faq_id == "payment", r


@needs_shared
def test_question_buried_in_a_long_message(cosmetics_with_answers):
    text = ("こんにちは。いつも愛用しています！先月も注文しました。"
            "母の誕生日にプレゼントしたいのですが、ラッピングはしてもらえますか？よろしくお願いします。")
    r = cosmetics_with_answers.match(text)
    assert r.outcome == "answer" and r.candidates[0].faq_id == "gift", r


# ---------------------------------------------------------------------------
# decision structure


def _kb(*pairs: tuple[str, str], analyzer=None) -> FaqMatcher:
    return FaqMatcher([FaqDoc(i, q) for i, q in pairs], analyzer=analyzer)


def test_close_candidates_are_offered_not_guessed(analyzer):
    m = _kb(("point_expiry", "ポイントの有効期限はいつまでですか"),
            ("coupon_expiry", "クーポンの有効期限はいつまでですか"),
            ("hours", "営業時間を教えてください"), analyzer=analyzer)
    r = m.match("有効期限はいつまで？")
    assert r.outcome == "disambiguate", r
    assert {c.faq_id for c in r.candidates[:2]} == {"point_expiry", "coupon_expiry"}
    assert 2 <= len(r.candidates) <= 3
    # naming one of them makes it an answer
    r = m.match("クーポンの有効期限はいつまで？")
    assert r.outcome == "answer" and r.candidates[0].faq_id == "coupon_expiry", r


def test_a_close_faq_that_explains_nothing_more_does_not_block_the_answer(domain_matchers):
    """The booking FAQ is close to the change-booking one only because it is
    shorter: it matches no word of the message that the other does not."""
    r = domain_matchers["restaurant"].match("予約の時間を変えたいんですけど")
    assert r.outcome == "answer" and r.best.faq_id == "reservation_change", r
    assert r.candidates[1].faq_id == "reservation" and r.best.score - r.candidates[1].score < 0.12, r


def test_a_compound_verb_matches_its_last_verb(analyzer):
    """カード払い (払う) ~ 支払い方法 (支払う), not ポイントカード."""
    m = FaqMatcher([FaqDoc("payment", "支払い方法は何がありますか", answer="現金、クレジットカード、PayPayがご利用いただけます。"),
                    FaqDoc("point_card", "ポイントカードはありますか", answer="はい、500円ごとに1ポイント貯まります。"),
                    FaqDoc("hours", "営業時間を教えてください", answer="10時から19時までです。")], analyzer=analyzer)
    r = m.match("カード払いできますか")
    assert r.best.faq_id == "payment", r


def test_result_invariants(domain_matchers):
    for m in domain_matchers.values():
        for text in ("駐車場ありますか", "予約したい", "ありがとう", "カード使える？", "予約の変更", "キャンセルしたい"):
            r = m.match(text)
            assert 0.0 <= r.score <= 1.0
            if r.candidates:
                assert r.score == pytest.approx(r.candidates[0].score)
                scores = [c.score for c in r.candidates]
                assert scores == sorted(scores, reverse=True)
                assert all(c.matched_text for c in r.candidates)
            if r.outcome == "answer":
                assert r.candidates
                th = m.thresholds
                for c in r.candidates[1:]:  # quick-reply suggestions: close ones only
                    assert c.score >= th.offer_floor and r.score - c.score <= th.offer_spread + 1e-9
            if r.outcome == "disambiguate":
                assert 2 <= len(r.candidates) <= 3
                assert len({c.faq_id for c in r.candidates}) == len(r.candidates)


def test_thresholds_are_configurable(analyzer):
    docs = [FaqDoc("parking", "駐車場はありますか"), FaqDoc("hours", "営業時間を教えてください")]
    assert FaqMatcher(docs, analyzer=analyzer).match("駐車場ありますか").outcome == "answer"
    never = MatchThresholds(answer=1.01, answer_alone=1.01)
    assert FaqMatcher(docs, never, analyzer=analyzer).match("駐車場ありますか").outcome != "answer"
    # a near tie is answered only when tie answering is switched on
    tie_docs = [FaqDoc("point_expiry", "ポイントの有効期限はいつまでですか"),
                FaqDoc("coupon_expiry", "クーポンの有効期限はいつまでですか")]
    assert FaqMatcher(tie_docs, analyzer=analyzer).match("ポイントとクーポンの期限").outcome == "disambiguate"
    ties = MatchThresholds(tie_answer=0.3, tie_margin=0.0)
    r = FaqMatcher(tie_docs, ties, analyzer=analyzer).match("ポイントとクーポンの期限")
    assert r.outcome == "answer" and len(r.candidates) == 2, r  # the other one rides along as a quick reply
    mute = MatchThresholds(answer=1.01, answer_alone=1.01, disambiguate=1.01)
    assert FaqMatcher(docs, mute, analyzer=analyzer).match("駐車場ありますか").outcome == "none"


# ---------------------------------------------------------------------------
# choosing thresholds


@pytest.fixture(scope="module")
def ranked_shops(domain_matchers):
    return {name: rank_queries(domain_matchers[name], load_queries_csv(DATA / f"{name}_queries.csv"))
            for name in ("restaurant", "gym", "hotel")}


def test_report_for_replays_the_decision_of_match(domain_matchers, ranked_shops):
    rs = ranked_shops["restaurant"]
    direct = evaluate(domain_matchers["restaurant"], load_queries_csv(DATA / "restaurant_queries.csv"))
    replay = report_for(rs, domain_matchers["restaurant"].thresholds)
    assert (replay.answered_right, replay.answered_wrong, replay.offered_right, replay.rejected) == (
        direct.answered_right, direct.answered_wrong, direct.offered_right, direct.rejected)


def test_cost_model_and_cross_validation(ranked_shops):
    never = MatchThresholds(answer=1.01)
    reckless = MatchThresholds(answer=0.0, margin=0.0, disambiguate=0.0, min_evidence=0.0, statement_extra=0.0)
    grid = [never, MatchThresholds(), reckless]
    th, _ = choose_thresholds(ranked_shops, grid)
    # never answering and answering everything are both worse than the defaults
    assert th == MatchThresholds()
    lodo = leave_one_domain_out(ranked_shops, grid)
    assert set(lodo) == set(ranked_shops)
    for name, (t, r) in lodo.items():
        assert r.n_answerable + r.n_unanswerable == len(ranked_shops[name].items)
        assert t == MatchThresholds()
    assert len(threshold_grid(MatchThresholds(), answer=(0.2, 0.3), margin=(0.1, 0.2, 0.3))) == 6
    # wrong answers cost 3x
    r = report_for(ranked_shops["hotel"], reckless)
    assert r.answered_wrong + r.rej_answered > 0
    assert utility(r) == pytest.approx(r.answered_right - 3 * (r.answered_wrong + r.rej_answered)
                                       + 0.25 * r.offered_right - 0.25 * r.rej_offered)
    assert utility(r, Costs(wrong=1.0)) > utility(r)


def test_defaults_beat_the_old_conservative_policy(ranked_shops):
    old = MatchThresholds(answer=0.5, margin=0.12, disambiguate=0.27, answer_alone=0.42, min_evidence=0.55,
                          statement_extra=0.0, statement_offer=0.0)
    new_u = sum(utility(report_for(rs, MatchThresholds())) for rs in ranked_shops.values())
    old_u = sum(utility(report_for(rs, old)) for rs in ranked_shops.values())
    assert new_u > old_u + 20


# ---------------------------------------------------------------------------
# knowledge-base maintenance


def test_empty_kb_returns_none(analyzer):
    m = FaqMatcher(analyzer=analyzer)
    r = m.match("送料はいくらですか")
    assert r.outcome == "none" and r.candidates == () and r.score == 0.0


def test_upsert_and_remove_take_effect_immediately(analyzer):
    m = FaqMatcher([FaqDoc("hours", "営業時間を教えてください")], analyzer=analyzer)
    assert m.match("駐車場はありますか").outcome == "none"

    m.upsert(FaqDoc("parking", "駐車場はありますか", alternates=("車で行けますか",)))
    r = m.match("駐車場ある？")
    assert r.outcome == "answer" and r.candidates[0].faq_id == "parking"
    assert m.match("営業時間は？").candidates[0].faq_id == "hours"

    # replacing an entry replaces its wording
    m.upsert(FaqDoc("parking", "駐輪場はありますか"))
    assert m.match("自転車を停める駐輪場はありますか").candidates[0].faq_id == "parking"
    r = m.match("車で行けますか")
    assert r.outcome == "none" or r.candidates[0].faq_id != "parking"

    m.remove("parking")
    r = m.match("駐輪場はありますか")
    assert all(c.faq_id != "parking" for c in r.candidates)
    m.remove("does-not-exist")  # no error
    assert len(m) == 1

    m.replace_all([FaqDoc("wifi", "Wi-Fiはありますか")])
    assert m.match("wifiある？").candidates[0].faq_id == "wifi"
    assert m.match("営業時間は？").outcome == "none"


def test_concurrent_matching_while_editing(analyzer):
    m = FaqMatcher([FaqDoc(f"q{i}", f"{w}はありますか") for i, w in enumerate(
        ["駐車場", "個室", "喫煙席", "子供用の椅子", "無料Wi-Fi", "テイクアウト"])], analyzer=analyzer)
    errors: list[BaseException] = []

    def reader():
        try:
            for _ in range(200):
                r = m.match("駐車場ありますか")
                assert r.outcome in ("answer", "disambiguate", "none")
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(20):
        m.upsert(FaqDoc(f"extra{i}", f"追加の質問{i}ですか"))
    for t in threads:
        t.join()
    assert not errors
    assert m.match("駐車場ありますか").candidates[0].faq_id == "q0"
