"""Generated texts with the phone and card formats of issue 21, and near misses, for bench/pii_eval.py.

The shared PII corpus holds almost none of these formats (mainland mobiles with 0086, landlines
with an area code in parentheses, extensions, international numbers with 00, 12- and 19-digit
cards), so recall on them is measured here as well: English and Chinese sentence templates written
for this benchmark, filled with generated values. Every gold phone number is valid by
``phonenumbers`` (its extension aside) and every gold card passes Luhn and has the issuer prefix and
length of its scheme; the near misses (11-digit order numbers outside the mobile ranges, cards
failing Luhn, dates, product codes) are texts without gold spans, so they count against precision.

Split: templates are in ``dev`` or ``test`` by the SHA-256 of their text (as the corpus texts by
their id), and the values are drawn with a different seed per split; tune on dev only.
"""

from __future__ import annotations

import hashlib
import random

import phonenumbers
from phonenumbers import PhoneNumberFormat as Fmt

# ------------------------------------------------------------------ templates ({v}: the value)

PHONE_EN = [
    "Call me at {v} after six.",
    "Phone: {v}",
    "For support dial {v}.",
    "You can reach our office on {v} during the week.",
    "Her number is {v}, not the old one.",
    "Contact the desk at {v} or write to us.",
    "Tel. {v} (reception)",
    "Questions? Ring {v} and ask for Dana.",
    "Our hotline {v} is open 24/7.",
    "Leave a message on {v} if nobody answers.",
    "Mobile: {v}",
    "The agency can be reached at {v}.",
]
PHONE_ZH = [
    "联系电话：{v}",
    "请拨打{v}咨询详情。",
    "客服热线{v}，工作日9:00-18:00。",
    "手机{v}（微信同号）",
    "如有疑问请致电{v}。",
    "我的手机号是{v}，有事找我。",
    "办公室电话{v}，欢迎来电。",
    "报名请联系王老师{v}。",
    "订票热线：{v}",
    "详情可拨{v}了解",
    "联系人：李先生 {v}",
    "商务合作请洽{v}。",
]
CARD_EN = [
    "Paid with card {v} yesterday.",
    "Card number: {v}",
    "The refund goes to {v} within five days.",
    "Please charge {v} for the deposit.",
    "My debit card {v} was declined.",
    "Use the card ending in {v} next time.",
]
CARD_ZH = [
    "银行卡号：{v}",
    "用卡{v}支付了订单。",
    "退款将退回原卡{v}。",
    "请把钱转到{v}这张卡上。",
    "我的银联卡{v}已挂失。",
    "收款账户卡号{v}，户名张三。",
]
#: texts without PII: numbers that look like phones or cards and are not
NEAR_MISS = [
    "Order number {order} shipped on {date}.",
    "订单号：{order}，下单时间{date}。",
    "tracking no. {order} arrives {date}",
    "Ref {ref} was filed on {date}.",
    "型号：{mobile}，请核对后下单。",
    "product code {mobile}-{letter} is sold out",
    "SKU {ref}-{letter}{letter} restocked",
    "card {badcard} declined (checksum)",
    "卡号{badcard}无效，请重新输入。",
    "The log runs from {date} {time} to {date} {time}.",
    "Version {ver} was released on {date}.",
    "价格{price}元，库存{stock}件。",
    "Population rose to {pop} in {year}.",
    "会议于{date}在3号楼举行，共{stock}人参加。",
    "Screens of 1920x1080 and 3840x2160 pixels, ext. {small} cables.",
    "ISBN 978-{isbn} is out of print.",
]

_CN_AREAS = ["10", "20", "21", "22", "23", "24", "25", "27", "28", "29", "755", "571", "512", "532", "731",
             "591", "871", "351", "769", "757", "311", "431", "451", "371"]
_INTL_REGIONS = ["GB", "DE", "FR", "IT", "ES", "NL", "CH", "AU", "IN", "JP", "KR", "SG", "HK", "TW", "BR", "MX",
                 "SE", "PL", "ZA", "IE", "AT", "BE", "NZ", "US"]
_EXT_EN = [" x{e}", "x{e}", " ext. {e}", " ext {e}", ", ext. {e}", " extension {e}", " Ext. {e}"]
_EXT_ZH = ["分机{e}", "转{e}", " 转 {e}", "-{e}", "分机 {e}", "轉{e}"]


