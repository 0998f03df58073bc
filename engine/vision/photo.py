"""What a photo must be before a model sees it: a real image of a sane size, turned the
right way up, scaled down, and re-encoded, so nothing of its metadata (EXIF: place,
time, camera) goes further."""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from engine.errors import InputError

MAX_PIXELS = 50_000_000
"""More than this is refused before decoding (a decompression bomb, or no photo)."""


def clean_photo(data: bytes, *, max_mb: float, max_side: int) -> bytes:
    """The photo as a metadata-free JPEG no larger than ``max_side`` on its longer side.
    Raises InputError with a message for the person who sent it."""
    if not data:
        raise InputError("empty photo", user_message="That photo came through empty. "
                                                     "Please send it again.")
    if len(data) > max_mb * 1024 * 1024:
        raise InputError(f"photo of {len(data)} bytes", user_message=(
            f"That photo is too large ({len(data) / 1024 / 1024:.1f} MB; at most "
            f"{max_mb:g} MB). Please send a smaller one."))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img: Image.Image = Image.open(io.BytesIO(data))
            if img.width * img.height > MAX_PIXELS:
                raise InputError(f"{img.width}x{img.height} pixels", user_message=(
                    "That picture has too many pixels for me. Please send a smaller photo."))
            img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(f"not an image: {exc}", user_message=(
            "I couldn't open that as a photo. Please send a JPEG or PNG picture.")) from None
    img = ImageOps.exif_transpose(img)  # the right way up; the EXIF itself stays behind
    img = img.convert("RGB")
    img.thumbnail((max_side, max_side))
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=88)  # a new file: no EXIF, no comments, no XMP
    return out.getvalue()
