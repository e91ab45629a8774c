"""Complaints and small talk (flows/faq/intents.py) on labelled messages.

The complaint set: messages written for this test, not taken from any shop, grouped by what
the customer complains about and how they say it (polite, casual, angry, understated), and
non-complaints chosen to be hard: questions that hold a negative word (a symptom, a
hypothetical, a policy question), praise of the same staff and goods, apologies and polite
formulas, and heads-ups. `COMPLAINTS` and `NOT_COMPLAINTS` were read while the lexicon was
written; `LATER_*` were written before the lexicon was first run and were not used to tune
it, with one exception: 「スタッフの方に怒鳴られました」 revealed a bug (a passive 〜られた taken
for the conditional 〜たら), which was fixed. First measured, they gave precision 100 %,
recall 80 % (2 of 10 missed); after that fix 100 % / 90 % (「サイズ違いの商品が入ってました」
is still missed). `test_precision_and_recall_are_reported` prints both sets' figures."""

from __future__ import annotations

import pytest

from kizuna.flows.faq.analysis import get_analyzer
from kizuna.flows.faq.intents import complaint, is_small_talk, prepare

COMPLAINTS: dict[str, list[str]] = {
    "staff attitude": [
        "店員さんの態度がひどかったです",
        "店員の態度が悪すぎる",
        "受付の方の対応がとても冷たく感じました。",
        "スタッフさんの言い方がきつくて嫌な気分になりました",
        "レジの人に舌打ちされました",
        "電話に出た方がすごく横柄でした",
        "接客が最悪でした。二度と行きません",
        "あの店員さん、感じ悪すぎ",
        "質問したら面倒くさそうにため息をつかれました",
        "担当の方の説明が不十分でした",
    ],
    "strong words": [
        "最悪",
        "サイアクです😡",
        "ありえないんですけど",
        "本当に不愉快でした",
        "がっかりしました",
        "もう二度と利用しません",
        "許せません",
        "正直むかつきました",
    ],
    "received goods": [
        "届いた商品が壊れていました",
        "箱を開けたらボトルが割れてました",
        "商品に傷がついていました",
        "注文したものと違う商品が届きました",
        "頼んだ色と違う色が届いたんですが",
        "個数が足りなかったです",
        "中身が漏れていて箱がびしょびしょでした",
        "初期不良で電源が入りません",
        "料理に髪の毛が入っていました",
        "賞味期限が切れた商品が届きました",
    ],
    "delivery and waiting": [
        "1週間経ってもまだ届かないんですけど",
        "返信が遅すぎませんか？",
        "何度問い合わせても連絡がないです",
        "予約したのに30分以上待たされました",
        "予約が入っていなかったと言われました",
    ],
    "place and service": [
        "部屋がとても寒かったです",
        "更衣室が汚かった",
        "隣の部屋がうるさくて眠れませんでした",
        "施術が雑でした",
        "写真と全然違う部屋でした",
        "洗車してくれるって言ってたのに汚いままでした",
    ],
    "money and demands": [
        "返金してほしいです",
        "返金してください",
        "お金返してください",
        "二重に請求されているのですが",
        "責任者を出してください",
        "謝罪もないんですか",
        "消費者センターに相談します",
    ],
    "after using": [
        "使ったら肌が荒れてしまいました",
        "顔が赤くなってかぶれました",
        "この化粧水、肌に合わなかったです",
    ],
}

NOT_COMPLAINTS: dict[str, list[str]] = {
    "a symptom, not the shop": [
        "肌荒れがひどいのですが使えますか",
        "乾燥がひどい時期におすすめはありますか",
        "腰痛がひどくて、今日予約できますか",
        "筋肉痛がひどいです",
        "くせ毛がひどくて悩んでいます",
        "頭皮のかゆみがひどいときはどうしたらいいですか",
    ],
    "a hypothetical or a policy question": [
        "届いた商品が壊れていたらどうすればいいですか",
        "破損していた場合は交換してもらえますか",
        "不良品だった場合の対応を教えてください",
        "最悪の場合、キャンセル料はかかりますか",
        "返金はできますか",
        "返品や交換はできますか",
        "もし肌に合わなかったら返品できますか",
        "使って肌が荒れたらどうすればいいですか",
        "不快感が出たら使用を中止したほうがいいですか",
        "壊れやすいものでも送れますか",
    ],
    "a status question": [
        "注文した商品がまだ届きません",
        "いつ届きますか",
        "配送状況を確認したいです",
    ],
    "praise of the same things": [
        "店員さんの対応がとても丁寧でした",
        "スタッフの方がとても親切でした",
        "料理がとてもおいしかったです",
        "説明がすごくわかりやすかったです",
        "受付の方の笑顔に癒されました",
    ],
    "polite formulas and apologies": [
        "失礼ですが、営業時間を教えてください",
        "失礼します、予約の件でご連絡しました",
        "悪いんですが予約を変更したいです",
        "ご迷惑をおかけしてすみません、遅れそうです",
        "クレームではないのですが、少し気になったことがあります",
    ],
    "everyday questions and talk": [
        "送料はいくらですか",
        "今日は暑いですね",
        "雨がひどいですが営業していますか",
        "二度塗りしても大丈夫ですか",
        "注文を間違えてしまいました",
        "間違えて2個注文してしまいました",
        "アルコールは入っていないですか",
        "虫除けの商品はありますか",
        "汚れが落ちやすいシャンプーはどれですか",
        "うるさくない席はありますか",
        "冷たい飲み物はありますか",
        "最低何回通えばいいですか",
    ],
}

