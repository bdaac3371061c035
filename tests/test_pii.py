"""PII detection and redaction on crafted English and Chinese texts (all written for these tests).

Numbers are made up; card numbers, IBANs and the ID number are built to pass (or, on purpose,
fail) their checksums. 4539 1488 0343 6467 and 5500-0000-0000-0004 are common Luhn-valid test
card numbers, GB82 WEST... and DE89 3704... are the ISO 13616 example IBANs, 11010519491231002X
the GB 11643 example ID.
"""

from __future__ import annotations

from itertools import pairwise

import pyarrow as pa
import pytest

from dataset_platform.stages.clean.pii import (
    PII_TYPES,
    PLACEHOLDERS,
    PiiSpan,
    cn_id_ok,
    count_pii,
    find_pii,
    iban_ok,
    luhn_ok,
    redact,
    redact_batch,
)


def found(text: str) -> list[tuple[str, str]]:
    return [(s.type, text[s.start:s.end]) for s in find_pii(text)]


# --------------------------------------------------------------------------- each type is found

@pytest.mark.parametrize("text, expected", [
    # e-mail
    ("Write to maria.lopez+news@mail.example.org for the agenda.", [("email", "maria.lopez+news@mail.example.org")]),
    ("投稿请发至编辑部邮箱zhangwei_88@163.com，谢谢。", [("email", "zhangwei_88@163.com")]),
    ("Contact: ops-team@sub.example.co.uk.", [("email", "ops-team@sub.example.co.uk")]),
    # phone: international
    ("Reach the desk at +1 415-555-0132 or +44 20 7946 0958 today.",
     [("phone", "+1 415-555-0132"), ("phone", "+44 20 7946 0958")]),
    ("From abroad dial 0044 20 7946 0958 instead.", [("phone", "0044 20 7946 0958")]),
    ("Ring our Zurich office on +41 (0)44 668 18 00 tomorrow.", [("phone", "+41 (0)44 668 18 00")]),
    # phone: national formats
    ("Locally it is (020) 7946 0958, in the US (212) 555-0199 or 212.555.0198.",
     [("phone", "(020) 7946 0958"), ("phone", "(212) 555-0199"), ("phone", "212.555.0198")]),
    ("Phone: 555 0142", [("phone", "555 0142")]),
    ("Home 0680 298 71 45 is the Vienna line.", [("phone", "0680 298 71 45")]),
    # phone: mainland-China mobiles, landlines, HK with a bare country code
    ("请拨打 138-0013-8000 或 +86 139 1234 5678 联系我们。", [("phone", "138-0013-8000"), ("phone", "+86 139 1234 5678")]),
    ("经纪人小王13912345678，欢迎合作。", [("phone", "13912345678")]),
    ("客服电话：010-6552 9988，周一至周五。", [("phone", "010-6552 9988")]),
    ("香港辦事處(852-2345 6789)。", [("phone", "852-2345 6789")]),
    ("合作请联系：0912345678", [("phone", "0912345678")]),
    ("Since 2015 138 0013 8000 is the hotline.", [("phone", "138 0013 8000")]),
    ("From the US: 001-518-555-0147.", [("phone", "001-518-555-0147")]),
    ("Witnesses may ring 0845 7 123 456 in confidence.", [("phone", "0845 7 123 456")]),
    # ip
    ("Ping 10.0.0.254 and then 2001:db8:85a3::8a2e:370:7334 again.",
     [("ip", "10.0.0.254"), ("ip", "2001:db8:85a3::8a2e:370:7334")]),
    ("服务器地址为192.168.31.7，端口8080。", [("ip", "192.168.31.7")]),
    ("link-local fe80::1ff:fe23:4567:890a is on eth0", [("ip", "fe80::1ff:fe23:4567:890a")]),
    # card
    ("Paid with 4539 1488 0343 6467, refund to 5500-0000-0000-0004.",
     [("card", "4539 1488 0343 6467"), ("card", "5500-0000-0000-0004")]),
    ("Amex 3782 822463 10005 on file; card # 4539148803436467 too.",
     [("card", "3782 822463 10005"), ("card", "4539148803436467")]),
    ("信用卡号4539148803436467已挂失。", [("card", "4539148803436467")]),
    # iban
    ("Transfer to DE89 3704 0044 0532 0130 00 or GB82WEST12345698765432 today.",
     [("iban", "DE89 3704 0044 0532 0130 00"), ("iban", "GB82WEST12345698765432")]),
    ("汇款账户 GB82 WEST 1234 5698 7654 32 已确认。", [("iban", "GB82 WEST 1234 5698 7654 32")]),
    # cn_id
    ("身份证号码：11010519491231002X，请核对。", [("cn_id", "11010519491231002X")]),
    ("ID 11010519491231002x (lower-case x)", [("cn_id", "11010519491231002x")]),
])
def test_each_type_is_found_with_exact_offsets(text, expected):
    assert found(text) == expected