def split_of_template(t: str) -> str:
    return "dev" if hashlib.sha256(t.encode("utf-8")).digest()[0] % 2 == 0 else "test"


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def _valid(rng: random.Random, make) -> phonenumbers.PhoneNumber:
    for _ in range(2000):
        n = make()
        if n is not None and phonenumbers.is_valid_number(n):
            return n
    raise RuntimeError("no valid number drawn in 2000 tries")


def _parse(s: str) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(s, None)
    except phonenumbers.NumberParseException:
        return None


def cn_mobile(rng: random.Random) -> str:
    n = _valid(rng, lambda: _parse("+86" + rng.choice(["13", "15", "17", "18", "19"]) + _digits(rng, 9)))
    d = str(n.national_number)
    return rng.choice([
        d, "+86" + d, "+86 " + d, "0086" + d, "0086 " + d, "(+86)" + d, f"{d[:3]} {d[3:7]} {d[7:]}",
        f"{d[:3]}-{d[3:7]}-{d[7:]}", f"+86 {d[:3]} {d[3:7]} {d[7:]}", f"+86-{d[:3]}-{d[3:7]}-{d[7:]}",
    ])


def cn_landline(rng: random.Random) -> str:
    def make():
        area = rng.choice(_CN_AREAS)
        local = rng.choice("2345678") + _digits(rng, 7 if len(area) == 2 or rng.random() < 0.7 else 6)
        return _parse("+86" + area + local)

    n = _valid(rng, make)
    nat = phonenumbers.format_number(n, Fmt.NATIONAL)  # "010 6552 9988"
    area, local = nat.split(" ", 1)
    flat = local.replace(" ", "")
    return rng.choice([
        f"{area}-{flat}", f"{area} {local}", f"{area}-{local}", f"({area}) {flat}", f"({area}){flat}",
        f"（{area}）{flat}", f"（{area}）{local}", f"+86 {area[1:]} {local}", f"+86-{area[1:]}-{flat}",
        f"0086 {area[1:]} {flat}", f"86-{area[1:]}-{flat}",
    ])


def _near_example(rng: random.Random, region: str, typ) -> phonenumbers.PhoneNumber:
    """``region``'s example number of ``typ`` with its last 4 digits drawn until it is valid."""
    ex = phonenumbers.example_number_for_type(region, typ)
    nat = phonenumbers.national_significant_number(ex)  # (Italian numbers keep their leading 0)
    keep = max(2, len(nat) - 4)
    return _valid(rng, lambda: _parse(f"+{ex.country_code}{nat[:keep]}{_digits(rng, len(nat) - keep)}"))


def intl(rng: random.Random, plus: bool) -> str:
    region = rng.choice(_INTL_REGIONS)
    typ = rng.choice([phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE])
    n = _near_example(rng, region, typ)
    s = phonenumbers.format_number(n, Fmt.INTERNATIONAL)  # "+44 20 7946 0958"
    if plus:
        return rng.choice([s, s.replace(" ", "-", 1), s.replace(" ", "")])
    body = s[1:]
    return rng.choice(["00" + body, "00 " + body, "00" + body.replace(" ", "-"), "00" + body.replace(" ", "")])


def with_ext(rng: random.Random, zh: bool) -> str:
    e = _digits(rng, rng.randint(2, 5)).lstrip("0") or "7"
    if zh:
        base = cn_landline(rng)
        while not base.startswith(("0", "(", "（")) or "-" in base[4:] or base.startswith("0086"):
            base = cn_landline(rng)
        return base + rng.choice(_EXT_ZH).format(e=e)
    n = _near_example(rng, rng.choice(["US", "GB", "DE", "AU"]), phonenumbers.PhoneNumberType.FIXED_LINE)
    base = phonenumbers.format_number(n, rng.choice([Fmt.NATIONAL, Fmt.INTERNATIONAL]))
    return base + rng.choice(_EXT_EN).format(e=e)


