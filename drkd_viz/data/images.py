"""Safe image decoding: size checked before decoding, every mode converted to 8-bit RGB,
and errors that name the file."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from drkd_viz.errors import DatasetError

# 64 megapixels: larger than any detection photo (COCO's largest is 640x640), far below what
# would exhaust memory; Pillow's own bomb check (~179 MP) would come far too late.
DEFAULT_MAX_PIXELS = 64_000_000


def _open(source: str | os.PathLike | bytes, name: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # our own pixel limit (checked next, from the header) replaces Pillow's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except FileNotFoundError:
        raise DatasetError(f"image file not found: {name}") from None
    except Image.DecompressionBombError as exc:
        raise DatasetError(f"{name} is far too large and was not decoded: {exc}") from None
    except UnidentifiedImageError:
        raise DatasetError(
            f"cannot read {name}: not an image file Pillow can decode (is it corrupt or truncated?)"
        ) from None
    except OSError as exc:
        raise DatasetError(f"cannot read {name}: {exc}") from None


def to_rgb8(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB: grey and palette images are expanded, alpha is
    composited over mid-grey, 16/32-bit integer and float images are rescaled by their range."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(arr.round().astype(np.uint8), "L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (128, 128, 128, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(
    source: str | os.PathLike | bytes,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    name: str | None = None,
    expected_size: tuple[int, int] | None = None,
) -> Image.Image:
    """Decode an image file (or bytes) to an 8-bit RGB Pillow image.

    ``expected_size`` is (width, height) as the annotation file states it; a different size on
    disk is an error, because the boxes would not fit the pixels.
    """
    name = name or (str(source) if not isinstance(source, bytes) else "uploaded image")
    if not isinstance(source, bytes) and not Path(source).is_file():
        raise DatasetError(f"image file not found: {name}")
    image = _open(source, name)
    width, height = image.size
    if width * height > max_pixels:
        raise DatasetError(
            f"{name} is {width}x{height} = {width * height / 1e6:.0f} megapixels, above the limit of "
            f"{max_pixels / 1e6:.0f} MP; it was not decoded. Downscale it, or raise max_pixels if it is genuine."
        )
    if expected_size is not None and (width, height) != tuple(expected_size):
        raise DatasetError(
            f"{name} is {width}x{height} pixels but the annotation file says "
            f"{expected_size[0]}x{expected_size[1]}; the boxes would not fit. Fix 'width'/'height' in the JSON."
        )
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"cannot decode {name}: {exc} (the file is corrupt or truncated)") from None
    return to_rgb8(image)
