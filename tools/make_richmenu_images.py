"""Render the bundled rich menu images: kizuna/bot/assets/richmenu_{default,registered}.png.

This is how the committed PNGs were made; Kizuna itself never runs it (it uploads the
committed files), so Pillow is needed only here:

    .venv/bin/pip install pillow
    apt-get install -y fonts-noto-cjk        # Noto Sans CJK JP Bold (SIL Open Font License)
    .venv/bin/python tools/make_richmenu_images.py

The fonts are only used to draw the labels: the PNGs contain pixels, not font data, which
the OFL allows without conditions. The tiles must stay where `kizuna/bot/richmenu.py`
puts its tap areas (a 2 x 2 grid on 2500 x 1686); the labels must match its displayText.
Re-rendering changes the files' bytes, so the next `kizuna richmenu setup` makes new
menus (the content hash in their names changes): commit new images deliberately.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 2500, 1686
SCALE = 3  # drawn at three times the size, then reduced: smooth edges without anti-aliasing support
ASSETS = Path(__file__).resolve().parent.parent / "kizuna" / "bot" / "assets"
FONT_CANDIDATES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJKjp-Bold.otf",
)
JP_FACE_INDEX = 0  # in the .ttc collection: 0 is "Noto Sans CJK JP"

BACKGROUND = (241, 238, 232)
CARD = (255, 255, 255)
INK = (44, 48, 56)
MUTED = (132, 136, 146)
INDIGO = (36, 64, 122)
CORAL = (226, 96, 78)
TEAL = (28, 132, 126)
OCHRE = (204, 146, 44)
PLUM = (122, 84, 150)

# (label, latin sub-label, icon, colour, highlighted); order: top-left, top-right,
# bottom-left, bottom-right, as the areas in richmenu.py.
MENUS = {
    "default": [
        ("会員登録", "MEMBERSHIP", "join", INDIGO, True),
        ("クーポン", "COUPONS", "coupon", CORAL, False),
        ("お問い合わせ", "CONTACT", "chat", TEAL, False),
        ("会員情報", "MY INFO", "person", OCHRE, False),
    ],
    "registered": [
        ("会員情報", "MY INFO", "person", INDIGO, True),
        ("クーポン", "COUPONS", "coupon", CORAL, False),
        ("お問い合わせ", "CONTACT", "chat", TEAL, False),
        ("登録内容の変更", "EDIT DETAILS", "edit", PLUM, False),
    ],
}


def _font(size: int) -> ImageFont.FreeTypeFont:
    for path in FONT_CANDIDATES:
        if Path(path).exists():
            return ImageFont.truetype(path, size * SCALE, index=JP_FACE_INDEX if path.endswith(".ttc") else 0)
    raise SystemExit("no Noto Sans CJK Bold font found: apt-get install -y fonts-noto-cjk")


def s(value: float) -> int:
    return round(value * SCALE)


def _lighten(rgb: tuple[int, int, int], amount: float) -> tuple[int, int, int]:
    return tuple(round(c + (255 - c) * amount) for c in rgb)  # type: ignore[return-value]


# -- icons: drawn in a box centred on (cx, cy) of `size` (final pixels) --------------------


def icon_join(d: ImageDraw.ImageDraw, cx: float, cy: float, size: float, fg, bg) -> None:
    """A member card with a plus badge."""
    w, h = size * 0.92, size * 0.62
    x0, y0 = cx - w / 2 - size * 0.06, cy - h / 2 + size * 0.02
    d.rounded_rectangle([s(x0), s(y0), s(x0 + w), s(y0 + h)], radius=s(size * 0.08), fill=fg)
    # the card's face: a photo circle and two lines
    r = h * 0.2
    d.ellipse([s(x0 + w * 0.13), s(y0 + h * 0.3), s(x0 + w * 0.13 + 2 * r), s(y0 + h * 0.3 + 2 * r)], fill=bg)
    for i, length in enumerate((0.42, 0.3)):
        ly = y0 + h * (0.36 + i * 0.22)
        d.rounded_rectangle([s(x0 + w * 0.48), s(ly), s(x0 + w * (0.48 + length)), s(ly + h * 0.1)], radius=s(h * 0.05), fill=bg)
    # plus badge at the lower right, ringed by the tile colour
    br = size * 0.22
    bx, by = x0 + w, y0 + h
    d.ellipse([s(bx - br - size * 0.04), s(by - br - size * 0.04), s(bx + br + size * 0.04), s(by + br + size * 0.04)], fill=bg)
    d.ellipse([s(bx - br), s(by - br), s(bx + br), s(by + br)], fill=fg)
    arm, thick = br * 0.55, br * 0.2
    d.rounded_rectangle([s(bx - arm), s(by - thick / 2), s(bx + arm), s(by + thick / 2)], radius=s(thick / 2), fill=bg)
    d.rounded_rectangle([s(bx - thick / 2), s(by - arm), s(bx + thick / 2), s(by + arm)], radius=s(thick / 2), fill=bg)


def icon_coupon(d: ImageDraw.ImageDraw, cx: float, cy: float, size: float, fg, bg) -> None:
    """A ticket: notched sides, a perforation and a % sign."""
    w, h = size * 1.0, size * 0.6
    x0, y0 = cx - w / 2, cy - h / 2
    d.rounded_rectangle([s(x0), s(y0), s(x0 + w), s(y0 + h)], radius=s(size * 0.07), fill=fg)
    notch = h * 0.14
    for nx in (x0, x0 + w):
        d.ellipse([s(nx - notch), s(cy - notch), s(nx + notch), s(cy + notch)], fill=bg)
    px = x0 + w * 0.33
    dot = h * 0.045
    for i in range(5):
        py = y0 + h * (0.16 + i * 0.17)
        d.ellipse([s(px - dot), s(py - dot), s(px + dot), s(py + dot)], fill=bg)
    # % on the larger part: two rings and a slash
    mx, my, ring = x0 + w * 0.66, cy, h * 0.11
    stroke = h * 0.055
    for ox, oy in ((-1, -1), (1, 1)):
        rx, ry = mx + ox * h * 0.2, my + oy * h * 0.19
        d.ellipse([s(rx - ring), s(ry - ring), s(rx + ring), s(ry + ring)], outline=bg, width=s(stroke))
    d.line([s(mx + h * 0.24), s(my - h * 0.3), s(mx - h * 0.24), s(my + h * 0.3)], fill=bg, width=s(stroke * 1.1))


def icon_chat(d: ImageDraw.ImageDraw, cx: float, cy: float, size: float, fg, bg) -> None:
    """A speech bubble with three dots."""
    w, h = size * 0.98, size * 0.66
    x0, y0 = cx - w / 2, cy - h / 2 - size * 0.06
    d.rounded_rectangle([s(x0), s(y0), s(x0 + w), s(y0 + h)], radius=s(h * 0.32), fill=fg)
    tail = [(x0 + w * 0.2, y0 + h * 0.8), (x0 + w * 0.14, y0 + h + size * 0.2), (x0 + w * 0.44, y0 + h * 0.92)]
    d.polygon([(s(x), s(y)) for x, y in tail], fill=fg)
    r = h * 0.085
    for i in (-1, 0, 1):
        dx = cx + i * w * 0.22
        dy = y0 + h / 2
        d.ellipse([s(dx - r), s(dy - r), s(dx + r), s(dy + r)], fill=bg)


def icon_person(d: ImageDraw.ImageDraw, cx: float, cy: float, size: float, fg, bg) -> None:
    """A head and shoulders."""
    hr = size * 0.2
    hy = cy - size * 0.17
    d.ellipse([s(cx - hr), s(hy - hr), s(cx + hr), s(hy + hr)], fill=fg)
    bw, bh = size * 0.78, size * 0.5
    by = cy + size * 0.1
    d.pieslice([s(cx - bw / 2), s(by), s(cx + bw / 2), s(by + bh * 2)], 180, 360, fill=fg)


def icon_edit(d: ImageDraw.ImageDraw, cx: float, cy: float, size: float, fg, bg) -> None:
    """A pencil over a line."""
    angle = math.radians(-45)
    length, half = size * 0.86, size * 0.11
    ux, uy = math.cos(angle), math.sin(angle)  # along the pencil (towards the eraser end)
    vx, vy = -uy, ux
    tip = (cx - ux * length / 2 - size * 0.05, cy - uy * length / 2 + size * 0.02)

    def pt(a: float, b: float) -> tuple[int, int]:
        return s(tip[0] + ux * a + vx * b), s(tip[1] + uy * a + vy * b)

    cone = length * 0.2
    d.polygon([pt(0, 0), pt(cone, half), pt(cone, -half)], fill=fg)
    d.polygon([pt(cone + length * 0.04, half), pt(length * 0.8, half), pt(length * 0.8, -half), pt(cone + length * 0.04, -half)], fill=fg)
    d.polygon([pt(length * 0.84, half), pt(length, half), pt(length, -half), pt(length * 0.84, -half)], fill=fg)
    # the line being written
    ly = cy + size * 0.38
    d.rounded_rectangle([s(cx - size * 0.46), s(ly), s(cx + size * 0.46), s(ly + size * 0.07)], radius=s(size * 0.035), fill=fg)


ICONS = {"join": icon_join, "coupon": icon_coupon, "chat": icon_chat, "person": icon_person, "edit": icon_edit}


def render(menu: str) -> Image.Image:
    image = Image.new("RGB", (s(WIDTH), s(HEIGHT)), BACKGROUND)
    d = ImageDraw.Draw(image)
    label_font, sub_font = _font(112), _font(40)
    cell_w, cell_h = WIDTH / 2, HEIGHT / 2
    margin = 16
    for i, (label, sub, icon, colour, highlighted) in enumerate(MENUS[menu]):
        col, row = i % 2, i // 2
        x0, y0 = col * cell_w + margin, row * cell_h + margin
        x1, y1 = (col + 1) * cell_w - margin, (row + 1) * cell_h - margin
        card = colour if highlighted else CARD
        d.rounded_rectangle([s(x0), s(y0), s(x1), s(y1)], radius=s(40), fill=card)
        cx = (x0 + x1) / 2
        badge_r = 185
        badge_cy = y0 + 300
        badge = _lighten(colour, 0.16) if highlighted else _lighten(colour, 0.86)
        d.ellipse([s(cx - badge_r), s(badge_cy - badge_r), s(cx + badge_r), s(badge_cy + badge_r)], fill=badge)
        fg = CARD if highlighted else colour
        ICONS[icon](d, cx, badge_cy, badge_r * 1.3, fg, badge)
        text_colour = CARD if highlighted else INK
        d.text((s(cx), s(y0 + 590)), label, font=label_font, fill=text_colour, anchor="mm")
        spaced = " ".join(sub)  # letter-spaced latin caption
        sub_colour = _lighten(colour, 0.62) if highlighted else MUTED
        d.text((s(cx), s(y0 + 700)), spaced, font=sub_font, fill=sub_colour, anchor="mm")
        # a small accent bar under the label on white cards
        if not highlighted:
            d.rounded_rectangle([s(cx - 36), s(y0 + 752), s(cx + 36), s(y0 + 760)], radius=s(4), fill=colour)
    return image.resize((WIDTH, HEIGHT), Image.LANCZOS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ASSETS)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for menu in MENUS:
        image = render(menu)
        # A 256-colour palette keeps flat artwork sharp and the file far under LINE's 1 MB.
        paletted = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        target = args.out / f"richmenu_{menu}.png"
        paletted.save(target, optimize=True)
        print(f"{target}: {target.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
