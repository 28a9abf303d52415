"""Hard OCR cases made on the spot: text on transparent PNGs (dark and light), thin
single-line strips, long lines with spaces, small screenshots, rotated text and
captions or watermarks over photos. Deterministic (fixed seeds), written once
into a cache folder.

Fonts: DejaVu and Liberation from Debian (fonts-dejavu-core, fonts-liberation)
when present, else Pillow's built-in font.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONT_FILES = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSerif-Regular.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationMono-Regular.ttf",
]
_VOCABULARY = (
    "garden morning station river coffee window market summer holiday bridge "
    "family birthday mountain evening street village school harbour picture "
    "yellow orange purple green silver winter autumn spring weekend museum "
    "library kitchen dinner breakfast concert theatre festival airport ticket "
    "platform departure arrival gate open closed exit entrance parking private "
    "welcome sale today only free delivery price total order number address "
    "north south east west road avenue square park hotel restaurant bakery "
    "pharmacy hospital police fire emergency stop slow caution danger keep "
    "left right straight ahead minutes hours daily service information "
    "large scale photo archive backup copy settings account profile search"
)
WORDS = _VOCABULARY.split()


def _fonts() -> list[Path | None]:
    found: list[Path | None] = [Path(f) for f in FONT_FILES if Path(f).is_file()]
    return found or [None]


def font(size: int, which: int = 0) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    files = _fonts()
    path = files[which % len(files)]
    if path is None:
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(str(path), size)


def phrase(rng: random.Random, words: int) -> str:
    out = [rng.choice(WORDS) for _ in range(words)]
    if rng.random() < 0.5:
        out[0] = out[0].capitalize()
    if rng.random() < 0.3:
        out.append(str(rng.randint(2, 2099)))
    return " ".join(out)


def _text_layer(
    size: tuple[int, int], lines: list[str], font_px: int, which: int, fill: tuple[int, ...]
) -> Image.Image:
    """An RGBA layer with `lines` drawn from the top left, transparent elsewhere."""
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    f = font(font_px, which)
    y = max(2, font_px // 3)
    for line in lines:
        draw.text((max(4, font_px // 2), y), line, font=f, fill=fill)
        y += int(font_px * 1.45)
    return layer


def transparent(rng: random.Random, dark: bool, index: int) -> Image.Image:
    """Text alone on a transparent background (a logo, a sticker, a title card)."""
    font_px = rng.choice([22, 30, 42])
    lines = [phrase(rng, rng.randint(2, 4)) for _ in range(rng.randint(1, 3))]
    width = int(max(font(font_px, index).getlength(t) for t in lines) + font_px)
    height = int(len(lines) * font_px * 1.45 + font_px)
    colour = (0, 0, 0, 255) if dark else (250, 250, 245, 255)
    return _text_layer((width, height), lines, font_px, index, colour)


def strip(rng: random.Random, index: int) -> Image.Image:
    """One line in a thin strip as tall as the text (a banner, a cut-out label)."""
    text = phrase(rng, rng.randint(4, 7))
    font_px = rng.choice([18, 22, 26])
    f = font(font_px, index)
    width, height = int(f.getlength(text) + 12), int(font_px * 1.3)
    light = index % 2 == 0
    image = Image.new("RGB", (width, height), (255, 255, 255) if light else (20, 40, 90))
    ImageDraw.Draw(image).text(
        (6, 1), text, font=f, fill=(10, 10, 10) if light else (255, 255, 255)
    )
    return image


def long_lines(rng: random.Random, index: int) -> Image.Image:
    """Long sentences, many spaces, one or several lines (a scanned letter, a slide)."""
    count = 1 if index % 2 == 0 else 5
    lines = [phrase(rng, rng.randint(9, 13)) for _ in range(count)]
    font_px = rng.choice([24, 30])
    width = int(max(font(font_px, index).getlength(t) for t in lines) + 2 * font_px)
    height = int(count * font_px * 1.45 + font_px)
    image = Image.new("RGB", (width, height), (248, 246, 240))
    layer = _text_layer((width, height), lines, font_px, index, (25, 25, 25, 255))
    return Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")


def screenshot(rng: random.Random, index: int) -> Image.Image:
    """A small app screenshot: a title bar, buttons and labels in small type."""
    width, height = rng.choice([(360, 240), (420, 280), (320, 200)])
    image = Image.new("RGB", (width, height), (240, 242, 245))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width, 30), fill=(45, 90, 160))
    draw.text((8, 7), phrase(rng, 2), font=font(15, index), fill=(255, 255, 255))
    y = 42
    for _ in range(3):
        draw.text((10, y), phrase(rng, rng.randint(2, 4)), font=font(14, index), fill=(30, 30, 30))
        y += 28
    draw.rounded_rectangle((10, y + 4, 110, y + 32), radius=5, fill=(60, 150, 80))
    draw.text((20, y + 10), rng.choice(["Save", "Open", "Cancel", "Search"]), font=font(14, index))
    return image


def rotated(rng: random.Random, index: int) -> Image.Image:
    """A sign's text turned by a few degrees, a quarter or half turn."""
    angle = [8, 20, -15, 90, 180, 35][index % 6]
    lines = [phrase(rng, rng.randint(2, 3)) for _ in range(2)]
    font_px = 34
    width = int(max(font(font_px, index).getlength(t) for t in lines) + 2 * font_px)
    card = Image.new("RGB", (width, int(font_px * 4)), (255, 230, 120))
    layer = _text_layer(card.size, lines, font_px, index, (20, 20, 20, 255))
    card = Image.alpha_composite(card.convert("RGBA"), layer)
    turned = card.rotate(angle, expand=True, resample=Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", (turned.width + 80, turned.height + 80), (90, 110, 100))
    canvas.paste(turned, (40, 40), turned)
    return canvas


def captioned(rng: random.Random, photo: Path, index: int) -> Image.Image:
    """A photo with a caption or a corner watermark burnt in."""
    image = Image.open(photo).convert("RGBA")
    w, h = image.size
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    text = phrase(rng, rng.randint(2, 5))
    if index % 2 == 0:  # a caption, white with a dark outline
        f = font(max(18, h // 18), index)
        draw.text(
            (w // 20, h - h // 7),
            text,
            font=f,
            fill=(255, 255, 255, 255),
            stroke_width=2,
            stroke_fill=(0, 0, 0, 255),
        )
    else:  # a watermark, half transparent, in the corner
        f = font(max(16, h // 24), index)
        x = int(w - f.getlength(text) - w // 30)
        draw.text((x, h - h // 10), text, font=f, fill=(255, 255, 255, 150))
    return Image.alpha_composite(image, layer).convert("RGB")


def make_cases(folder: Path, photos: list[Path]) -> list[Path]:
    """Write every case once into `folder`; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    makers: list[tuple[str, int, Callable[[random.Random, int], Image.Image]]] = [
        ("transparent-dark", 4, lambda r, i: transparent(r, True, i)),
        ("transparent-light", 4, lambda r, i: transparent(r, False, i)),
        ("strip", 4, strip),
        ("long-lines", 4, long_lines),
        ("screenshot", 4, screenshot),
        ("rotated", 6, rotated),
        ("captioned", 6, lambda r, i: captioned(r, photos[i * 7 % len(photos)], i)),
    ]
    out = []
    for name, count, make in makers:
        for i in range(count):
            suffix = "png" if name.startswith(("transparent", "screenshot", "strip")) else "jpg"
            path = folder / f"{name}-{i}.{suffix}"
            if not path.exists():
                image = make(random.Random(f"{name}-{i}"), i)
                tmp = path.with_suffix(".tmp" + path.suffix)
                image.save(tmp, quality=92) if suffix == "jpg" else image.save(tmp)
                tmp.replace(path)
            out.append(path)
    return out
