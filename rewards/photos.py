"""Photos residents send: decoded and encoded again with no metadata, so nothing but
the pixels is kept (a phone's JPEG carries EXIF GPS: usually the resident's home)."""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

# A photo is decoded and copied twice here (upright, then pixels only), three bytes a
# pixel each: at 50 million pixels a 140 kB PNG of one colour took 400 MB and two
# seconds. A photo within SELF_REPORT_PHOTO_MAX_BYTES (2 MB) that a phone wrote has far
# fewer (a 12-megapixel JPEG is 3 to 5 MB); more, in a file that small, is a
# decompression bomb.
MAX_PIXELS = 16_000_000


class UnreadablePhoto(ValueError):
    """The bytes are not an image this scheme can read."""


def without_metadata(data: bytes) -> tuple[bytes, str]:
    """The photo re-encoded without EXIF, XMP, ICC or text chunks, and its media type
    (image/jpeg or image/png, as it came). The EXIF orientation is applied to the pixels
    first, so the picture still stands the right way up."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                kind = image.format
                if kind not in ("JPEG", "PNG"):
                    raise UnreadablePhoto("only JPEG and PNG photos are accepted")
                if image.width * image.height > MAX_PIXELS:
                    raise UnreadablePhoto("the photo has too many pixels")
                image.load()
                upright = ImageOps.exif_transpose(image)
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombWarning,
            Image.DecompressionBombError) as error:
        raise UnreadablePhoto("the photo could not be read as an image") from error
    # A new image holding only the pixels: nothing of the original's info dict survives.
    clean = Image.new(upright.mode, upright.size)
    clean.paste(upright)
    if upright.mode == "P" and upright.getpalette():
        clean.putpalette(upright.getpalette())
    out = io.BytesIO()
    if kind == "JPEG":
        if clean.mode not in ("RGB", "L", "CMYK"):
            clean = clean.convert("RGB")
        clean.save(out, format="JPEG", quality=90)
        return out.getvalue(), "image/jpeg"
    clean.save(out, format="PNG", optimize=False)
    return out.getvalue(), "image/png"
