"""Safe image decoding: size checked before decoding, every mode converted to 8-bit RGB,
and errors that name the file."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

from drkd_viz.errors import DatasetError

if TYPE_CHECKING:  # torch is imported where used
    import torch

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


# Uploaded images (the dashboard): small enough to decode and run three detectors on in about a second on a CPU.
UPLOAD_MAX_MB = 8
UPLOAD_MAX_BYTES = UPLOAD_MAX_MB * 1024 * 1024
UPLOAD_MAX_PIXELS = 4_000_000
UPLOAD_TYPES = ("png", "jpg", "jpeg", "bmp", "webp")
UPLOAD_MAX_SIDE = 800  # longer side after decoding: the detectors resize far below this anyway


def decode_upload(data: bytes, name: str = "uploaded image") -> torch.Tensor:
    """An uploaded image as a 3 x H x W float tensor in [0, 1]: refused above ``UPLOAD_MAX_BYTES`` or
    ``UPLOAD_MAX_PIXELS`` (checked from the header, before decoding), converted to 8-bit RGB, and
    downscaled so its longer side is at most ``UPLOAD_MAX_SIDE``."""
    import torchvision.transforms.functional as TF

    if len(data) > UPLOAD_MAX_BYTES:
        raise DatasetError(f"{name} is {len(data) / 2**20:.1f} MB; the dashboard accepts at most {UPLOAD_MAX_MB} MB")
    if not data:
        raise DatasetError(f"{name} is empty")
    image = load_image(bytes(data), max_pixels=UPLOAD_MAX_PIXELS, name=name)
    scale = UPLOAD_MAX_SIDE / max(image.size)
    if scale < 1:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR)
    return TF.to_tensor(image)