# --------------------------------------------------------------------------- checksums

def test_checksum_failures_are_not_redacted():
    text = ("card 4539 1488 0343 6468 fails Luhn; IBAN GB83WEST12345698765432 fails mod 97; "
            "身份证 110105194912310021 校验位错误，110105194913310028 日期无效。")
    assert find_pii(text) == []
    # and the validators themselves
    assert luhn_ok("4539148803436467") and not luhn_ok("4539148803436468")
    assert iban_ok("GB82WEST12345698765432") and not iban_ok("GB83WEST12345698765432")
    assert not iban_ok("GB82WEST1234569876543")  # wrong length for GB
    assert cn_id_ok("11010519491231002X") and not cn_id_ok("110105194912310021")
    assert not cn_id_ok("990105194912310021")  # no such province code


# --------------------------------------------------------------------------- false-positive traps

@pytest.mark.parametrize("text", [
    "The meeting is on 2024-01-15 at 14:11:22, moved to 15/01/2024 or 01.02.2024.",
    "Released version 3.11.7, build 10.0.19041.1288 and v1.2.3.4 of the tool.",
    "Upgrade to version 1.0.0.1 before Friday.",
    "The laptop costs $1,299.99 or €1 299,00; total 1234567.89 units; ¥ 13912345678 is a silly price.",
    "Order number 5551234567 shipped; tracking no. 8000123456 follows.",
    "ISBN 978-3-16-148410-0 and DOI 10.1000/182 are cited on pages 123-456.",
    "2024年1月15日，价格为12999元，订单号：202401150001234。",
    "Population grew from 1,234,567 to 2,345,678 between 1998 and 2004.",
    "Coordinates 39.9042, 116.4074; ratio 3.14159265358979.",
    "uuid 123e4567-e89b-12d3-a456-426614174000 and timestamp 1700000000000 (ms) or 1700000000.",
    "Time 12:30:45, std::vector and a::b are code, not IPv6.",
    "See https://example.com/item/13912345678/4539148803436467 for details.",
    "QQ：33370722 群 114281231",
    "The match ended 3-1 after 90+4 minutes; 1000-2000 fans.",
    "Dimensions 1920x1080, 60 Hz, 2.5 GHz, 16 GB, part ABC-1234567.",
    "会议于2023年12月31日14:00举行，共有1,200人参加，预算约350万元。",
    "他的手机号是13912345678901（多了三位，不是手机号）。",
    "Send letters to P.O. Box 4821, Boston, MA 02115-4821.",
    "The budget grew from 1 000 000 to 44 000 000 units; in 2019 1234567 people came.",
    "She won 6-7 (4-7) 7-6 (8-6) 7-5 in the final.",
    "Drafts: 00 01 02 03 04 are archived.",
])
def test_false_positive_traps_are_left_alone(text):
    assert found(text) == []


