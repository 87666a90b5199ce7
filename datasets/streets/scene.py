"""A synthetic street's setting: the street seen from a car, its frontages, sky, ground, shadows and the ego bonnet.

`Street` samples a straight road and, on each side, its parking strip, lawn, sidewalk and verge, and whether a cross
street closes the view; `Frontage` samples what lines each side (houses, greenery, low walls and fences, gaps), painted
by `frontage_shader`. `draw_sky`, `draw_ground`, `draw_building_shadows`, `vehicle_shadow` and `draw_ego_vehicle` paint
onto a canvas. Labels are Cityscapes label *ids* (road = 7), some of them void (ego vehicle, parking), exactly as the
real dataset stores them.

layout.py places the frontages, traffic and street furniture and renders a whole image from these parts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from segbench.datasets.streets.canvas import Camera, Canvas, Paint, Patch, Shader, colour
from segbench.datasets.streets.shaders import (
    BUILDING,
    EGO,
    FACADES,
    FENCE,
    GLASS,
    PARKING,
    ROAD,
    SIDEWALK,
    SKY,
    TERRAIN,
    VEGETATION,
    WALL,
    pick,
)

WALLS = ((150, 150, 155), (120, 118, 132), (172, 166, 152), (102, 102, 135), (135, 128, 120))
GROUND_IDS = np.array([ROAD, SIDEWALK, PARKING, TERRAIN], dtype=np.uint8)
GAP, HOUSE, GREEN, LOW_WALL, LOW_FENCE = range(5)


# -- frontages: what lines each side of the street ---------------------------------------------------------------


@dataclass(frozen=True)
class Frontage:
    """Segments along a side plane: segment i covers u in [starts[i], starts[i+1])."""

    starts: np.ndarray
    kinds: np.ndarray
    tops: np.ndarray  # metres
    paints: np.ndarray  # [n, 3]
    window_pitch: np.ndarray  # metres between window centres along the facade
    floor_height: np.ndarray
    shops: np.ndarray  # bool: shop windows on the ground floor
    greenery_above: np.ndarray  # metres of vegetation behind and above a wall or fence

    @staticmethod
    def sample(rng: np.random.Generator, length: float, weights: dict[int, float], low_top: float) -> Frontage:
        """weights: probability of each segment kind (GAP, HOUSE, ...), need not sum to one."""
        starts, u = [], 0.0
        while u < length:
            starts.append(u)
            u += rng.uniform(5.0, 22.0)
        n = len(starts)
        p = np.asarray([weights.get(kind, 0.0) for kind in range(5)])
        kinds = rng.choice(5, size=n, p=p / p.sum())
        tops = np.where(kinds == HOUSE, rng.uniform(7, 24, n), np.where(kinds == GREEN, rng.uniform(2.5, 9, n), 0.0))
        tops = np.where((kinds == LOW_WALL) | (kinds == LOW_FENCE), rng.uniform(0.8, low_top, n), tops)
        paints = np.stack([_segment_paint(rng, kind) for kind in kinds])
        return Frontage(
            starts=np.asarray(starts),
            kinds=kinds,
            tops=tops,
            paints=paints,
            window_pitch=rng.uniform(2.2, 4.0, n),
            floor_height=rng.uniform(2.8, 3.6, n),
            shops=rng.random(n) < 0.4,
            greenery_above=np.where(rng.random(n) < 0.5, rng.uniform(1.5, 6.0, n), 0.0),
        )


def _segment_paint(rng: np.random.Generator, kind: int) -> np.ndarray:
    if kind == GREEN:
        return pick(rng, ((60, 95, 35), (85, 115, 45), (45, 75, 40), (100, 120, 60)), 12)
    if kind == LOW_FENCE:
        return pick(rng, ((120, 120, 120), (60, 90, 60), (120, 90, 60), (170, 170, 165)), 12)
    if kind == LOW_WALL:
        return pick(rng, WALLS, 12)
    return pick(rng, FACADES, 14)


def frontage_shader(front: Frontage) -> Shader:
    """Buildings with window grids, hedges and trees with leafy tops, walls with block courses, see-through fences."""

    def shade(p: Patch) -> Paint:
        u = p.u[0]
        index = np.clip(np.searchsorted(front.starts, u, side="right") - 1, 0, len(front.starts) - 1)
        kind, top = front.kinds[index][None, :], front.tops[index][None, :]
        local = (u - front.starts[index])[None, :]
        paint = front.paints[index][None, :, :]
        v = p.v
        out = Paint(p.shape)
        grain = (1.0 + 0.06 * p.low + 0.05 * p.fine)[..., None]

        greenery = front.greenery_above[index][None, :]
        wavy = 0.5 * np.sin(1.7 * u) + 0.35 * np.sin(4.1 * u + 1.0)
        leafy_top = (
            np.where(kind == GREEN, top, top + greenery) + (wavy[None, :] + 0.5 * p.low) * (greenery + 1.0) * 0.3
        )
        leaves = (v >= 0) & (v <= leafy_top) & ((kind == GREEN) | (greenery > 0) & (kind >= LOW_WALL))
        leaf_colour = colour((70, 100, 40)) * (0.8 + 0.2 * p.low + 0.15 * p.fine)[..., None]
        out.fill(leaves, VEGETATION, np.where(kind[..., None] == GREEN, paint * grain * 1.1, leaf_colour))

        house = (kind == HOUSE) & (v >= 0) & (v <= top)
        out.fill(house, BUILDING, paint * grain * np.where(local < 0.3, 0.75, 1.0)[..., None])
        pitch, floor = front.window_pitch[index][None, :], front.floor_height[index][None, :]
        column = np.abs((local % pitch) - pitch / 2) < 0.3 * pitch
        storey = ((v - 3.0) % floor) > 0.45 * floor
        windows = house & column & storey & (v > 3.0) & (v < top - 0.9)
        shops = house & front.shops[index][None, :] & (v > 0.3) & (v < 2.6) & (np.abs((local % 4.0) - 2.0) < 1.5)
        glass = GLASS * (1.0 + 0.35 * p.low)[..., None]
        out.fill(windows | shops, BUILDING, glass)
        out.fill(house & (v > top - 0.4), BUILDING, paint * 0.7)

        wall = (kind == LOW_WALL) & (v >= 0) & (v <= top)
        courses = np.where((v % 0.45) < 0.05, 0.8, 1.0)[..., None]
        out.fill(wall, WALL, paint * grain * courses)

        fence = (kind == LOW_FENCE) & (v >= 0) & (v <= top)
        bars = (np.abs((local % 0.25) - 0.125) > p.at_least(0.08, 0.45)) | (np.abs(v - top + 0.1) < 0.06)
        posts = np.abs((local % 2.5) - 1.25) > 1.15
        see_through = 0.15 * p.under + 0.55 * paint
        out.fill(fence, FENCE, np.where((bars | posts)[..., None], paint * grain, see_through))
        return out

    return shade


def shifted(shader: Shader, du: float) -> Shader:
    """The same shader with its u axis moved by du (a frontage drawn as a billboard across the street's end)."""
    return lambda patch: shader(replace(patch, u=patch.u + du))


# -- the street ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Street:
    road_half: float
    parking: tuple[float, float]  # width of the parking strip, left and right
    lawn: tuple[float, float]  # grass between the parking strip (or the road) and the sidewalk
    sidewalk: tuple[float, float]
    verge: tuple[float, float]  # terrain between the sidewalk and the frontage
    end: float  # depth where a cross street's frontage closes the view (inf: open)
    road_paint: np.ndarray
    sidewalk_paint: np.ndarray
    verge_paint: np.ndarray

    STRIPS: ClassVar[tuple[str, ...]] = ("parking", "lawn", "sidewalk", "verge")  # from the road's edge outwards

    def edge(self, side: int, what: str) -> float:
        """Lateral distance from the road centre to the outer edge of strip `what` on side 0 (left) or 1 (right)."""
        total = self.road_half
        for name in self.STRIPS[: self.STRIPS.index(what) + 1]:
            total += getattr(self, name)[side]
        return total

    @staticmethod
    def sample(rng: np.random.Generator) -> Street:
        def per_side(probability: float, low: float, high: float) -> tuple[float, float]:
            return tuple(float(rng.uniform(low, high)) if rng.random() < probability else 0.0 for _ in range(2))

        return Street(
            road_half=float(rng.uniform(3.2, 7.5)),
            parking=per_side(0.2, 2.0, 2.5),
            lawn=per_side(0.3, 1.0, 3.5),
            sidewalk=per_side(0.92, 2.2, 5.0),
            verge=per_side(0.7, 2.0, 9.0),
            end=float(rng.uniform(45, 140)) if rng.random() < 0.5 else np.inf,
            road_paint=pick(rng, ((70, 70, 74), (95, 94, 96), (115, 112, 108), (60, 60, 60)), 8),
            sidewalk_paint=pick(rng, ((150, 150, 150), (170, 160, 150), (150, 100, 90), (125, 125, 130)), 10),
            verge_paint=pick(rng, ((125, 150, 65), (150, 160, 90), (115, 140, 55), (145, 130, 80)), 10),
        )


def draw_sky(canvas: Canvas, rng: np.random.Generator, cam: Camera) -> None:
    top, bottom = {
        0: ((60, 110, 185), (165, 195, 230)),
        1: ((165, 170, 178), (205, 208, 212)),
        2: ((85, 105, 155), (225, 190, 150)),
    }[int(rng.integers(3))]
    t = np.clip(canvas.rows / max(cam.horizon, 1.0), 0, 1)[:, None, None]
    gradient = colour(top) * (1 - t) + colour(bottom) * t
    clouds = np.clip(canvas.low - rng.uniform(0.3, 1.5), 0, 1)[..., None] * rng.uniform(0.3, 0.9)
    canvas.image[:] = gradient * (1 - clouds) + colour((235, 235, 238)) * clouds
    canvas.label[:] = SKY


def ground_coordinates(
    canvas: Canvas, cam: Camera, near: float = 0.0, far: float = np.inf
) -> tuple[slice, np.ndarray, np.ndarray]:
    """Rows showing ground between depths near and far (default: all rows below the horizon), their depth z
    [h, 1] and the lateral position x [h, W] of each pixel."""
    first = int(np.clip(np.ceil(cam.horizon + 0.05), 0, canvas.height))
    if np.isfinite(far):
        first = max(first, int(np.clip(np.floor(cam.row(0.0, far)), 0, canvas.height)))
    last = canvas.height if near <= 0 else int(np.clip(np.ceil(cam.row(0.0, near)) + 1, first, canvas.height))
    rows = slice(first, last)
    z = (cam.focal * cam.height / np.maximum(canvas.rows[rows, None] - cam.horizon, 1e-3)).astype(np.float32)
    x = (canvas.cols[None, :] - np.float32(cam.centre)) * (z / np.float32(cam.focal)) - np.float32(cam.offset)
    return rows, z, x


def draw_ground(canvas: Canvas, rng: np.random.Generator, cam: Camera, street: Street) -> None:
    rows, z, x = ground_coordinates(canvas, cam)
    if rows.start >= rows.stop:
        return
    side = (x > 0).astype(np.intp)
    a = np.abs(x)
    edge = {name: np.asarray([street.edge(0, name), street.edge(1, name)])[side] for name in Street.STRIPS}
    low, fine = canvas.low[rows], canvas.fine[rows]
    ids = np.select(
        [a < street.road_half, a < edge["parking"], a < edge["lawn"], a < edge["sidewalk"]],
        [ROAD, PARKING, TERRAIN, SIDEWALK],
        TERRAIN,
    )

    road = street.road_paint * (1 + 0.07 * low + 0.05 * fine)[..., None]
    dash_phase, dash_gap = rng.uniform(0, 10), rng.uniform(6, 12)
    marking = (a < 0.09) & (((z + dash_phase) % dash_gap) < 3.0)
    marking |= (np.abs(a - street.road_half + 0.35) < 0.08) & (rng.random() < 0.7)
    if rng.random() < 0.3:
        crossing = rng.uniform(8, 30)
        marking |= (z > crossing) & (z < crossing + 3.5) & ((x % 1.0) < 0.5) & (a < street.road_half)
    road = np.where(marking[..., None], colour((215, 215, 205)) * (1 + 0.05 * fine)[..., None], road)
    tiles = ((x % 0.6) < 0.05) | ((z % 0.6) < 0.05)
    curb = (a >= edge["lawn"]) & (a < edge["lawn"] + 0.15)
    pavement = street.sidewalk_paint * np.where(tiles, 0.85, 1.0)[..., None] * (1 + 0.05 * low + 0.05 * fine)[..., None]
    pavement = np.where(curb[..., None], colour((185, 185, 180)), pavement)
    cobbles = colour((105, 95, 85)) * np.where(((x % 0.25) < 0.04) | ((z % 0.25) < 0.04), 0.7, 1.0)[..., None]
    grass = street.verge_paint * (0.85 + 0.18 * low + 0.14 * fine)[..., None]
    image = np.select([(ids == k)[..., None] for k in (ROAD, PARKING, SIDEWALK)], [road, cobbles, pavement], grass)
    canvas.image[rows] = image
    canvas.label[rows] = ids


def draw_building_shadows(canvas: Canvas, rng: np.random.Generator, cam: Camera, street: Street) -> None:
    """Shadows of the frontage on one side fall across the street, broken by gaps between buildings."""
    if rng.random() < 0.35:
        return
    rows, z, x = ground_coordinates(canvas, cam)
    sun_side = 1 if rng.random() < 0.5 else -1
    reach = rng.uniform(-0.6, 1.0) * street.road_half
    period, gap = rng.uniform(15, 40), rng.uniform(3, 12)
    lit_gap = ((z + rng.uniform(0, period)) % period) < gap
    shadow = (x * sun_side > -reach) & ~lit_gap
    canvas.shade(rows, slice(None), np.where(shadow, np.float32(rng.uniform(0.5, 0.75)), 1.0), GROUND_IDS)


def vehicle_shadow(canvas: Canvas, cam: Camera, x: float, z: float, half: float, length: float) -> None:
    rows, zs, xs = ground_coordinates(canvas, cam, near=max(z - 0.4, 0.3), far=z + length)
    if rows.start >= rows.stop:
        return
    under = (np.abs(xs - x) < half + 0.25) & (zs > z - 0.4) & (zs < z + length)
    canvas.shade(rows, slice(None), np.where(under, np.float32(0.45), 1.0), GROUND_IDS)


def draw_ego_vehicle(canvas: Canvas, rng: np.random.Generator) -> None:
    """The bonnet of the recording car at the bottom (label 'ego vehicle', ignored like in Cityscapes)."""
    h, w = canvas.height, canvas.width
    bulge = 1 - ((canvas.cols - w / 2) / (w / 2)) ** 2
    top = h * (1 - rng.uniform(0.04, 0.09) - 0.04 * bulge)
    mask = canvas.rows[:, None] > top[None, :]
    shine = pick(rng, ((30, 30, 32), (170, 170, 175), (20, 30, 60)), 10)
    canvas.image[mask] = (shine * (0.8 + 0.3 * canvas.low[..., None]))[mask]
    canvas.label[mask] = EGO
