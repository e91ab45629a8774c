"""What a message is when it is not a question: a complaint, or small talk.

Generic Japanese customer-service knowledge, the same for every kind of shop (nothing
here may name one shop's goods or services; the FAQ holds those). The inquiry answerer
(:mod:`.inquiry`) asks, for a message no flow and no keyword rule took:

* :func:`complaint` -- before the FAQ answer: is the customer unhappy with the shop's
  staff, goods, delivery or service (「店員さんの態度がひどかったです」「最悪」
  「二度と行きません」「返金してほしい」「届いた商品が壊れていました」, polite or
  casual)? A complaint is apologised for and handed to a person. A question that
  merely holds a negative word is not one: 「肌荒れがひどいのですが使えますか」 (a
  symptom, not the shop), 「壊れていたら交換できますか」 (a hypothetical),
  「最悪の場合」「失礼ですが」「返金はできますか」 (a policy question).
* :func:`is_small_talk` -- after the FAQ found nothing: is it social talk (weather,
  thanks and praise, an acknowledgement, how one feels, "I'll come again"), which gets
  a friendly line rather than an apology for an unanswered question?

How a complaint is recognised: the message is normalised (NFKC, emoji removed, hiragana
elongation dropped, katakana folded to hiragana) and searched for the *cues* below, each
a regular expression over that text naming one way customers complain (grouped by what
they complain about). A cue is dropped when what follows it makes it hypothetical or a
question about policy (「〜たら」「〜場合」「〜なら」「〜ではない」). Symptoms and
weather are not complaints: 「ひどい」「悪い」 count only with something the shop is
responsible for (staff, attitude, service, goods, the room ...) in the same clause.
The labelled set in tests/flows/test_intents.py (complaints and non-complaints by
phrasing) measures it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from .analysis import Analysis
from .normalize import normalize as normalize_message

__all__ = ["Complaint", "complaint", "is_small_talk", "prepare"]


# -- normalising for the cues ------------------------------------------------------------


def prepare(text: str) -> str:
    """The text the cues are matched against: the matcher's normalisation (NFKC, lower
    case, emoji and laughter removed), an elongation after hiragana dropped
    (ひどーい -> ひどい), katakana folded to hiragana (サイアク -> さいあく), no spaces."""
    text = normalize_message(unicodedata.normalize("NFKC", text or "")[:1000])
    out: list[str] = []
    previous = ""
    for char in text:
        if char in "ー〜～" and "ぁ" <= previous <= "ゖ":
            continue  # ひどーい (a katakana word keeps its ー: クレーム)
        previous = char
        out.append(chr(ord(char) - 0x60) if "ァ" <= char <= "ヶ" else char)
    return re.sub(r"\s+", "", "".join(out))


# -- the cues ----------------------------------------------------------------------------

# What the shop answers for: people, how they behave, what is sold and delivered, the place.
_STAFF = r"(?:店員|てんいん|すたっふ|従業員|担当|受付|うけつけ|店長|接客|対応|態度|愛想|言い方|口調|電話|返事|返信|説明|さーびす|先生|講師)"
_THINGS = (r"(?:商品|品物|製品|品質|中身|料理|食事|部屋|へや|店内|館内|室内|院内|設備|施術|仕上がり|配送|配達|梱包|"
           r"荷物|扱い|仕事|作業|応対|お店|会社)")
_TARGET = f"(?:{_STAFF}|{_THINGS})"
# A clause: up to this many characters without a sentence or clause break.
_SAME_CLAUSE = r"[^。!?.、,\n]{0,12}"
# Something that happened or is the case now: 〜た, 〜ていた, 〜てしまった, 〜になった ...
_DONE = (r"(?:て(?:い)?(?:た|ま|る)|で(?:い)?(?:た|ま|る)|た|だ|ました|ちゃ|てしま|でしま|なった|なりまし|なって|"
         r"てきた|てきま|た状態|の状態)")

# (label, pattern); the label says what kind of complaint it is (recorded with the inquiry).
_CUES: tuple[tuple[str, str], ...] = (
    # -- how the customer feels about the shop --------------------------------------------
    ("strong_word", r"最悪|さいあく|不愉快|不快|最低(?:な|です|でした|だ|すぎ|!)|ありえな|あり得な|信じられな|考えられな"),
    ("never_again", r"[二2]度と(?:行|い[かきくけ]|来|こな|きま|利用|買|か[わいう]|頼|たの|使|つか|注文|お願い|予約)"),
    ("anger", r"許せ|ゆるせ|腹が立|腹立|はらた|頭にき|頭に来|むかつ|むかむか|いらいら|激怒|怒っ|怒り|憤"),
    ("disappointed", r"がっかり|失望|幻滅|裏切ら"),
    ("rude", r"失礼(?:な|すぎ|だ(?:った|と思)|極まり)|無礼|横柄|高圧的|上から目線|偉そう|えらそう|不親切|不誠実|誠意(?:が|を)?(?:な|感じ|見せ)"),
    ("bad_manner", r"感じ(?:が)?(?:悪|わる)|態度(?:が|の|も)?(?:悪|わる|ひど|酷|最悪|冷た|つめた|でか|横柄|怖|こわ|失礼)|"
                   r"(?:愛想|口調|言い方|対応|接客|応対)(?:が|も)?(?:悪|わる|ひど|酷|雑|冷た|つめた|遅|おそ|いい加減|最悪|失礼|きつ|怖|こわ)"),
    ("bad_experience", r"(?:嫌|いや|不快)な(?:思い|気分|気持ち|感じ|顔|対応)|ひどい目|酷い目|傷つ(?:いた|きまし|けられ)"),
    ("mistreated", r"怒鳴|どなら|睨ま|にらま|舌打ち|ため息をつかれ|溜息をつかれ|馬鹿に|ばかに(?:され|する)|笑われ|無視(?:され|さ|した)|放置され|たらい回し"),
    # ひどい / 悪い / 雑 / 汚い ... about something the shop answers for, in one clause
    ("bad_thing", f"{_TARGET}{_SAME_CLAUSE}(?:ひど|酷|悪かった|悪すぎ|わるかった|雑(?:だ|で|な|すぎ)|いい加減|汚|きたな|臭|くさ(?:い|かった|くて)|"
                  r"まず(?:い|かった)|不味|最悪|冷た(?:い|かった|く)|つめた(?:い|かった|く)|遅(?:い|かった|すぎ|くて)|不十分|"
                  r"(?:わか|分か)りにく)"),
    ("bad_thing", r"(?:ひどい|酷い|雑な|いい加減な|最低な)(?:店|お店|会社|対応|接客|態度|扱い|商品|さーびす|仕上がり|仕事)"),
    ("noisy_dirty", r"(?:うるさ|汚|きたな|臭|くさ)(?:かった|くて|すぎ|いまま)|汚いまま|汚れたまま"),
    ("too_cold_hot", r"(?:部屋|へや|店内|館内|室内|院内|車内|会場|教室)(?:が|は)?[^。!?、]{0,6}?(?:寒|さむ|暑|あつ)(?:かった|くて|すぎ)"),
    ("slow", r"遅すぎ|おそすぎ|(?:待|ま)たされ(?:た|まし|て)|待たせすぎ|"
             r"(?:返信|返事|連絡|対応|回答)(?:が|も)(?:まだ|全然|ぜんぜん|一向に)?(?:遅|おそ|ない|なく|なか|来な|こな|来ませ|きませ|ありませ)"),
    ("broken_promise", r"(?:言って|いって|言われ|聞いて|きいて)(?:い)?た(?:のに|話と)|はずなのに|約束(?:した|だった)?のに|"
                       r"(?:説明|写真|話|画像|表示|記載)と(?:全然|ぜんぜん|全く|まったく|かなり|だいぶ)?違"),
    # -- what was received ------------------------------------------------------------------
    ("broken", r"(?:壊れ|こわれ|割れ|欠け|破損し|破れ|やぶれ|へこん|凹ん|ひび割れ|ひびが入っ|ひびがはいっ|傷がつい|傷が付い|傷つい|"
               r"取れかけ|ほつれ|穴があい|穴が開い|穴が空い|汚れ|よごれ)" + _DONE + r"|(?:傷|破損|汚れ|へこみ|凹み|ひび)が(?:あり|あっ)(?:ました|た)"),
    ("defective", r"不良品(?:でした|だった|が(?:届|混|入)|です(?!か))|初期不良|動かな(?:かった|くな)|(?:電源|すいっち)が(?:入らな|つかな|入りませ)|"
                  r"液漏れ|漏れて(?:い)?(?:た|まし)|中身が(?:漏|もれ|こぼ|出て)"),
    ("contaminated", r"(?:髪の毛|髪|虫|異物|毛|ごみ|ほこり|埃)が(?:入って(?:い)?(?:た|まし)|はいって(?:い)?(?:た|まし)|混入|混ざって(?:い)?(?:た|まし)|"
                     r"ついて(?:い)?(?:た|まし)|付いて(?:い)?(?:た|まし))|異物混入|腐って|くさって|かびが|食中毒|"
                     r"期限切れ(?:の(?:商品|もの|品)|だった|でした)|賞味期限が切れ(?:た|て(?:い)?(?:た|まし|る))"),
    ("wrong_item", r"(?:違う|ちがう|別の|間違った|まちがった)(?:商品|もの|物|色|いろ|さいず|品|の)が(?:届|とど|入|来|き)|"
                   r"注文(?:した(?:もの|商品|の)?)?と(?:違|ちが)|(?:商品|中身|数|個数)が(?:違|ちが|足りな|たりな|合わな)|"
                   r"(?:足りな|たりな)かった|入っていなかった|入ってなかった"),
    ("not_delivered", r"(?:経って|たって|待って|まって)も(?:まだ)?(?:届|とど|来|こ)(?:か|きませ|いてい?な|な)|全然(?:届|とど)(?:か|きませ)|"
                      r"いつまで(?:待|ま)て|いまだに届|未だに届|一向に届"),
    ("charged_wrong", r"二重(?:に)?(?:請求|引き落と|決済|課金)|(?:多く|余分に|勝手に)(?:請求|引き落と|課金)され|請求(?:額|金額)?が(?:違|おかし|間違)"),
    ("booking_lost", r"予約が(?:入って|取れて|とれて|通って)(?:い)?な(?:かった|い)"),
    ("reaction", r"(?:肌|顔|頭皮|皮膚|体)(?:が|に)?(?:荒れ|赤く|あかく|かぶれ|ただれ|腫れ|はれ|かゆく|痒く|ひりひり|ぶつぶつ|湿疹|発疹)" + _DONE
                 + r"|かぶれ(?:た|ました|ちゃ|てしま)|(?:肌|体質)に合わな(?:かった|くて)"),
    # -- what the customer wants done about it -------------------------------------------
    ("refund", r"返金(?:しろ|して(?:ほし|欲し|くださ|下さ|もらいた|いただきた|頂きた|くれ)|を(?:求め|要求|希望|お願い)|希望|してもらいます)|"
               r"お金を?返して|金返せ|払い戻(?:して(?:ほし|くださ|下さ)|しを(?:求め|要求))"),
    ("apology_demand", r"謝罪(?:しろ|して|を(?:求め|要求)|が(?:な|ありませ)|もな|の一言)|謝って(?:ほし|くださ|下さ|もら)|謝れ|あやまれ|一言も(?:謝|あやま)"),
    ("escalate", r"責任者|店長を出|上の(?:人|方|者)(?:を|と|に)|本社に(?:連絡|言|電話|報告)|消費者(?:生活)?せんたー|弁護士|訴え(?:る|ます)|訴訟|警察に|"
                 r"口コミに書|れびゅーに書|拡散"),
    ("complaint_word", r"苦情|くれーむ|不満(?:です|でした|がある|があります|が残|だ|を)|詐欺|騙さ|だまさ|嘘つき|うそつき|ぼったくり|"
                       r"迷惑(?:して|です|でした|だ|なん|極まり|を被)"),
)

# What makes a cue hypothetical, a policy question, or denied, when it follows the cue.
_NOT_AFTER = re.compile(
    r"^(?:たら|ても|(?:の|る|た)?(?:場合|とき|時は|時に|なら|ことは|ことが(?:あ|な)|ことって)|ような(?:気|こと)|"
    r"では(?:な|あり)|じゃな|かどうか|ないように|ないよう)"
)
# A cue in the past tense followed by ら is a conditional (壊れていた|ら); 怒鳴|られた is not.
_CONDITIONAL_RA = re.compile(r"^ら(?!しい)")
# A hypothetical before the cue: 「もし」「万が一」 ...
_NOT_BEFORE = re.compile(r"(?:もし|万が一|万一|仮に|例えば|もしも)[^。!?]{0,20}$")
_COMPILED = tuple((label, re.compile(pattern)) for label, pattern in _CUES)
# Fixed phrases that contain a cue but are no complaint (replaced before the cues are looked for).
_HARMLESS = re.compile(
    r"最悪の場合|最悪でも|最悪、|不快感(?:が出|がで|があれば|がある場合|を感じたら|が出たら)|失礼(?:します|しました|いたします|致します|ですが|ながら)|"
    r"くれーむ(?:では|じゃ)な|不満(?:はない|はありません|もない|もありません)|悪いけど|悪いんですが|悪いのですが|"
    r"ご迷惑(?:を)?おかけ|迷惑(?:を)?かけ(?:て|る|ちゃ|てしま|ない)|責任者の方(?:に|へ)?(?:よろしく|お伝え)"
)


@dataclass(frozen=True)
class Complaint:
    """Why a message was taken for a complaint: the labels of the cues found, and the
    text each matched (recorded with the inquiry, so staff see why)."""

    kinds: tuple[str, ...]
    matched: tuple[str, ...]


def complaint(text: str) -> Complaint | None:
    """The complaint in `text`, or None (see the module docstring)."""
    prepared = prepare(text)
    if not prepared:
        return None
    cleaned = _HARMLESS.sub("〓", prepared)
    kinds: list[str] = []
    matched: list[str] = []
    for label, pattern in _COMPILED:
        for found in pattern.finditer(cleaned):
            after = cleaned[found.end():]
            before = cleaned[: found.start()]
            if _NOT_AFTER.match(after) or _NOT_BEFORE.search(before):
                continue
            if found.group(0)[-1] in "ただ" and _CONDITIONAL_RA.match(after):
                continue
            if label not in kinds:
                kinds.append(label)
            matched.append(found.group(0))
            break
    if not kinds:
        return None
    return Complaint(tuple(kinds), tuple(matched))


# -- small talk ----------------------------------------------------------------------------

# Predicates of social talk (Sudachi normalised forms): weather, praise and thanks, how one
# feels, acknowledgements. A message is small talk when one of them (not negated) is its
# last content word, it asks nothing, and it is no complaint.
_SOCIAL = frozenset({
    # weather and seasons
    "暑い", "寒い", "涼しい", "暖かい", "温かい", "蒸し暑い", "肌寒い", "天気", "晴れ", "晴れる", "雨", "雪", "台風", "花粉",
    # praise, joy, thanks
    "良い", "凄い", "美味しい", "旨い", "最高", "素敵", "素晴らしい", "親切", "丁寧", "感動", "感謝", "好き", "大好き",
    "嬉しい", "楽しい", "楽しみ", "助かる", "有り難い", "可愛い", "奇麗", "綺麗", "満足", "幸せ", "安心", "楽", "快適",
    "気持ち良い", "良かった", "面白い", "格好良い", "上手", "流石", "ばっちり", "完璧", "分かり易い", "優しい",
    # how one is
    "眠い", "疲れる", "頑張る", "すく", "お疲れ様", "ご苦労様", "笑う", "ドキドキ", "わくわく",
    # acknowledgements and closings
    "了解", "承知", "分かる", "OK", "オーケー", "オッケー", "了承", "御免", "宜しい",
})
# 「また行きます」「また連絡します」: a closing, not a question.
_AGAIN = re.compile(r"また(?:[^。!?]{0,6})(?:行き|いき|行く|いく|来|き[まま]|くる|買|かい|かう|伺|うかが|寄|よら|よる|よりま|利用|連絡|れんらく|お願い|おねがい|来店|予約|注文|使)")
_SUFFIX_KINDS = frozenset({"suffix", "prefix", "det"})


def is_small_talk(text: str, analysis: Analysis) -> bool:
    """Social talk rather than a question (see the module docstring); `analysis` is the
    message's (analysis.get_analyzer().analyze). Call it for messages the FAQ did not
    answer and that are no complaint."""
    if not analysis.units:
        return True  # thanks, greetings, はい, emoji: nothing that carries a meaning
    if analysis.asks >= 1.0:
        return False  # a question or a request, however chatty
    content = [unit for unit in analysis.units if unit.kind not in _SUFFIX_KINDS]
    if not content:
        return True
    if any(unit.neg and unit.norm not in ("済む", "すむ") for unit in content):
        return False  # 「行けなくなって」「合わなかった」: something did not work out
    last = content[-1]
    if last.norm == "入る" and len(content) > 1 and content[-2].norm == "気":
        return True  # 気に入っています
    if last.kind == "light" and len(content) > 1 and last.norm in ("成る", "為る", "有る", "居る"):
        last = content[-2]  # 楽になりました
    if last.norm in _SOCIAL:
        return True
    return analysis.asks == 0.0 and _AGAIN.search(prepare(text)) is not None