# --------------------------------------------------------------------------- redact

def test_redact_replaces_spans_with_typed_placeholders_and_keeps_input_offsets():
    text = "邮箱 li.na@example.cn，手机 +86 138 0013 8000，IP 172.16.4.20，卡 4539 1488 0343 6467。"
    red, spans = redact(text)
    assert [s.type for s in spans] == ["email", "phone", "ip", "card"]
    assert red == "邮箱 <EMAIL>，手机 <PHONE>，IP <IP_ADDRESS>，卡 <CARD>。"
    assert [text[s.start:s.end] for s in spans] == ["li.na@example.cn", "+86 138 0013 8000", "172.16.4.20",
                                                  "4539 1488 0343 6467"]
    assert all(isinstance(s, PiiSpan) for s in spans)
    assert spans == sorted(spans, key=lambda s: s.start)
    assert all(a.end <= b.start for a, b in pairwise(spans))


def test_redacted_text_has_no_pii_left_and_placeholders_never_match():
    assert set(PLACEHOLDERS) == set(PII_TYPES)
    assert find_pii(" ".join(PLACEHOLDERS.values())) == []
    assert find_pii("".join(PLACEHOLDERS.values()) * 3) == []
    text = ("Mail a@b.io, call +1 415-555-0132, id 11010519491231002X, "
            "iban DE89370400440532013000, host 10.1.2.3")
    red, spans = redact(text)
    assert len(spans) == 5 and find_pii(red) == []
    assert redact(red) == (red, [])


def test_overlaps_resolve_by_priority():
    # the digits of an e-mail's local part are not a phone; an IBAN's digits are not a card
    assert found("13912345678@qq.com") == [("email", "13912345678@qq.com")]
    assert found("GB82WEST12345698765432") == [("iban", "GB82WEST12345698765432")]


def test_empty_and_plain_text():
    assert redact("") == ("", [])
    assert redact("No numbers here at all.") == ("No numbers here at all.", [])


# --------------------------------------------------------------------------- batches

def test_redact_batch_counts_per_row_and_keeps_nulls():
    texts = pa.array([
        "a@b.io and c@d.io",
        None,
        "call 13812345678 or +44 20 7946 0958 from 10.0.0.1",
        "nothing here",
        "身份证11010519491231002X，卡4539148803436467，账户GB82WEST12345698765432",
    ])
    red, counts = redact_batch(texts)
    assert red.type == pa.string() and len(red) == 5
    assert red.to_pylist() == [
        "<EMAIL> and <EMAIL>",
        None,
        "call <PHONE> or <PHONE> from <IP_ADDRESS>",
        "nothing here",
        "身份证<CN_ID>，卡<CARD>，账户<IBAN>",
    ]
    assert set(counts) == set(PII_TYPES)
    assert all(c.type == pa.int32() and len(c) == 5 for c in counts.values())
    assert counts["email"].to_pylist() == [2, 0, 0, 0, 0]
    assert counts["phone"].to_pylist() == [0, 0, 2, 0, 0]
    assert counts["ip"].to_pylist() == [0, 0, 1, 0, 0]
    assert counts["card"].to_pylist() == [0, 0, 0, 0, 1]
    assert counts["iban"].to_pylist() == [0, 0, 0, 0, 1]
    assert counts["cn_id"].to_pylist() == [0, 0, 0, 0, 1]
    assert count_pii(texts) == 8
    assert count_pii(red) == 0


def test_redact_batch_on_chunked_and_large_strings_is_deterministic():
    rows = [f"row {i}: user{i}@example.com phone 1381234{i:04d}" for i in range(50)]
    chunked = pa.chunked_array([pa.array(rows[:20], pa.large_string()), pa.array(rows[20:], pa.large_string())])
    red1, c1 = redact_batch(chunked)
    red2, c2 = redact_batch(chunked)
    assert red1.type == pa.large_string()
    assert red1.equals(red2) and all(c1[t].equals(c2[t]) for t in PII_TYPES)
    assert red1.to_pylist()[7] == "row 7: <EMAIL> phone <PHONE>"
    assert sum(c1["email"].to_pylist()) == 50 and sum(c1["phone"].to_pylist()) == 50
    assert count_pii(rows) == 100  # plain iterables work too


