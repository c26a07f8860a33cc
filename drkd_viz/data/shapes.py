"""Procedural drawing of the embedded dataset: object shapes, per-image class styles, backgrounds.

Everything here is pure NumPy/Pillow and takes an explicit ``numpy.random.Generator``, so an
image depends only on the seed it is given (see ``synthetic.py`` for how seeds are derived).
"""

from __future__ import annotations

import gzip
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CLASSES: tuple[str, ...] = ("circle", "triangle", "square", "pentagon", "star", "cross", "ring", "arrow")

_SUPERSAMPLE = 4  # masks are drawn 4x larger and box-filtered down: anti-aliased edges


def _regular_polygon(n: int, phase: float = -math.pi / 2) -> np.ndarray:
    t = phase + np.arange(n) * 2 * math.pi / n
    return np.stack([np.cos(t), np.sin(t)], axis=1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    t = -math.pi / 2 + np.arange(2 * points) * math.pi / points
    r = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


_ARM = 0.34
# Outlines in a unit box [-1, 1]^2; rings are two ellipses (outer filled, inner cut out).
_OUTLINES: dict[str, np.ndarray] = {
    "circle": _regular_polygon(48),
    "triangle": _regular_polygon(3) * [1.0, 1.15] + [0.0, 0.2],
    "square": np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=float) * 0.9,
    "pentagon": _regular_polygon(5),
    "star": _star(),
    "cross": np.array(
        [
            [-_ARM, -1],
            [_ARM, -1],
            [_ARM, -_ARM],
            [1, -_ARM],
            [1, _ARM],
            [_ARM, _ARM],
            [_ARM, 1],
            [-_ARM, 1],
            [-_ARM, _ARM],
            [-1, _ARM],
            [-1, -_ARM],
            [-_ARM, -_ARM],
        ],
        dtype=float,
    ),
    "ring": _regular_polygon(48),
    "arrow": np.array(
        [[-1, -0.3], [0.15, -0.3], [0.15, -0.8], [1, 0], [0.15, 0.8], [0.15, 0.3], [-1, 0.3]], dtype=float
    ),
}
_RING_INNER = 0.55

PATTERNS: tuple[str, ...] = ("solid", "stripes", "checker", "dots", "gradient", "noise")


@dataclass(frozen=True)
class ClassStyle:
    """How every instance of one class looks in one image: the shared style that makes
    instance relations informative (a tiny, ambiguous instance matches its larger siblings)."""

    colour: tuple[float, float, float]
    second_colour: tuple[float, float, float]
    pattern: str
    period: float  # pixels per pattern cycle
    angle: float  # pattern orientation, radians
    aspect: float  # width / height of the shape before rotation


def hsv_to_rgb(h: float, s: float, v: float) -> tuple[float, float, float]:
    i = int(h * 6) % 6
    f = h * 6 - math.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


def sample_styles(rng: np.random.Generator, count: int, patterns: tuple[str, ...] = PATTERNS) -> list[ClassStyle]:
    """Styles for ``count`` classes of one image, with hues spread apart so classes differ; textures are
    drawn from ``patterns``."""
    offset = rng.random()
    hues = (offset + np.arange(count) / max(count, 1) + rng.uniform(-0.04, 0.04, count)) % 1.0
    rng.shuffle(hues)
    styles = []
    for hue in hues:
        sat, val = rng.uniform(0.55, 1.0), rng.uniform(0.55, 1.0)
        colour = hsv_to_rgb(float(hue), sat, val)
        # the pattern's second colour is a shade of the same hue: classes of one image stay apart in hue
        second = hsv_to_rgb(
            float((hue + rng.uniform(-0.06, 0.06)) % 1.0), sat * rng.uniform(0.3, 1.0), val * rng.uniform(0.25, 0.6)
        )
        styles.append(
            ClassStyle(
                colour=colour,
                second_colour=second,
                pattern=str(rng.choice(patterns)),
                period=float(rng.uniform(3.0, 9.0)),
                angle=float(rng.uniform(0, math.pi)),
                aspect=float(np.exp(rng.uniform(-0.3, 0.3))),
            )
        )
    return styles