# Written before the lexicon was first run; not used to tune it (see the module docstring).
LATER_COMPLAINTS = [
    "スタッフの方に怒鳴られました",
    "何回電話しても誰も出ないし最低です",
    "届いたお皿が欠けていました",
    "サイズ違いの商品が入ってました",
    "店内がたばこ臭かったです",
    "予約時間に行ったのに放置されました",
    "説明と全然違うじゃないですか",
    "対応が悪すぎて腹が立ちました",
    "このお店には失望しました",
    "謝ってほしいです",
]
LATER_NOT_COMPLAINTS = [
    "肌が弱いのですが大丈夫ですか",
    "割れ物の配送はできますか",
    "最低料金はいくらですか",
    "傷がついた場合の保証はありますか",
    "返金までどのくらいかかりますか",
    "態度で示したいのでプレゼント包装をお願いします",
    "スタッフさんの接客が素晴らしかったです",
    "寒いので温かいメニューはありますか",
    "遅くまで開いているお店はどこですか",
    "前回は対応ありがとうございました",
]


def _flat(groups: dict[str, list[str]]) -> list[str]:
    return [text for texts in groups.values() for text in texts]


def _figures(positives: list[str], negatives: list[str]) -> tuple[float, float, list[str], list[str]]:
    missed = [text for text in positives if complaint(text) is None]
    false = [text for text in negatives if complaint(text) is not None]
    found = len(positives) - len(missed)
    precision = found / max(1, found + len(false))
    recall = found / max(1, len(positives))
    return precision, recall, missed, false


def test_the_sets_are_big_enough():
    assert len(_flat(COMPLAINTS)) >= 40 and len(_flat(NOT_COMPLAINTS)) >= 40
    assert len(set(_flat(COMPLAINTS)) | set(_flat(NOT_COMPLAINTS))) == len(_flat(COMPLAINTS)) + len(_flat(NOT_COMPLAINTS))


@pytest.mark.parametrize("text", _flat(COMPLAINTS))
def test_complaints_are_recognised(text):
    assert complaint(text) is not None, text


@pytest.mark.parametrize("text", _flat(NOT_COMPLAINTS))
def test_questions_with_a_negative_word_are_no_complaint(text):
    found = complaint(text)
    assert found is None, (text, found)


def test_precision_and_recall_are_reported(capsys):
    with capsys.disabled():
        for name, positives, negatives in (("labelled (read while writing the lexicon)", _flat(COMPLAINTS), _flat(NOT_COMPLAINTS)),
                                           ("later (not used to tune it)", LATER_COMPLAINTS, LATER_NOT_COMPLAINTS)):
            precision, recall, missed, false = _figures(positives, negatives)
            print(f"\ncomplaints, {name}: {len(positives)} + {len(negatives)} messages: "
                  f"precision {precision:.1%}, recall {recall:.1%}; missed {missed}; false {false}")
    precision, recall, _missed, _false = _figures(LATER_COMPLAINTS, LATER_NOT_COMPLAINTS)
    assert precision >= 0.8 and recall >= 0.7  # the honest figure: a floor, not a target


def test_a_complaint_says_what_kind_it_is():
    found = complaint("店員さんの態度がひどかったです。返金してほしいです")
    assert found is not None and {"bad_manner", "refund"} <= set(found.kinds)


def test_prepare_folds_what_customers_type():
    assert prepare("サイアク〜 ひどーい ｸﾚｰﾑ") == "さいあくーひどいくれーむ"


SMALL_TALK = ["今日は暑いですね〜", "今日はいい天気ですね", "ありがとう", "こんにちは", "了解です", "料理がとてもおいしかったです",
              "スタッフの方がとても親切でした", "楽しみにしています！", "また行きます！", "お疲れ様です", "👍", "猫かわいい"]
NOT_SMALL_TALK = ["初めてジムに通うので不安です", "ロッカーに忘れ物しちゃいました", "急に行けなくなってしまいました",
                  "サイズが合わなかった…", "おすすめの映画を教えて", "株価はどうなりますか", "明日は晴れるかな", "駐車場ある",
                  "ごめんなさい、さっき注文したやつやっぱりキャンセルで！", "筋肉痛がひどいです"]


@pytest.mark.parametrize("text", SMALL_TALK)
def test_small_talk(text):
    assert is_small_talk(text, get_analyzer().analyze(text)), text


@pytest.mark.parametrize("text", NOT_SMALL_TALK)
def test_needs_and_questions_are_not_small_talk(text):
    assert not is_small_talk(text, get_analyzer().analyze(text)), text
