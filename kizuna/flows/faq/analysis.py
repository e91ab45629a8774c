"""Japanese analysis for FAQ matching: SudachiPy morphemes -> content units.

One Sudachi dictionary is loaded per process (lazily, under a lock) and shared
by every :class:`Analyzer`; each thread gets its own lightweight tokenizer
object (creating one costs microseconds, and Sudachi tokenizers are not meant
to be shared between threads).

A *content unit* is a word that carries meaning: nouns, verbs, adjectives,
adverbs ...  Text is tokenised in Sudachi's split mode C (``有効期限``) and
compounds are then split into their mode-A pieces (``有効``/``期限``, each
remembering the compound in ``comp``), so that ``期限`` matches ``有効期限``
and ``誕生日`` matches ``誕生月`` in part.  Each unit carries

* ``norm`` -- Sudachi's ``normalized_form`` (spelling variants and
  conjugations folded: ``使えます``->``使う``, ``詰替え``->``詰め替え``);
* ``syn`` -- Sudachi's synonym-group ids for the word (from the synonym
  dictionary built into SudachiDict: ``プレゼント``/``ギフト``/``贈り物`` share
  one group, ``送料``/``配送料`` another) -- a generic Japanese thesaurus, not a
  shop list -- plus a few generic *question concepts* (negative ids): an
  interrogative and the words naming what it asks (``いくら`` ~ ``料金``,
  ``いつまで`` ~ ``期限``, ``どう`` ~ ``方法``/``使い方``), the kind of value
  that answers it (``いつ`` ~ ``月曜``, ``どこ`` ~ a place name, ``何`` ~ a
  name such as ``PayPay``), possibility (``使えますか`` ~ ``できますか``) and
  ``アメリカ`` ~ ``海外``; and ~45 generic *customer-service concept*
  groups (ids from ``SERVICE_BASE`` down): the verbs customers use and the
  nouns FAQs use for one act or thing (``やめる`` ~ ``退会``/``解約``,
  ``割れる`` ~ ``破損``, ``赤ちゃん`` ~ ``子供``, ``セール`` ~ ``割引``) --
  the same for every kind of shop;
* ``alt`` -- the verb a noun is made from (``支払い`` -> ``支払う``);
* ``key`` -- the reading folded to hiragana (:func:`normalize.fold_kana`), for
  typo / hiragana-only matching;
* ``weight`` -- a prior for how much the word can tell one question from
  another, from its part of speech (a noun says more than ``できる``) and a
  short list of generic question-frame words (``教える``, ``方法``, ``大丈夫``);
* ``neg`` -- whether it is negated (``届きません``, ``使えない``).

The :class:`Analysis` also says whether the message *asks* anything
(:attr:`Analysis.asks`: a question or request, a bare casual predicate, or a
statement such as ``明日休みだー``), which the decision uses.  One frequent
Sudachi slip is corrected: hiragana ``あいてる``/``あいてます`` is read as
``会う`` although its te-form would be ``会って``; it is ``開く``.

Particles, auxiliaries, symbols, prefixes, interjections (greetings, thanks,
``はい``), numbers and empty light verbs (``する``, ``いる``) are not content
units -- which is what makes ``ありがとう``/``はい``/``😊`` contentless.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace

from .normalize import SENTENCE_BREAK, fold_kana, is_hiragana, is_kanji, is_katakana, normalize

__all__ = ["Unit", "Analysis", "Analyzer", "get_analyzer", "pos_prior", "QUESTION_TYPES", "SERVICE_BASE"]


@dataclass(frozen=True, slots=True)
class Unit:
    norm: str
    comp: str  # normalized form of the enclosing compound (mode C), "" if none
    syn: frozenset[int]
    key: str
    surface: str
    weight: float
    kind: str
    neg: bool
    begin: int
    end: int
    sentence: int
    # the verb a noun is made from (支払い -> 支払う, 詰め替え -> 詰め替える), ""
    alt: str = ""
    # derived (for fast comparisons)
    kana: bool = field(init=False, compare=False)  # surface written in kana only
    kanji: bool = field(init=False, compare=False)  # norm contains a kanji
    pure_kanji: bool = field(init=False, compare=False)  # norm is kanji only
    grams: frozenset[str] = field(init=False, compare=False)  # reading bigrams

    def __post_init__(self) -> None:
        sa = object.__setattr__
        sa(self, "kana", bool(self.surface) and all(is_hiragana(c) or is_katakana(c) or c == "ー" for c in self.surface))
        kj = [is_kanji(c) for c in self.norm]
        sa(self, "kanji", any(kj))
        sa(self, "pure_kanji", bool(kj) and all(kj))
        k = self.key
        sa(self, "grams", frozenset(k[i : i + 2] for i in range(len(k) - 1)) if len(k) > 1 else frozenset((k,)))


@dataclass(frozen=True, slots=True)
class Analysis:
    text: str  # normalised text that was tokenised (unit offsets refer to it)
    units: tuple[Unit, ...]
    n_sentences: int
    # morphemes that are interjections (greetings, thanks, はい ...) -- a
    # structural "social message" signal
    n_interjections: int = 0
    n_tokens: int = 0
    sentence_spans: tuple[tuple[int, int], ...] = field(default=())
    # does the message ask or request something?  1.0: a question mark, a
    # question particle (か, の?, かな, っけ), an interrogative (何, いつ,
    # どこ, いくら ...) or a request/wish (〜たい, 欲しい, 〜てください,
    # 教えて, お願い, できる/可能); 0.5: a bare casual predicate that may be
    # a question typed without "?" (駐車場ある, カード使える); 0.0: a
    # statement (明日休みだ, 気に入りました!).  Max over the sentences.
    asks: float = 0.0


# ---------------------------------------------------------------------------
# part-of-speech prior

# Verbs/adjectives Sudachi marks "非自立可能" (can be used as auxiliaries:
# する, ある, いる, なる, できる, もらう, くださる, いい, ない, ほしい ...) say
# little about *which* question is asked.
_LIGHT = 0.2


def pos_prior(pos: tuple[str, ...]) -> tuple[float, str]:
    """Weight in [0, 1] and a coarse kind for a Sudachi part of speech."""
    p0, p1, p2 = pos[0], pos[1], pos[2]
    if p0 == "名詞":
        if p1 == "数詞":
            return 0.0, "num"
        if p1 == "固有名詞":
            # names of places/people/brands: usually the *value* in a question
            # ("大阪に店ありますか"), not what it is about
            return 0.6, "proper"
        if p1 == "普通名詞":
            if p2 == "副詞可能":  # 今日, いくら, さっき, 他, 以上
                return 0.55, "noun"
            if p2 == "助数詞可能":  # 時間, 円, 月, ポイント
                return 0.8, "noun"
            return 1.0, "noun"
        if p1 == "助動詞語幹":
            return 0.0, "func"
        return 0.8, "noun"
    if p0 == "動詞":
        return (_LIGHT, "light") if p1 == "非自立可能" else (0.75, "verb")
    if p0 == "形容詞":
        return (_LIGHT, "light") if p1 == "非自立可能" else (0.6, "adj")
    if p0 == "形状詞":
        if p1 == "助動詞語幹":
            return 0.0, "func"
        return 0.5, "adj"
    if p0 == "副詞":
        return 0.35, "adv"
    if p0 == "代名詞":  # 何, どこ, いつ, これ
        return 0.3, "pron"
    if p0 == "連体詞":  # どの, この
        return 0.15, "det"
    if p0 == "接尾辞":
        if p1 == "名詞的":  # 用, 品, 代, 料, 中
            return 0.3, "suffix"
        return 0.0, "func"
    return 0.0, "func"


# Semantically empty light verbs (normalized forms): する, いる (as in ～ている),
# ござる.  They are dropped entirely; other 非自立可能 verbs (できる, ある,
# もらう ...) stay as low-weight units.
_EMPTY_VERBS = {"為る", "居る", "御座る", "致す"}

# Words that frame a question rather than say what it is about ("...の方法を
# 教えてください", "...は可能ですか", "...でも大丈夫ですか").  Generic Japanese,
# the same for every shop; they keep a small weight.
_FRAME_WORDS = {
    "教える": 0.2, "知る": 0.25, "聞く": 0.25, "尋ねる": 0.2, "伺う": 0.2, "頂く": 0.15,
    "願う": 0.15, "分かる": 0.25, "思う": 0.15, "考える": 0.25, "方法": 0.3, "やり方": 0.3,
    "仕方": 0.3, "可能": 0.2, "大丈夫": 0.3, "こと": 0.15, "物": 0.2, "もの": 0.15,
    "場合": 0.25, "件": 0.2, "質問": 0.25, "感じ": 0.15, "どう": 0.2, "何": 0.2,
    "よろしい": 0.1, "良い": 0.1, "平気": 0.3, "お願い": 0.15, "対応": 0.35,
}

# What a question asks for, across wordings: an interrogative and the nouns
# that name what it asks (いくら ~ 料金/値段, いつまで ~ 期限, どこ ~ 場所).
# Generic Japanese; matched like a synonym group (negative ids so they never
# collide with Sudachi's group ids).
PRICE, DEADLINE, TIME, PLACE, DURATION, AGE, HOW, CAN, ABROAD, WHEN, ENTITY = range(-1, -12, -1)
_CONCEPT_NOUNS = {
    "料金": PRICE, "値段": PRICE, "価格": PRICE, "費用": PRICE, "代金": PRICE, "金額": PRICE, "会費": PRICE,
    "月額": PRICE, "幾ら": PRICE, "何円": PRICE,
    "期限": DEADLINE, "締め切り": DEADLINE, "締切": DEADLINE, "期日": DEADLINE, "有効期限": DEADLINE,
    "何時": TIME, "時間": TIME, "時刻": TIME, "開店": TIME, "閉店": TIME,
    "どこ": PLACE, "何処": PLACE, "場所": PLACE, "所在地": PLACE, "住所": PLACE, "位置": PLACE,
    "行き方": PLACE, "アクセス": PLACE, "最寄り": PLACE,
    "何日": DURATION, "何分": DURATION, "何時間": DURATION, "日数": DURATION, "所要時間": DURATION,
    "期間": DURATION,
    "何歳": AGE, "年齢": AGE, "歳": AGE, "才": AGE,
    "方法": HOW, "やり方": HOW, "仕方": HOW, "手順": HOW, "どう": HOW, "如何": HOW,
    "出来る": CAN, "可能": CAN,
    "海外": ABROAD, "外国": ABROAD, "国外": ABROAD,
    # a question word and the kind of value that answers it: いつ ~ 月曜,
    # 何時 ~ 朝, いくら ~ 円, 何 ~ a name (PayPay), どこ ~ a place name (大阪)
    "いつ": WHEN, "何曜日": WHEN, "曜日": WHEN,
    "月曜": WHEN, "火曜": WHEN, "水曜": WHEN, "木曜": WHEN, "金曜": WHEN, "土曜": WHEN, "日曜": WHEN,
    "土日": WHEN, "週末": WHEN, "平日": WHEN, "祝日": WHEN, "祭日": WHEN, "休日": WHEN, "年末": WHEN,
    "年始": WHEN, "年末年始": WHEN, "正月": WHEN, "連休": WHEN, "今日": WHEN, "明日": WHEN,
    "明後日": WHEN, "今週": WHEN, "来週": WHEN, "今月": WHEN, "来月": WHEN,
    "朝": TIME, "昼": TIME, "夜": TIME, "夕方": TIME, "午前": TIME, "午後": TIME, "午前中": TIME,
    "円": PRICE, "何": ENTITY,
}
# Near-synonyms of customer service, the same for every kind of shop: the
# verbs customers use and the nouns FAQs use for one act or thing (やめたい ~
# 退会, 割れて届いた ~ 破損, 赤ちゃん連れ ~ 子供連れ).  Generic Japanese, not
# any shop's vocabulary; a word may sit in several groups.  Matched like a
# Sudachi synonym group.  (Normalised forms, as Sudachi gives them.)
_SERVICE_GROUPS: tuple[tuple[str, ...], ...] = (
    ("退会", "解約", "脱退", "辞める", "止める", "やめる", "解除", "削除"),  # quit a membership/contract
    ("会員", "アカウント", "メンバー"),  # a member and their account
    ("停止", "中止", "止める", "やめる", "ストップ", "オフ", "止まる"),  # stop something
    ("変更", "変える", "替える", "換える", "切り替える", "切り替え", "修正", "変わる"),
    ("キャンセル", "取り消す", "取り消し", "取り止める", "取りやめ"),
    ("入会", "加入", "申し込む", "申し込み", "登録", "入る"),
    ("支払い", "支払う", "払う", "決済", "会計", "精算", "支払", "後払い", "代引き", "代金引換", "クレジットカード",
     "振り込み", "振り込む", "口座振替", "引き落とし", "分割払い", "コンビニ払い", "現金", "クレカ"),
    ("破損", "割れる", "壊れる", "欠ける", "傷", "漏れる", "不良", "故障", "皹", "破れる", "汚れ", "穴", "ほつれ",
     "ほつれる", "染み", "不具合", "欠陥", "初期不良"),
    ("忘れ物", "忘れる", "落とし物", "落とす", "紛失", "無くす", "なくす", "置き忘れ"),
    ("遅れる", "遅刻", "遅延", "間に合う"),
    ("体験", "試す", "試し", "試用", "トライアル", "見学", "試着", "フィッティング"),
    ("割り引き", "値引き", "割", "セール", "特価", "値下げ", "安い", "オフ", "お得"),
    ("子供", "赤ちゃん", "赤ん坊", "幼児", "乳児", "キッズ", "子連れ", "小学生", "未就学児"),
    ("送る", "発送", "配送", "届ける", "配達", "送付", "出荷", "送料"),
    ("届く", "到着", "着く", "配達", "配送"),
    ("返品", "返す", "返却", "返金", "返送"),
    ("交換", "取り替える", "取り換える", "取り替え"),
    ("問い合わせ", "問い合わせる", "連絡", "電話", "相談", "窓口", "連絡先", "カスタマーセンター", "サポート"),
    ("営業", "開く", "開店", "開ける", "オープン", "閉店", "閉まる", "遣る"),  # 何時までやってる
    ("休み", "休む", "定休日", "休業", "休館", "休診", "定休", "休日", "休店"),
    ("服装", "服", "格好", "ドレスコード", "身なり", "ドレス"),
    ("家族", "夫婦", "親子", "兄弟", "姉妹", "夫", "妻"),
    ("ペット", "犬", "猫", "動物"),
    ("駐車場", "駐車", "パーキング", "車"),
    ("喫煙", "タバコ", "吸う", "禁煙", "電子タバコ"),
    ("領収書", "レシート", "領収証"),
    ("電源", "充電", "コンセント"),
    ("宴会", "飲み会", "忘年会", "新年会", "送別会", "歓迎会", "打ち上げ", "パーティー"),
    ("ベジタリアン", "ヴィーガン", "菜食"),
    ("持ち物", "持参", "持つ", "持っていく"),
    ("初心者", "未経験", "初めて", "初回", "初めての方"),
    ("店", "店舗", "店頭", "直営店"),
    ("料金", "値段", "価格", "代金", "費用", "金額", "幾ら", "高い", "安い"),
    ("ログイン", "サインイン", "パスワード", "暗証番号"),  # getting into one's account
    ("商品", "品物", "製品", "荷物", "注文品", "容器", "ボトル", "箱", "中身", "パッケージ"),  # the goods
    ("注文", "頼む", "オーダー", "発注", "購入", "買う"),  # ordering
    ("併用", "一緒", "同時", "重ねる", "組み合わせる", "組み合わせ"),  # using two offers together
    ("在庫", "売り切れ", "品切れ", "欠品", "入荷", "再入荷", "完売"),  # stock
    ("配信", "通知", "お知らせ", "メルマガ", "メールマガジン", "ダイレクトメール", "メッセージ"),  # messages from the shop
    ("素材", "生地", "材質", "原材料", "原料", "材料", "成分", "添加物", "保存料"),  # what a product is made of
    ("保存", "保管", "冷蔵", "冷蔵庫", "冷凍庫", "常温", "冷暗所"),  # keeping a product
    ("洗濯", "洗う", "手入れ", "クリーニング"),  # care
    ("ラッピング", "包装", "包む", "熨斗", "のし"),  # gift wrapping
    ("取り置き", "取り置く", "キープ", "確保"),  # keep an item for a customer
)
SERVICE_BASE = -100
_SERVICE_OF: dict[str, frozenset[int]] = {}
for _i, _g in enumerate(_SERVICE_GROUPS):
    for _w in _g:
        _SERVICE_OF[_w] = _SERVICE_OF.get(_w, frozenset()) | {SERVICE_BASE - _i}

# concepts that say what kind of answer a question wants
QUESTION_TYPES = frozenset({PRICE, DEADLINE, TIME, PLACE, DURATION, AGE, HOW, CAN, WHEN})
_U_ROW = set("うくぐすつぬぶむる")
# interrogative compounds kept whole (not split into 何 + 日)
_INTERROGATIVES = {"何日", "何分", "何時間", "何歳", "何円", "何時", "幾ら", "どこ", "何処"}

# verbs that are part of a compound particle after に (について, によって, に関して, に対して)
_PARTICLE_VERBS = {"つく", "付く", "就く", "よる", "因る", "依る", "関する", "対する"}

# auxiliaries whose presence negates the preceding predicate
_NEG_AUX = {"ない", "ず", "ぬ", "無い"}


# ---------------------------------------------------------------------------
# shared dictionary

_dict_lock = threading.Lock()
_dictionary = None


def _get_dictionary():
    global _dictionary
    if _dictionary is None:
        with _dict_lock:
            if _dictionary is None:
                from sudachipy import Dictionary  # local import: slow-ish

                _dictionary = Dictionary(dict="core")
    return _dictionary


class Analyzer:
    """Text -> :class:`Analysis`.  Thread-safe (one tokenizer per thread)."""

    def __init__(self, dictionary=None) -> None:
        self._dict = dictionary if dictionary is not None else _get_dictionary()
        self._local = threading.local()
        from sudachipy import SplitMode

        self._mode_a = SplitMode.A
        self._mode_c = SplitMode.C

    def _tokenizer(self):
        tok = getattr(self._local, "tok", None)
        if tok is None:
            tok = self._dict.tokenizer(mode=self._mode_c)
            self._local.tok = tok
        return tok

    def _how_to(self, m, surface: str):
        """``使い方``/``洗い方`` (verb stem + 方, "how to X") -> the verb X plus
        a "how" piece, so that ``どう使うの`` matches ``使い方``."""
        if len(surface) < 3 or surface[-1] != "方":
            return None
        stem = surface[:-1]
        for cand in self._dict.lookup(stem):
            pos = cand.part_of_speech()
            if pos[0] == "動詞":
                b, e = m.begin(), m.end()
                verb = _Piece(cand.normalized_form(), frozenset(cand.synonym_group_ids()),
                              fold_kana(cand.reading_form() or stem), stem, b, e - 1)
                how = _Piece("方", frozenset({HOW}), "かた", "方", e - 1, e)
                return [(verb, 0.6, "verb", frozenset()), (how, 0.3, "suffix", frozenset())]
        return None

    def _with_alt(self, u: Unit) -> Unit:
        """Nouns made from verbs (連用形名詞) also match that verb."""
        if u.kind != "noun" or u.alt or not any(is_hiragana(c) for c in u.surface):
            return u
        for probe in (u.surface, u.norm + "る"):
            for cand in self._dict.lookup(probe):
                if cand.part_of_speech()[0] == "動詞":
                    return replace(u, alt=cand.normalized_form())
        return u

    def _remerge(self, units: list[Unit]) -> list[Unit]:
        """Undo context-dependent splits: ``忘れ物しちゃった`` is tokenised
        ``忘れ|物`` (verb + noun) while ``忘れ物を`` gives the noun ``忘れ物``.
        Two adjacent pieces, one of them weak, whose concatenation is a noun
        of the dictionary become that noun."""
        if len(units) < 2:
            return units
        out: list[Unit] = []
        i = 0
        while i < len(units):
            a = units[i]
            if i + 1 < len(units) and _merge_candidate(a, units[i + 1]):
                b = units[i + 1]
                merged = None
                for mm in self._dict.lookup(a.surface + b.surface):
                    pos = mm.part_of_speech()
                    w, k = pos_prior(pos)
                    if pos[0] == "名詞" and k == "noun" and w >= 0.5:
                        nf = mm.normalized_form()
                        merged = Unit(
                            norm=nf, comp="", syn=frozenset(mm.synonym_group_ids()),
                            key=fold_kana(mm.reading_form() or mm.surface()), surface=a.surface + b.surface,
                            weight=_FRAME_WORDS.get(nf, w), kind=k, neg=a.neg or b.neg, begin=a.begin, end=b.end,
                            sentence=a.sentence,
                        )
                        break
                if merged is not None:
                    out.append(merged)
                    i += 2
                    continue
            out.append(a)
            i += 1
        return out

    def analyze(self, text: str, *, normalized: bool = False) -> Analysis:
        t = text if normalized else normalize(text)
        if not t:
            return Analysis(text="", units=(), n_sentences=0)
        morphemes = self._tokenizer().tokenize(t)
        units: list[Unit] = []
        sentence = 0
        sent_start = 0
        tok_since_break = 0
        spans: list[tuple[int, int]] = []
        n_inter = 0
        n_tok = 0
        pending_neg_target: int | None = None  # index in units of last predicate
        asks = 0.0
        sent_toks: list[tuple[str, str, str, str]] = []
        n_morphemes = len(morphemes)
        for mi, m in enumerate(morphemes):
            surface = m.surface()
            pos = m.part_of_speech()
            p0 = pos[0]
            if p0 == "空白":
                continue
            if p0 == "補助記号" or p0 == "記号":
                if surface == "?":
                    sent_toks.append((p0, pos[1], "?", "?"))
                if surface and surface[0] in SENTENCE_BREAK:
                    if tok_since_break:
                        spans.append((sent_start, m.end()))
                        sentence += 1
                        tok_since_break = 0
                    sent_start = m.end()
                    asks = max(asks, _sentence_asks(sent_toks))
                    sent_toks = []
                pending_neg_target = None
                continue
            tok_since_break += 1
            sent_toks.append((p0, pos[1], m.normalized_form(), surface))
            if p0 == "助詞" and units and units[-1].end == m.begin():
                last = units[-1]
                if surface == "まで" and last.norm == "いつ":
                    units[-1] = replace(last, syn=last.syn | {DEADLINE}, weight=0.5)
                elif surface in ("くらい", "ぐらい", "位") and last.norm in ("どの", "どれ", "何"):
                    units[-1] = replace(last, syn=last.syn | {DURATION}, weight=0.5)
            n_tok += 1
            if p0 == "感動詞":
                n_inter += 1
                continue
            norm = m.normalized_form()
            if p0 == "動詞" and norm in _PARTICLE_VERBS and mi > 0 and morphemes[mi - 1].surface() == "に" and (
                    norm in ("関する", "対する")
                    or mi + 1 < n_morphemes and morphemes[mi + 1].surface()[:1] in ("て", "き")):
                # について, によって, に関して/に関する, に対して: a compound particle ("about", "by"),
                # not the verbs つく/よる
                continue
            if p0 == "助動詞" and norm in _NEG_AUX or (
                p0 == "形容詞" and norm in _NEG_AUX and pos[1] == "非自立可能"
            ):
                if pending_neg_target is not None:
                    u = units[pending_neg_target]
                    units[pending_neg_target] = _replace_neg(u)
                    pending_neg_target = None
                continue
            if p0 == "助動詞" and norm in ("れる", "られる") and units and units[-1].kind in ("verb", "light"):
                # 借りられますか: possibility (or passive) of the preceding verb
                units.append(_can_unit(m, sentence))
                continue
            if p0 == "動詞" and norm == "見る" and pos[1] == "非自立可能" and mi > 0 \
                    and morphemes[mi - 1].surface() in ("て", "で") and units and units[-1].kind == "verb":
                # 着てみたい, 使ってみたい: V-てみる is trying V (~ 試着, お試し)
                units[-1] = replace(units[-1], syn=units[-1].syn | _SERVICE_OF["試す"])
            opened = False
            if p0 == "動詞" and (norm == "あく" or norm in ("会う", "合う", "あう") and surface == "あい"
                                and mi + 1 < n_morphemes and morphemes[mi + 1].surface()[:1] == "て"):
                # あいてる / あいてます: 会う's te-form is 会って, so this is
                # 開いてる (open) or 空いてる (free), which Sudachi misreads
                m = _Override(m, "開く")
                norm = "開く"
                opened = True
            weight, kind = pos_prior(pos)
            if opened:
                weight, kind = 0.75, "verb"
            if kind == "light" and norm in _EMPTY_VERBS:
                continue
            if m.is_oov():
                weight, kind = _oov_prior(surface)
            if weight <= 0.0:
                continue
            if norm in _INTERROGATIVES:
                weight, kind = 0.5, "pron"
            subs = m.split(self._mode_a) if len(surface) > 1 and kind not in ("light", "pron") else None
            how = self._how_to(m, surface) if kind == "noun" else None
            if how is not None:
                comp = norm
                pieces = how
            elif subs is not None and len(subs) > 1:
                comp = norm
                csyn = frozenset(m.synonym_group_ids())
                pieces = []
                for a in subs:
                    aw, ak = pos_prior(a.part_of_speech())
                    if aw <= 0.0:
                        continue
                    # a piece of a compound says less than a word of its own,
                    # a one-character piece (日, 月, 書) much less
                    aw *= 0.8 if len(a.surface()) >= 2 else 0.45
                    pieces.append((a, aw, ak, csyn))
                if not pieces:  # e.g. all parts are numbers/prefixes
                    pieces = [(m, weight, kind, frozenset())]
                    comp = ""
            else:
                comp = ""
                pieces = [(m, weight, kind, frozenset())]
            for a, aw, ak, csyn in pieces:
                if isinstance(a, _Piece):
                    units.append(
                        Unit(norm=a.norm, comp=comp, syn=a.syn, key=a.key, surface=a.surface, weight=aw, kind=ak,
                             neg=False, begin=a.begin, end=a.end, sentence=sentence)
                    )
                    continue
                an = a.normalized_form()
                aw = _FRAME_WORDS.get(an, aw)
                concepts = {c for c in (_CONCEPT_NOUNS.get(an), _CONCEPT_NOUNS.get(comp)) if c is not None}
                concepts |= _SERVICE_OF.get(an, frozenset())
                if comp:
                    concepts |= _SERVICE_OF.get(comp, frozenset())
                if DEADLINE in concepts:
                    concepts.add(DURATION)  # 使用期限 answers "どのくらい使える"
                if pos[1] == "固有名詞":
                    if pos[2] == "地名":
                        if pos[3] == "国" and an != "日本":
                            concepts.add(ABROAD)  # アメリカ, 韓国 ... ~ 海外
                        else:
                            concepts.add(PLACE)  # 大阪 ~ どこ
                    elif pos[2] in ("一般", "組織") or not any(is_kanji(c) or is_hiragana(c) for c in a.surface()):
                        concepts.add(ENTITY)  # PayPay ~ 何; ペイペイ (tagged a person's name) too
                units.append(
                    Unit(
                        norm=an,
                        comp=comp,
                        syn=frozenset(a.synonym_group_ids()) | csyn | frozenset(concepts),
                        key=fold_kana(a.reading_form() or a.surface()),
                        surface=a.surface(),
                        weight=aw,
                        kind=ak,
                        neg=False,
                        begin=a.begin(),
                        end=a.end(),
                        sentence=sentence,
                    )
                )
            # a following ない/ません negates the nearest predicate
            pending_neg_target = len(units) - 1
            if p0 == "動詞" and _is_potential(m):
                units.append(_can_unit(m, sentence))
        if tok_since_break:
            spans.append((sent_start, len(t)))
        if sent_toks:
            asks = max(asks, _sentence_asks(sent_toks))
        units = self._remerge(units)
        units = [self._with_alt(u) for u in units]
        return Analysis(
            text=t,
            units=tuple(units),
            n_sentences=max(1, len(spans)),
            n_interjections=n_inter,
            n_tokens=n_tok,
            sentence_spans=tuple(spans),
            asks=asks,
        )


_Q_PARTICLES = {"か", "かな", "かしら", "け", "っけ", "の", "かね"}
_INTERROG = {"何", "どこ", "何処", "いつ", "何時", "誰", "どれ", "どちら", "どっち", "幾ら", "どう", "如何", "何故",
             "どの", "どんな", "何日", "何分", "何時間", "何歳", "何円", "何曜日", "何人", "幾つ", "どうして", "なぜ"}
_REQUEST_VERBS = {"下さる", "頂く", "貰う", "教える", "願う", "頼む"}
_WISH = {"たい", "欲しい"}
_CAN = {"出来る", "可能"}
# "later": また連絡します, 後ほど伺います -- the customer will act, nothing is asked now
_LATER = {"また", "又", "後で", "あとで", "後ほど", "のちほど", "改めて", "あらためて"}
# sentence-final material that does not decide statement vs question
_TAIL_FILLERS = {"ね", "よ", "な", "わ", "ぞ", "さ", "ー"}


def _sentence_asks(toks: list[tuple[str, str, str, str]]) -> float:
    """``toks``: (pos0, pos1, normalized form, surface) of one sentence,
    symbols excluded except ``?``.  See :attr:`Analysis.asks`."""
    if not toks:
        return 0.0
    for k, (p0, p1, norm, surf) in enumerate(toks):
        if surf == "?":
            return 1.0
        if norm == "分かる" and any(t[2] in ("ない", "ぬ", "ず") for t in toks[k + 1 : k + 4]):
            return 1.0  # 使い方がわからない / 場所がわかりません: asking in effect
        if norm in _INTERROG and p0 in ("代名詞", "副詞", "名詞", "連体詞"):
            return 1.0
        if p0 == "助動詞" and norm in _WISH or p0 == "形容詞" and norm in _WISH:
            return 1.0
        if p0 == "動詞" and norm in _REQUEST_VERBS:
            return 1.0
        if norm in _CAN:
            return 1.0
        if p0 == "助動詞" and norm in ("れる", "られる"):
            return 1.0
    body = [t for t in toks if t[2] not in _TAIL_FILLERS]
    if not body:
        return 0.0
    p0, p1, norm, surf = body[-1]
    if p0 == "助詞" and p1 == "終助詞" and norm in _Q_PARTICLES:
        return 1.0
    if p0 == "助動詞" and norm == "ます" and len(body) >= 2 and body[-2][0] == "動詞":
        if any(t[3] in _LATER for t in body):
            return 0.0  # また連絡します / 後でかけ直します: closing the conversation, not asking
        return 0.5  # 退会します / 予約します: a declared intent, a request in effect
    if p0 == "助動詞" and norm in ("た", "だ", "です", "ます", "ない", "ず", "う", "よう", "まい"):
        return 0.0  # 届きました / 休みだ / 楽しみです: a statement
    if p0 == "助詞" and p1 == "接続助詞" and norm in ("けれど", "が", "けど", "のに", "て", "ので", "から"):
        return 0.5  # 届かないんだけど / 予約したいのですが: trailing off = an implicit request
    if p0 == "形容詞" and p1 != "非自立可能":
        return 0.25  # 猫かわいい / 暑い: usually an opinion, sometimes a question (送料高い?)
    if p0 in ("動詞", "形容詞") or p0 == "助詞" and p1 in ("副助詞", "係助詞"):
        return 0.5  # 駐車場ある / 予約って? / 送料は
    if p0 in ("名詞", "接尾辞") and not any(t[0] in ("動詞", "形容詞", "助動詞") for t in body):
        return 0.5  # 営業時間 / 休会の手続き (a topic typed alone)
    return 0.0


class _Override:
    """A morpheme with a corrected normalised form (everything else as is)."""

    __slots__ = ("_m", "_norm")

    def __init__(self, m, norm: str) -> None:
        self._m, self._norm = m, norm

    def normalized_form(self) -> str:
        return self._norm

    def dictionary_form(self) -> str:
        return self._norm

    def reading_form(self) -> str:
        return self._m.reading_form()

    def split(self, mode):
        return [self]

    def __getattr__(self, name):
        return getattr(self._m, name)


@dataclass(frozen=True, slots=True)
class _Piece:
    norm: str
    syn: frozenset[int]
    key: str
    surface: str
    begin: int
    end: int


def _is_potential(m) -> bool:
    """使える/行ける/吸える: Sudachi normalises a potential verb to its base
    verb (使う); the dictionary form keeps the potential."""
    d, n = m.dictionary_form(), m.normalized_form()
    return (
        d != n and len(d) >= 2 and len(n) >= 2 and d[-1] == "る" and n[-1] in _U_ROW
        and d[:-2] == n[:-1] and d[-2] in "えけげせてねべめれ"
    )


def _can_unit(m, sentence: int) -> Unit:
    return Unit(norm="<可能>", comp="", syn=frozenset({CAN}), key="", surface="", weight=0.2, kind="light",
                neg=False, begin=m.end(), end=m.end(), sentence=sentence)


def _merge_candidate(a: Unit, b: Unit) -> bool:
    return (
        a.end == b.begin
        and a.sentence == b.sentence
        and min(a.weight, b.weight) < 0.5
        and not (a.comp and a.comp == b.comp)
        and len(a.surface) + len(b.surface) <= 8
    )


def _replace_neg(u: Unit) -> Unit:
    return replace(u, neg=True)


def _oov_prior(surface: str) -> tuple[float, str]:
    """Unknown words: latin/katakana/kanji strings are probably names or
    product words; stray hiragana fragments are probably tokenisation debris
    of casual spelling."""
    if any(is_kanji(c) or is_katakana(c) or c.isalnum() and c.isascii() for c in surface):
        return 0.6, "proper"
    if all(is_hiragana(c) for c in surface):
        return 0.3, "oov"
    return 0.3, "oov"


_shared_lock = threading.Lock()
_shared: Analyzer | None = None


def get_analyzer() -> Analyzer:
    """The process-wide analyzer (loads the Sudachi dictionary once)."""
    global _shared
    if _shared is None:
        with _shared_lock:
            if _shared is None:
                _shared = Analyzer()
    return _shared
