import re
import struct
import zlib

import pytest

from kizuna.storage.coupon_codes import (
    ALPHABET,
    InvalidCode,
    generate_code,
    normalize_code,
    parse_code,
    qr_png,
)

CODE_RE = re.compile(r"[A-Z]{2,5}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}")


def reason_of(text, prefix="KZN"):
    with pytest.raises(InvalidCode) as info:
        parse_code(text, prefix)
    return info.value.reason


# --- generation ------------------------------------------------------------------
def test_generated_codes_have_the_readable_grouped_shape():
    code = generate_code("KZN")
    assert CODE_RE.fullmatch(code), code
    assert code.startswith("KZN-")
    assert not set(code) & set("ILOU")


def test_ten_thousand_codes_are_distinct_and_all_parse_back():
    codes = [generate_code("KZN") for _ in range(10_000)]
    assert len(set(codes)) == len(codes)
    assert all(parse_code(c, "KZN") == c for c in codes)


def test_random_part_uses_the_whole_alphabet_in_every_position():
    # Catches a generator that leaves some bits constant (less entropy than claimed).
    bodies = [generate_code("AB").replace("-", "")[2:13] for _ in range(2_000)]
    for position in range(11):
        assert {b[position] for b in bodies} == set(ALPHABET)


@pytest.mark.parametrize("prefix", ["", "K", "KIZUNA", "kzn", "K1", "KZ-N", "ＫＺＮ", None])
def test_generate_refuses_a_bad_shop_prefix(prefix):
    with pytest.raises(ValueError):
        generate_code(prefix)


# --- normalisation -------------------------------------------------------------------
@pytest.mark.parametrize(
    "typed",
    [
        "kzn-7f3k-q9md-2xh0",
        "KZN7F3KQ9MD2XH0",
        "kzn 7f3k q9md 2xh0",
        "ＫＺＮ－７Ｆ３Ｋ－Ｑ９ＭＤ－２ＸＨ０",  # full width from a Japanese IME
        "KZNー7F3KーQ9MDー2XH0",  # kana-mode hyphen
        "KZN-7F3K-Q9MD-2XHO",  # letter O for zero
        " KZN - 7F3K - Q9MD - 2XH0\n",
        "KZN-7F3KQ9MD2XH0",
    ],
)
def test_normalize_accepts_what_clerks_type(typed):
    assert normalize_code(typed) == "KZN-7F3K-Q9MD-2XH0"


def test_normalize_reads_i_and_l_as_one():
    assert normalize_code("ab-i1l1-0000-0000") == "AB-1111-0000-0000"


def test_normalize_leaves_prefix_letters_alone():
    # A shop may be called OIL; Crockford's substitutions apply to the body only.
    assert normalize_code("oil-oooo-iiii-llll") == "OIL-0000-1111-1111"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "KZN",
        "KZN-7F3K-Q9MD",  # too short
        "KZN-7F3K-Q9MD-2XH0-AAAA",  # too long → prefix would be 9 characters
        "K-7F3K-Q9MD-2XH0",  # prefix too short
        "KZN-7F3K-Q9MD-2XHU",  # U is not in the alphabet
        "KZN-7F3K-Q9MD-2XH#",
        "K1N-7F3K-Q9MD-2XH0",  # digit in the prefix
        "ケイゼット-7F3K-Q9MD-2XH0",
        None,
    ],
)
def test_malformed_text_is_reported_as_malformed(text):
    with pytest.raises(InvalidCode) as info:
        normalize_code(text)
    assert info.value.reason == "malformed"
    assert reason_of(text) == "malformed"


# --- parsing and the check symbol ---------------------------------------------------------
def test_parse_accepts_sloppy_typing_of_a_real_code():
    code = generate_code("KZN")
    typed = code.lower().replace("-", " ").replace("0", "o").replace("1", "l")
    assert parse_code(typed, "KZN") == code
    full_width = "".join(chr(ord(c) + 0xFEE0) if c != "-" else "－" for c in code)
    assert parse_code(full_width, "KZN") == code