def shape_vertices(name: str, width: float, height: float, rotation: float) -> np.ndarray:
    """The outline of ``name`` scaled to a width x height box, rotated, centred on the origin."""
    pts = _OUTLINES[name] * [width / 2, height / 2]
    c, s = math.cos(rotation), math.sin(rotation)
    return pts @ np.array([[c, s], [-s, c]])


def render_alpha(name: str, width: float, height: float, rotation: float) -> np.ndarray:
    """Anti-aliased coverage mask (HxW float32 in [0, 1]) of one shape, cropped to its extent + 1 px."""
    outer = shape_vertices(name, width, height, rotation)
    lo, hi = np.floor(outer.min(0)) - 1, np.ceil(outer.max(0)) + 1
    size = (hi - lo).astype(int)
    canvas = Image.new("L", (int(size[0]) * _SUPERSAMPLE, int(size[1]) * _SUPERSAMPLE), 0)
    draw = ImageDraw.Draw(canvas)
    draw.polygon([tuple(p) for p in (outer - lo) * _SUPERSAMPLE], fill=255)
    if name == "ring":
        inner = shape_vertices(name, width * _RING_INNER, height * _RING_INNER, rotation)
        draw.polygon([tuple(p) for p in (inner - lo) * _SUPERSAMPLE], fill=0)
    small = canvas.resize((int(size[0]), int(size[1])), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


def render_texture(style: ClassStyle, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """RGB fill (HxWx3 float32 in [0,1]) of one instance in its class style."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u = xx * math.cos(style.angle) + yy * math.sin(style.angle)
    v = -xx * math.sin(style.angle) + yy * math.cos(style.angle)
    p = style.period
    if style.pattern == "solid":
        t = np.zeros((h, w), np.float32)
    elif style.pattern == "stripes":
        t = (np.floor(u / p) % 2).astype(np.float32)
    elif style.pattern == "checker":
        t = ((np.floor(u / p) + np.floor(v / p)) % 2).astype(np.float32)
    elif style.pattern == "dots":
        t = (((u % p) - p / 2) ** 2 + ((v % p) - p / 2) ** 2 < (p / 3.2) ** 2).astype(np.float32)
    elif style.pattern == "gradient":
        t = (u - u.min()) / max(float(u.max() - u.min()), 1.0)
    else:  # noise
        t = rng.random((h, w)).astype(np.float32) * 0.8
    c1, c2 = np.array(style.colour, np.float32), np.array(style.second_colour, np.float32)
    fill = c1 * (1 - t[..., None]) + c2 * t[..., None]
    # mild per-instance shading so instances are similar, not identical
    shade = 1.0 + rng.uniform(-0.08, 0.08) + 0.1 * (yy / max(h, 1) - 0.5)[..., None]
    return np.clip(fill * shade, 0, 1)


def outline_rim(fill: np.ndarray, alpha: np.ndarray, under: np.ndarray, strength: float) -> np.ndarray:
    """``fill`` with a one-pixel rim inside the shape's edge, dark where what lies under the object is
    bright and light where it is dark: every instance has a boundary you can see, against the background
    and against another object it overlaps."""
    mask = Image.fromarray((alpha * 255).astype(np.uint8))
    eroded = np.asarray(mask.filter(ImageFilter.MinFilter(3)), np.float32) / 255.0
    rim = np.clip(alpha - eroded, 0, 1)
    if rim.sum() == 0:
        return fill
    luminance = under @ np.array([0.299, 0.587, 0.114], np.float32)
    under_rim = float((luminance * rim).sum() / rim.sum())
    colour = 0.0 if under_rim > 0.45 else 1.0
    weight = (strength * rim)[..., None]
    return fill * (1 - weight) + colour * weight


# ---------------------------------------------------------------------------------------------
# Backgrounds: real photographic / measured textures bundled with matplotlib, plus clutter.
# ---------------------------------------------------------------------------------------------
def _sample_data_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data"


def _hillshade(z: np.ndarray, colormap: str) -> np.ndarray:
    from matplotlib import colormaps
    from matplotlib.colors import LightSource

    z = np.nan_to_num(z.astype(np.float64), nan=float(np.nanmean(z)))
    rgb = LightSource(azdeg=315, altdeg=45).shade(z, cmap=colormaps[colormap], blend_mode="soft", vert_exag=2)
    return rgb[..., :3].astype(np.float32)


@lru_cache(maxsize=1)
def background_sources() -> tuple[np.ndarray, ...]:
    """Float32 RGB textures: a photograph (Grace Hopper), two terrain elevation models rendered
    as shaded relief, and an MRI slice. Loaded once per process."""
    root = _sample_data_dir()
    sources = [np.asarray(Image.open(root / "grace_hopper.jpg").convert("RGB"), np.float32) / 255.0]
    with np.load(root / "jacksboro_fault_dem.npz") as dem:
        sources.append(_hillshade(dem["elevation"], "gist_earth"))
    with np.load(root / "topobathy.npz") as topo:
        sources.append(_hillshade(topo["topo"], "terrain"))
    with gzip.open(root / "s1045.ima.gz") as fh:
        mri = np.frombuffer(fh.read(), np.uint16).reshape(256, 256).astype(np.float32)
    mri = mri / mri.max()
    sources.append(np.repeat(mri[..., None], 3, axis=2))
    return tuple(sources)


def render_background(
    rng: np.random.Generator, height: int, width: int, clutter: float = 1.0, contrast: float = 0.65
) -> np.ndarray:
    """A crop of a real texture, colour-jittered, blended with a gradient and overdrawn with clutter
    (lines, arcs, soft blobs) that is not any of the object classes. ``clutter`` scales the number of
    clutter strokes and blobs; ``contrast`` weighs the texture against its own mean colour."""
    sources = background_sources()
    src = sources[int(rng.integers(len(sources)))]
    sh, sw = src.shape[:2]
    crop = int(rng.uniform(0.35, 1.0) * min(sh, sw))
    y0, x0 = int(rng.integers(0, sh - crop + 1)), int(rng.integers(0, sw - crop + 1))
    patch = Image.fromarray((src[y0 : y0 + crop, x0 : x0 + crop] * 255).astype(np.uint8))
    if rng.random() < 0.5:
        patch = patch.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    bg = np.asarray(patch.resize((width, height), Image.Resampling.BILINEAR), np.float32) / 255.0
    mix = rng.dirichlet(np.ones(3) * 2.0, size=3).astype(np.float32)  # colour jitter: mix channels
    bg = bg @ (0.6 * np.eye(3, dtype=np.float32) + 0.4 * mix)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    ang = rng.uniform(0, 2 * math.pi)
    grad = (xx * math.cos(ang) + yy * math.sin(ang)) / max(height, width)
    tint = rng.random(3).astype(np.float32)
    alpha = rng.uniform(0.1, 0.45)
    bg = bg * (1 - alpha) + alpha * tint * (0.5 + 0.5 * grad[..., None])
    bg = bg * rng.uniform(0.6, 1.1) + rng.uniform(-0.1, 0.15)
    # lower the texture's contrast a little: objects stand out, the background still carries detail
    bg = contrast * bg + (1 - contrast) * bg.mean(axis=(0, 1), keepdims=True)

    img = Image.fromarray((np.clip(bg, 0, 1) * 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(round(clutter * int(rng.integers(2, 8)))):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.random()
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        if kind < 0.5:
            pts = [(x, y)]
            for _ in range(int(rng.integers(1, 4))):
                x, y = x + rng.normal(0, width / 5), y + rng.normal(0, height / 5)
                pts.append((x, y))
            draw.line(pts, fill=colour, width=int(rng.integers(1, 3)))
        else:
            r = rng.uniform(5, max(width, height) / 3)
            start = rng.uniform(0, 360)
            draw.arc(
                [x - r, y - r, x + r, y + r],
                start,
                start + rng.uniform(40, 200),
                fill=colour,
                width=int(rng.integers(1, 3)),
            )
    blobs = Image.new("RGB", (width, height), (0, 0, 0))
    bdraw = ImageDraw.Draw(blobs)
    for _ in range(round(clutter * int(rng.integers(2, 7)))):
        x, y, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(6, 30)
        bdraw.ellipse(
            [x - r, y - r * rng.uniform(0.4, 1.6), x + r, y + r],
            fill=tuple(int(c) for c in rng.integers(0, 256, 3)),
        )
    blobs = blobs.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(4, 8))))
    out = np.asarray(img, np.float32) / 255.0
    blob = np.asarray(blobs, np.float32) / 255.0
    weight = np.clip(blob.max(axis=2, keepdims=True) * 1.5, 0, 0.6)
    return out * (1 - weight) + blob * weight
