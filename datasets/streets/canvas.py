"""Perspective geometry and painting for the synthetic street scenes (numpy only, no per-pixel Python).

World coordinates, in metres: `x` lateral (positive right) measured from the road centre, `y` height above the
ground, `z` depth ahead of the camera. A pinhole camera at height `Camera.height`, looking along the road, maps a
point to column `centre + focal * (x + offset) / z` and row `horizon + focal * (height - y) / z`.

Everything in a scene is one of two kinds of vertical plane, evaluated only inside its bounding box:
- a billboard facing the camera at one depth (people, poles, the rear of a vehicle, a street's far end),
- a side plane along the road at one lateral position (facades, fences, the side of a vehicle, a cyclist).
A shader receives the plane coordinates of each pixel (`u` along the plane, `v` height, both in metres) and returns
a `Paint`: label ids (0 = transparent) and colours.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Camera:
    focal: float  # pixels
    horizon: float  # row of the horizon
    centre: float  # column of the vanishing point
    height: float  # metres above the ground
    offset: float  # lateral position of the camera relative to the road centre: camera x = world x + offset

    def column(self, x: float, z: float) -> float:
        return self.centre + self.focal * (x + self.offset) / z

    def row(self, y: float, z: float) -> float:
        return self.horizon + self.focal * (self.height - y) / z


def smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """float32 [height, width] of roughly unit-variance noise with features about `cell` pixels wide."""
    small = rng.standard_normal((max(2, math.ceil(height / cell) + 1), max(2, math.ceil(width / cell) + 1)))
    field = np.asarray(Image.fromarray(small.astype(np.float32), mode="F").resize((width, height), Image.BILINEAR))
    return field * np.float32(1.6)  # bilinear interpolation loses about 0.6 of the variance


class Paint:
    """A shader's output over a bounding box: label ids (0 = leave the pixel alone) and RGB colours (0..255)."""

    def __init__(self, shape: tuple[int, int]) -> None:
        self.shape = shape
        self.ids = np.zeros(shape, dtype=np.uint8)
        self.colour = np.zeros((*shape, 3), dtype=np.float32)

    def fill(self, mask: np.ndarray, label_id: int, colour: np.ndarray) -> None:
        """Later fills cover earlier ones. colour: [3] or anything broadcastable to [H, W, 3]."""
        mask = np.broadcast_to(mask, self.shape)
        self.ids[mask] = label_id
        colour = np.asarray(colour, dtype=np.float32)
        self.colour[mask] = colour if colour.ndim == 1 else np.broadcast_to(colour, (*self.shape, 3))[mask]


@dataclass
class Patch:
    """What a shader sees: plane coordinates of each pixel centre (metres) and the canvas below it."""

    u: np.ndarray  # along the plane, [1, W] (billboards: lateral from the object's centre)
    v: np.ndarray  # height above the ground, [H, 1] or [H, W]
    ppm: np.ndarray | float  # pixels per metre at each column
    fine: np.ndarray  # [H, W] per-pixel noise
    low: np.ndarray  # [H, W] smooth noise
    under: np.ndarray  # [H, W, 3] what is already painted (for see-through fences and shadows)

    @property
    def shape(self) -> tuple[int, int]:
        return self.fine.shape

    def at_least(self, metres: float, pixels: float) -> np.ndarray | float:
        """`metres`, widened so that it spans at least `pixels` pixels (thin poles stay visible far away)."""
        return np.maximum(metres, pixels / self.ppm)


Shader = Callable[[Patch], Paint]


class Canvas:
    """The image (float RGB 0..255) and label-id map being painted, plus the noise fields shaders texture with."""

    def __init__(self, rng: np.random.Generator, height: int, width: int) -> None:
        self.height, self.width = height, width
        self.image = np.zeros((height, width, 3), dtype=np.float32)
        self.label = np.zeros((height, width), dtype=np.uint8)
        self.rows = np.arange(height, dtype=np.float32) + 0.5
        self.cols = np.arange(width, dtype=np.float32) + 0.5
        self.fine = rng.standard_normal((height, width), dtype=np.float32)
        self.low = smooth_noise(rng, height, width, cell=max(3.0, width / 48))

    def box(self, x0: float, x1: float, y0: float, y1: float) -> tuple[slice, slice] | None:
        """Rows and columns whose pixel centres may fall inside [x0, x1] x [y0, y1]; None when off-canvas."""
        if not all(map(math.isfinite, (x0, x1, y0, y1))):
            return None
        c0, c1 = max(0, math.floor(min(x0, x1))), min(self.width, math.ceil(max(x0, x1)) + 1)
        r0, r1 = max(0, math.floor(min(y0, y1))), min(self.height, math.ceil(max(y0, y1)) + 1)
        if c0 >= c1 or r0 >= r1:
            return None
        return slice(r0, r1), slice(c0, c1)

    def patch(self, rows: slice, cols: slice, u: np.ndarray, v: np.ndarray, ppm: np.ndarray | float) -> Patch:
        return Patch(u, v, ppm, self.fine[rows, cols], self.low[rows, cols], self.image[rows, cols])

    def apply(self, rows: slice, cols: slice, paint: Paint) -> None:
        mask = paint.ids > 0
        self.label[rows, cols][mask] = paint.ids[mask]
        self.image[rows, cols][mask] = paint.colour[mask]

    def shade(self, rows: slice, cols: slice, factor: np.ndarray, where_ids: np.ndarray) -> None:
        """Multiply the image by `factor` where the label is one of `where_ids` (shadows on the ground)."""
        mask = np.isin(self.label[rows, cols], where_ids)
        self.image[rows, cols] *= np.where(mask, factor, np.float32(1.0))[..., None]