def test_redact_batch_empty():
    red, counts = redact_batch(pa.array([], pa.string()))
    assert len(red) == 0 and all(len(c) == 0 for c in counts.values())


def test_redaction_reaches_a_fixpoint_when_it_brings_a_phone_word_closer():
    # before redaction "Call" is more than 32 characters from 1234567; after it, it is not
    text = "Call +44 20 7946 0958 / +44 20 7946 0959 at 1234567"
    red, spans = redact(text)
    assert red == "Call <PHONE> / <PHONE> at <PHONE>"
    assert [text[s.start:s.end] for s in spans] == ["+44 20 7946 0958", "+44 20 7946 0959", "1234567"]
    assert find_pii(text) == spans and find_pii(red) == []


def test_fuzzed_mixtures_always_redact_to_a_clean_text():
    """Random mixtures of PII, phone words, trap numbers and Chinese/English filler: the redacted
    text never holds a span, spans never overlap and always point at the input."""
    import random

    rng = random.Random(20261123)
    parts = ["Call", "phone:", "电话", "联系", "QQ", "order no.", "订单号", "fax", " ", " ", "，", "\n", "and",
             "a@b.io", "x.y@example.org", "+44 20 7946 0958", "13812345678", "138 0013 8000", "555 0142",
             "1234567", "7654321", "2024-01-15", "3.11.7", "$1,299.99", "10.0.0.1", "fe80::1ff:fe23:4567:890a",
             "4539 1488 0343 6467", "GB82WEST12345698765432", "11010519491231002X", "(020) 7946 0958",
             "852-2345 6789", "0912345678", "12", "2004", "#", "<", ">", "报名", "desk", "@", "-", "."]
    texts = []
    for _ in range(3000):
        text = "".join(rng.choice(parts) + rng.choice(["", " "]) for _ in range(rng.randint(1, 14)))
        red, spans = redact(text)
        assert find_pii(red) == [], (text, red)
        assert all(a.end <= b.start for a, b in pairwise(spans)), text
        assert all(0 <= s.start < s.end <= len(text) for s in spans), text
        texts.append(text)
    # the batch path (RE2 pre-filter) gives the same redaction
    red_batch, _ = redact_batch(pa.array(texts, pa.string()))
    assert red_batch.to_pylist() == [redact(t)[0] for t in texts]


@pytest.mark.parametrize(
    ("text", "kind", "hidden"),
    [
        ("write to ｊｏｅ＠ｅｘａｍｐｌｅ．ｃｏｍ today", "email", "ｊｏｅ＠ｅｘａｍｐｌｅ．ｃｏｍ"),  # full-width
        ("write to joe\u200b@example.com today", "email", "joe\u200b@example.com"),  # a zero-width space
        ("write to jo\u00ade@exam\u200dple.com today", "email", "jo\u00ade@exam\u200dple.com"),  # soft hyphen, ZWJ
        ("电话：１３８ １２３４ ５６７８，谢谢", "phone", "１３８ １２３４ ５６７８"),
        ("card 4111\u200b1111\u200b1111\u200b1111 ok", "card", "4111\u200b1111\u200b1111\u200b1111"),
    ],
)
def test_full_width_and_zero_width_forms_do_not_hide_pii(text, kind, hidden):
    """Issue 19, probe 4: an e-mail with a full-width ＠ or a zero-width space inside passed."""
    spans = find_pii(text)
    assert [(sp.type, text[sp.start:sp.end]) for sp in spans] == [(kind, hidden)]  # input offsets, all of it
    red, _ = redact(text)
    assert hidden not in red and find_pii(red) == []
    out, counts = redact_batch(pa.array([text, "nothing here", None]))  # the batch path, as the stage runs it
    assert out.to_pylist() == [red, "nothing here", None] and counts[kind].to_pylist() == [1, 0, 0]
    assert count_pii(pa.array([text])) == 1 and count_pii(out) == 0  # (what the blocking check counts)


