"""The neutral cover: a card drawn here, with no model, so that every story has a picture.

Colours and the pattern follow from the genre and title (the same story always gets the
same card); the text is the title (when the bundled font has its script), genre and ages.
"""

from __future__ import annotations

import hashlib
import io
import math
import textwrap

from PIL import Image, ImageDraw, ImageFont

PALETTES = (
    ((33, 64, 120), (250, 214, 120)),   # night blue, gold
    ((40, 110, 90), (240, 236, 200)),   # forest, cream
    ((150, 60, 80), (255, 220, 200)),   # berry, peach
    ((90, 60, 140), (220, 210, 255)),   # violet, lavender
    ((30, 100, 140), (200, 240, 250)),  # sea, foam
    ((160, 90, 30), (255, 236, 190)),   # amber, sand
)


def _latin(text: str) -> bool:
    """The bundled font draws Latin script only (other titles go in the caption)."""
    return all(ord(c) < 0x250 or c.isspace() for c in text)


def cover_card(title: str, genre: str, age_group: str, size: int = 512) -> bytes:
    """A PNG cover card for a story."""
    digest = hashlib.sha256(f"{genre}|{title}".encode()).digest()
    back, ink = PALETTES[digest[0] % len(PALETTES)]
    img = Image.new("RGB", (size, size), back)
    draw = ImageDraw.Draw(img)
    # A quiet pattern of stars/dots placed by the digest: decoration, not content.
    for i in range(24):
        x = digest[i % 32] / 255 * size
        y = digest[(i * 7 + 3) % 32] / 255 * size
        r = size / 90 * (1 + digest[(i * 5 + 1) % 32] % 3)
        points = [(x + r * math.cos(a * math.pi / 5 - math.pi / 2) * (1 if a % 2 == 0 else 0.45),
                   y + r * math.sin(a * math.pi / 5 - math.pi / 2) * (1 if a % 2 == 0 else 0.45))
                  for a in range(10)]
        draw.polygon(points, fill=_mix(back, ink, 0.35))
    margin = size // 10
    draw.rounded_rectangle((margin, size * 0.28, size - margin, size * 0.78),
                           radius=size // 24, fill=_mix(back, (255, 255, 255), 0.82),
                           outline=ink, width=max(2, size // 128))
    dark = _mix(back, (0, 0, 0), 0.35)
    y = size * 0.33
    if title and _latin(title):
        font = ImageFont.load_default(size=max(12, size // 14))
        for line in textwrap.wrap(title, width=18)[:3]:
            w = draw.textlength(line, font=font)
            draw.text(((size - w) / 2, y), line, font=font, fill=dark)
            y += size // 11
    small = ImageFont.load_default(size=max(10, size // 24))
    label = f"{genre.title()}  ·  ages {age_group}" if _latin(genre) else f"ages {age_group}"
    w = draw.textlength(label, font=small)
    draw.text(((size - w) / 2, size * 0.70), label, font=small, fill=dark)
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _mix(a: tuple[int, int, int], b: tuple[int, int, int], t: float) -> tuple[int, int, int]:
    return (round(a[0] + (b[0] - a[0]) * t), round(a[1] + (b[1] - a[1]) * t),
            round(a[2] + (b[2] - a[2]) * t))