def _luhn_complete(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


_SCHEMES = [  # (prefixes, lengths)
    (["5018", "5020", "5038", "5893", "6304", "6759", "6761", "6762", "6763", "5612", "5700"], [12, 13, 16, 18, 19]),
    (["62"], [16, 17, 18, 19]),
    (["4"], [16, 19]),
    (["51", "52", "53", "54", "55", "2221", "2720"], [16]),
]


def card(rng: random.Random, valid: bool = True) -> str:
    prefixes, lengths = rng.choice(_SCHEMES)
    p = rng.choice(prefixes)
    n = rng.choice(lengths)
    d = _luhn_complete(p + _digits(rng, n - len(p) - 1))
    if not valid:
        d = d[:-1] + str((int(d[-1]) + rng.randint(1, 9)) % 10)
    if n == 12 or rng.random() < 0.7:
        sep = rng.choice([" ", "-"])
        d = sep.join(d[i:i + 4] for i in range(0, n, 4))
    return d


def _fill(rng: random.Random, t: str) -> str:
    def order() -> str:  # 11-12 digits, never a mainland mobile
        return rng.choice(["10", "11", "12", "20", "80", "90"]) + _digits(rng, rng.choice([9, 10]))

    vals = {
        "order": order, "ref": lambda: rng.choice("12") + rng.choice("012") + _digits(rng, 9),
        "date": lambda: f"20{rng.randint(10, 29)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "time": lambda: f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}",
        "mobile": lambda: "1" + rng.choice("3589") + _digits(rng, 9), "letter": lambda: rng.choice("ABCDEFXZ"),
        "badcard": lambda: card(rng, valid=False), "ver": lambda: f"{rng.randint(1, 12)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}",
        "price": lambda: f"{rng.randint(1, 99999)}.{rng.randint(0, 99):02d}", "stock": lambda: str(rng.randint(1, 5000)),
        "pop": lambda: f"{rng.randint(1, 99)},{rng.randint(0, 999):03d},{rng.randint(0, 999):03d}",
        "year": lambda: str(rng.randint(1950, 2030)), "small": lambda: str(rng.randint(1, 9)),
        "isbn": lambda: f"{rng.randint(0, 9)}-{_digits(rng, 3)}-{_digits(rng, 5)}-{rng.randint(0, 9)}",
    }
    out = t
    while "{" in out:
        a = out.index("{")
        b = out.index("}", a)
        out = out[:a] + vals[out[a + 1:b]]() + out[b + 1:]
    return out


#: format -> (value maker, language of its templates, corpus type)
FORMATS = {
    "cn_mobile": (cn_mobile, "zh", "PHONE_NUMBER"),
    "cn_landline": (cn_landline, "zh", "PHONE_NUMBER"),
    "extension_en": (lambda r: with_ext(r, False), "en", "PHONE_NUMBER"),
    "extension_zh": (lambda r: with_ext(r, True), "zh", "PHONE_NUMBER"),
    "intl_00": (lambda r: intl(r, False), "mixed", "PHONE_NUMBER"),
    "intl_plus": (lambda r: intl(r, True), "mixed", "PHONE_NUMBER"),
    "card_12_19": (card, "mixed", "CREDIT_CARD"),
}


def generate(split: str, per_format: int = 200, negatives: int = 400) -> list[dict]:
    """Labelled texts in the corpus' format (``spans`` with ``type``, ``start``, ``end``, and ``format``)."""
    assert split in ("dev", "test")
    rng = random.Random(21 if split == "dev" else 2121)

    def pick(templates: list[str]) -> list[str]:
        return [t for t in templates if split_of_template(t) == split]

    docs: list[dict] = []
    for fmt, (make, lang, typ) in FORMATS.items():
        phone = typ == "PHONE_NUMBER"
        en, zh = pick(PHONE_EN if phone else CARD_EN), pick(PHONE_ZH if phone else CARD_ZH)
        for i in range(per_format):
            tl = zh if lang == "zh" or (lang == "mixed" and i % 2) else en
            t = rng.choice(tl)
            v = make(rng)
            a = t.index("{v}")
            text = t[:a] + v + t[a + 3:]
            docs.append({"id": f"formats/{split}/{fmt}/{i}", "lang": "zh" if tl is zh else "en", "text": text,
                         "spans": [{"type": typ, "start": a, "end": a + len(v), "format": fmt}]})
    near = pick(NEAR_MISS)
    for i in range(negatives):
        t = rng.choice(near)
        docs.append({"id": f"formats/{split}/near_miss/{i}", "lang": "zh" if any("\u4e00" <= c <= "\u9fff" for c in t) else "en",
                     "text": _fill(rng, t), "spans": [], "template": t})
    return docs