def draw_billboard(
    canvas: Canvas, cam: Camera, x: float, z: float, half_width: float, top: float, shader: Shader
) -> None:
    """A flat object facing the camera at depth z, lateral extent x +- half_width, heights 0..top."""
    if z <= 0.2:
        return
    ppm = cam.focal / z
    reach = half_width + 1.5 / ppm  # shaders may widen thin parts to about a pixel
    box = canvas.box(cam.column(x - reach, z), cam.column(x + reach, z), cam.row(top, z) - 1.5, cam.row(0.0, z))
    if box is None:
        return
    rows, cols = box
    u = ((canvas.cols[cols] - cam.centre) / ppm - cam.offset - x).astype(np.float32)[None, :]
    v = (cam.height - (canvas.rows[rows] - cam.horizon) / ppm).astype(np.float32)[:, None]
    canvas.apply(rows, cols, shader(canvas.patch(rows, cols, u, v, ppm)))


def draw_side(canvas: Canvas, cam: Camera, x: float, z0: float, length: float, top: float, shader: Shader) -> None:
    """A vertical plane along the road at lateral x, from depth z0 to z0 + length, heights 0..top."""
    lateral = x + cam.offset
    if abs(lateral) < 0.05 or z0 + length <= 0.2:
        return
    z0 = max(z0, 0.2)
    box = canvas.box(cam.column(x, z0), cam.column(x, z0 + length), 0.0, canvas.height)
    if box is None:
        return
    _, cols = box
    with np.errstate(divide="ignore", invalid="ignore"):
        z = cam.focal * lateral / (canvas.cols[cols] - cam.centre)
    valid = np.flatnonzero(np.isfinite(z) & (z >= z0) & (z <= z0 + length))
    if valid.size == 0:
        return
    # Only the columns that see the plane, and only the rows between its top and its foot there.
    cols = slice(cols.start + valid[0], cols.start + valid[-1] + 1)
    z = z[valid[0] : valid[-1] + 1]
    inside = (z >= z0) & (z <= z0 + length)
    z = np.where(inside, z, z0).astype(np.float32)
    box = canvas.box(
        0.0, 0.0, min(cam.row(top, float(z.max())), cam.row(top, float(z.min()))), cam.row(0.0, float(z.min()))
    )
    if box is None:
        return
    rows = box[0]
    u = (z - np.float32(z0))[None, :]
    v = (
        np.float32(cam.height)
        - (canvas.rows[rows, None] - np.float32(cam.horizon)) * (z / np.float32(cam.focal))[None, :]
    )
    paint = shader(canvas.patch(rows, cols, u, v, (np.float32(cam.focal) / z)[None, :]))
    paint.ids[:, ~inside] = 0
    canvas.apply(rows, cols, paint)


def segment_distance(u: np.ndarray, v: np.ndarray, a: tuple[float, float], b: tuple[float, float]) -> np.ndarray:
    """Distance (metres) from each (u, v) to the segment a-b: thin parts of bicycles and riders."""
    au, av = u - a[0], v - a[1]
    bu, bv = b[0] - a[0], b[1] - a[1]
    t = np.clip((au * bu + av * bv) / (bu * bu + bv * bv), 0.0, 1.0)
    return np.hypot(au - t * bu, av - t * bv)


def colour(rgb: tuple[float, float, float] | np.ndarray) -> np.ndarray:
    return np.asarray(rgb, dtype=np.float32)


def textured(base: np.ndarray, patch: Patch, low: float, fine: float) -> np.ndarray:
    """base colour [3] modulated by the patch's smooth and fine noise: [H, W, 3]."""
    factor = 1.0 + low * patch.low + fine * patch.fine
    return base * factor[..., None]