def test_chinese_punctuation_keeps_the_fast_path_and_its_meaning():
    text = "联系我们（电话：13812345678），或者发邮件。"
    assert [sp.type for sp in find_pii(text)] == ["phone"]
    assert redact(text)[0] == "联系我们（电话：<PHONE>），或者发邮件。"


# --------------------------------------------------------------------------- issue 21: formats that slipped

@pytest.mark.parametrize("text, expected", [
    # mainland mobiles without separators, with +86 / 0086 / (+86), and lists of them
    ("我的手机13812345678，随时联系。", [("phone", "13812345678")]),
    ("手机号+8613812345678谢谢", [("phone", "+8613812345678")]),
    ("手机号008613812345678谢谢", [("phone", "008613812345678")]),
    ("mobile (+86)13812345678 or 0086 138 1234 5678", [("phone", "(+86)13812345678"), ("phone", "0086 138 1234 5678")]),
    ("手机13812345678/13912345678均可", [("phone", "13812345678"), ("phone", "13912345678")]),
    # landlines with an area code: dash, space, ASCII or full-width parentheses, +86
    ("上海021-64370045，广州020-87654321", [("phone", "021-64370045"), ("phone", "020-87654321")]),
    ("电话：（010）65529988，传真：（0755）8376 5566", [("phone", "（010）65529988"), ("phone", "（0755）8376 5566")]),
    ("地址北京，(010) 6552 9988", [("phone", "(010) 6552 9988")]),
    ("请致电0571 8888 6666", [("phone", "0571 8888 6666")]),
    ("Beijing office +86-10-65529988", [("phone", "+86-10-65529988")]),
    # extensions are part of the span
    ("Call 415-555-0132 x4587 today", [("phone", "415-555-0132 x4587")]),
    ("Call 415-555-0132x4587 today", [("phone", "415-555-0132x4587")]),
    ("Phone: +1 (415) 555-0132, ext. 4587.", [("phone", "+1 (415) 555-0132, ext. 4587")]),
    ("Tel +44 20 7946 0958 extension 22", [("phone", "+44 20 7946 0958 extension 22")]),
    ("总机：010-65529988分机123", [("phone", "010-65529988分机123")]),
    ("电话：010-65529988 转 8021", [("phone", "010-65529988 转 8021")]),
    ("电话：010-65529988-8021", [("phone", "010-65529988-8021")]),
    ("北京办事处 010-65529988-8021 周一至周五", [("phone", "010-65529988-8021")]),  # no phone word
    # international numbers with a 00 prefix, as with +
    ("Dial 0044 20 7946 0958 please", [("phone", "0044 20 7946 0958")]),
    ("Paris: 0033 1 42 68 53 00; Berlin: 0049-30-901820", [("phone", "0033 1 42 68 53 00"), ("phone", "0049-30-901820")]),
    ("From abroad: 00-44-20-7946-0958", [("phone", "00-44-20-7946-0958")]),
    # after a "+" digits are a phone, even when they would pass as a Visa number (4915123451580)
    ("For support dial +4915123451580.", [("phone", "+4915123451580")]),
    # 12-19-digit cards passing Luhn (Maestro, UnionPay 62...), grouped by spaces or dashes
    ("Maestro 6759 6498 2643 8453 on file", [("card", "6759 6498 2643 8453")]),
    ("Maestro 5018 0000 0009 (12 digits)", [("card", "5018 0000 0009")]),
    ("银联卡号6212345678901234569已绑定", [("card", "6212345678901234569")]),
    ("卡号 6212 3456 7890 1234 569 已绑定", [("card", "6212 3456 7890 1234 569")]),
    ("card 6222-0212-3456-7890-128 expired", [("card", "6222-0212-3456-7890-128")]),
    ("Visa 4000 0000 0000 0000 006 (19 digits)", [("card", "4000 0000 0000 0000 006")]),
])
def test_issue21_formats_are_found_with_their_whole_span(text, expected):
    assert found(text) == expected
    red, _ = redact(text)
    assert find_pii(red) == []
    # the batch path (RE2 pre-filter) finds the same
    out, _ = redact_batch(pa.array([text]))
    assert out.to_pylist() == [red]