def test_every_single_character_typo_is_caught_by_the_check_symbol():
    for _ in range(20):
        code = generate_code("KZN")
        for i, original in enumerate(code):
            if original == "-":
                continue
            pool = "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if i < 3 else ALPHABET
            for typo in pool:
                if typo == original:
                    continue
                mistyped = code[:i] + typo + code[i + 1:]
                # A prefix typo must read as a typo, not as another shop's code.
                assert reason_of(mistyped) == "bad_check", (code, mistyped)


def test_every_swap_of_two_characters_is_caught():
    for _ in range(20):
        compact = generate_code("KZN").replace("-", "")
        for i in range(3, len(compact)):
            for j in range(i + 1, len(compact)):
                if compact[i] == compact[j]:
                    continue
                chars = list(compact)
                chars[i], chars[j] = chars[j], chars[i]
                assert reason_of("".join(chars)) == "bad_check"


def test_a_code_of_another_shop_is_other_shop():
    code = generate_code("ABC")
    assert parse_code(code, "ABC") == code
    assert reason_of(code, "KZN") == "other_shop"


def test_a_longer_prefix_does_not_pass_as_ours():
    code = generate_code("KZN")
    assert reason_of("A" + code, "KZN") in {"bad_check", "other_shop"}
    assert reason_of("A" + code, "AKZN") == "bad_check"


def test_invalid_code_exposes_a_machine_readable_reason():
    error = InvalidCode("bad_check")
    assert error.reason == "bad_check"
    assert isinstance(error, ValueError)


# --- QR -------------------------------------------------------------------------------
def read_png(data: bytes) -> tuple[int, int, bytes]:
    """Decode a non-interlaced greyscale PNG into (width, height, 8-bit pixels)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        assert zlib.crc32(kind + body) == struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert kind == b"IEND"
    width, height, depth, colour, _, _, interlace = header
    assert colour == 0 and depth in (1, 8) and interlace == 0, header
    stride = (width * depth + 7) // 8
    raw, rows, previous = zlib.decompress(idat), [], bytearray(stride)
    for y in range(height):
        line = raw[y * (stride + 1):(y + 1) * (stride + 1)]
        filt, row = line[0], bytearray(line[1:])
        for x in range(stride):
            a = row[x - 1] if x else 0
            b, c = previous[x], previous[x - 1] if x else 0
            if filt == 1:
                row[x] = (row[x] + a) & 255
            elif filt == 2:
                row[x] = (row[x] + b) & 255
            elif filt == 3:
                row[x] = (row[x] + (a + b) // 2) & 255
            elif filt == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                row[x] = (row[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(row)
        previous = row
    if depth == 8:
        return width, height, b"".join(bytes(r) for r in rows)
    pixels = bytearray()
    for row in rows:
        for x in range(width):
            pixels.append(255 if row[x // 8] >> (7 - x % 8) & 1 else 0)
    return width, height, bytes(pixels)


def test_qr_png_is_a_png_of_a_version_1_symbol_with_quiet_zone():
    code = generate_code("KZN")
    width, height, pixels = read_png(qr_png(code, scale=8))
    # Version 1 is 21 modules; 4 quiet modules on each side.
    assert width == height == (21 + 2 * 4) * 8
    # The quiet zone is white all round.
    assert set(pixels[: width * 4 * 8]) == {255}
    assert set(pixels[-width * 4 * 8:]) == {255}
    # The top-left finder pattern starts right after it, and is dark.
    assert pixels[(4 * 8) * width + 4 * 8] == 0


def test_qr_png_scale_changes_the_size():
    code = generate_code("KZN")
    assert read_png(qr_png(code, scale=2))[0] == 29 * 2
    with pytest.raises(ValueError):
        qr_png(code, scale=0)


def test_qr_png_refuses_text_that_is_not_a_code():
    with pytest.raises(InvalidCode):
        qr_png("hello")


def test_qr_png_decodes_back_to_the_canonical_code():
    zxingcpp = pytest.importorskip("zxingcpp")
    code = generate_code("KZN")
    width, height, pixels = read_png(qr_png(code.lower().replace("-", "")))
    result = zxingcpp.read_barcode(memoryview(pixels).cast("B", (height, width)))
    assert result is not None
    assert result.format == zxingcpp.BarcodeFormat.QRCode
    assert result.text == code
    assert parse_code(result.text, "KZN") == code