@pytest.mark.parametrize("text", [
    # 11 digits that are not a mainland mobile (no 1[3-9] prefix), or that an order word owns
    "Ref 12812345678 shipped on Monday.",
    "Ref 10012345678 shipped on Monday.",
    "订单号13812345679已发货。",
    # product codes and a model number glued to letters
    "product code 15912345678-A is sold out",
    "型号：13912345678，请核对。",
    # 16 / 19 digits failing Luhn, and a 12-digit run outside a card scheme
    "card 6759 6498 2643 8454 declined",
    "卡号 6212 3456 7890 1234 568 无效",
    "batch 4012 3456 7890 is ready",
    # dates and times with separators, x not an extension (a product), an extension without a phone
    "The log runs from 2024-01-15 10:30 to 2024-02-15 11:45.",
    "Screens of 1920x1080 and 3840 x 2160 pixels, ext. 4 cables.",
    "版本号 2024-0115-8021 已发布",
])
def test_issue21_near_misses_are_left_alone(text):
    assert found(text) == []


def test_extension_does_not_swallow_what_follows():
    # an extension stops at its digits; a following number or word is not part of it
    # 8 digits are no extension: the number alone is the phone
    assert found("Call 415-555-0132 x45871234 today") == [("phone", "415-555-0132")]
    assert found("电话：010-65529988转8021，周一至周五") == [("phone", "010-65529988转8021")]
    assert found("Tel 020 7946 0958 ext 22. Fax 020 7946 0959") == [
        ("phone", "020 7946 0958 ext 22"), ("phone", "020 7946 0959")]


def test_fuzzed_mixtures_with_issue21_formats_redact_to_a_clean_text():
    """The fixpoint (nothing left after redaction) and the batch path hold with extensions,
    full-width parentheses, 00 prefixes and 12/19-digit cards mixed in."""
    import random

    rng = random.Random(2121)
    parts = ["电话", "Tel", "x4587", "x", "ext. 12", "分机123", "转", "8021", "-", "/", "（010）65529988", "（0755）",
             "(010)", "010-65529988", "13812345678", "+8613812345678", "0086", "0044 20 7946 0958", "00",
             "6212 3456 7890 1234 569", "5018 0000 0009", "6759649826438453", "6759 6498 2643 8454", "-A",
             "型号", "2024-01-15", "1920x1080", "12", " ", " ", "，", "Call", "order no."]
    texts = []
    for _ in range(3000):
        text = "".join(rng.choice(parts) + rng.choice(["", " "]) for _ in range(rng.randint(1, 12)))
        red, spans = redact(text)
        assert find_pii(red) == [], (text, red)
        assert all(a.end <= b.start for a, b in pairwise(spans)), text
        assert all(0 <= s.start < s.end <= len(text) and text[s.start:s.end].strip() == text[s.start:s.end]
                   for s in spans), text
        texts.append(text)
    red_batch, _ = redact_batch(pa.array(texts, pa.string()))
    assert red_batch.to_pylist() == [redact(t)[0] for t in texts]
    assert sum(1 for t in texts if redact(t)[1]) > 1000  # the mixtures do hold PII
