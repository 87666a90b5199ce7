"""Appearance of the things in a synthetic street: each factory draws its random look once and returns a shader.

Colours deliberately overlap between classes (grey cars, grey walls, grey buildings, grey road; green fences and
green foliage), so a model has to use shape, texture and context rather than a per-pixel colour lookup.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segbench.datasets.labels import LABEL_BY_NAME
from segbench.datasets.streets.canvas import Paint, Patch, Shader, colour, segment_distance, textured

ID = {name: LABEL_BY_NAME[name].id for name in LABEL_BY_NAME}
ROAD, SIDEWALK, PARKING, TERRAIN = ID["road"], ID["sidewalk"], ID["parking"], ID["terrain"]
BUILDING, WALL, FENCE, VEGETATION, SKY = ID["building"], ID["wall"], ID["fence"], ID["vegetation"], ID["sky"]
POLE, LIGHT, SIGN, STATIC, EGO = ID["pole"], ID["traffic light"], ID["traffic sign"], ID["static"], ID["ego vehicle"]
PERSON, RIDER, CAR, TRUCK, BUS, BICYCLE = ID["person"], ID["rider"], ID["car"], ID["truck"], ID["bus"], ID["bicycle"]

GREYS = ((60, 60, 62), (95, 95, 98), (130, 130, 132), (165, 165, 168))
CAR_COLOURS = GREYS + ((200, 200, 205), (25, 25, 28), (150, 25, 25), (30, 50, 120), (20, 70, 45), (190, 170, 40))
CLOTHES = ((30, 30, 35), (60, 60, 70), (150, 150, 155), (120, 30, 30), (30, 60, 120), (200, 190, 170), (70, 90, 40))
SKIN = ((225, 185, 160), (190, 140, 110), (120, 85, 60))
FACADES = GREYS + ((175, 160, 135), (150, 90, 70), (205, 200, 190), (190, 175, 120), (110, 85, 70))
GLASS = colour((45, 55, 70))
TYRE = colour((22, 22, 24))


def pick(rng: np.random.Generator, choices: tuple, jitter: float = 12.0) -> np.ndarray:
    """One of `choices`, each channel moved by up to +-jitter."""
    base = np.asarray(choices[rng.integers(len(choices))], dtype=np.float32)
    return np.clip(base + rng.uniform(-jitter, jitter, 3), 0, 255).astype(np.float32)


# -- vehicles ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Vehicle:
    kind: int  # CAR, TRUCK or BUS label id
    width: float
    length: float
    height: float
    paint: np.ndarray
    facing_away: bool  # we see its rear (same direction as the camera) or its front

    @staticmethod
    def sample(rng: np.random.Generator, kind: int, facing_away: bool) -> Vehicle:
        if kind == CAR:
            dims = (rng.uniform(1.65, 1.95), rng.uniform(3.9, 4.8), rng.uniform(1.35, 1.65))
            paint = pick(rng, CAR_COLOURS, 15)
        elif kind == TRUCK:
            dims = (rng.uniform(2.3, 2.55), rng.uniform(6.5, 9.0), rng.uniform(3.0, 3.8))
            paint = pick(rng, ((215, 215, 215), (180, 180, 185), (150, 40, 35), (40, 70, 140), (200, 170, 60)), 15)
        else:
            dims = (2.55, rng.uniform(10.0, 12.5), rng.uniform(3.0, 3.3))
            paint = pick(rng, ((225, 190, 30), (200, 35, 35), (230, 230, 230), (35, 90, 160), (40, 130, 80)), 15)
        return Vehicle(kind, *dims, paint=paint, facing_away=facing_away)


def _lamp(facing_away: bool) -> np.ndarray:
    return colour((210, 30, 30)) if facing_away else colour((240, 240, 215))


def vehicle_end(vehicle: Vehicle) -> Shader:
    """The rear (or front) face; u is lateral from the vehicle's centre."""
    w, h, kind = vehicle.width / 2, vehicle.height, vehicle.kind

    def shade(p: Patch) -> Paint:
        a, v = np.abs(p.u), p.v
        out = Paint(p.shape)
        body_colour = vehicle.paint * (0.8 + 0.2 * np.clip(v / h, 0, 1))[..., None]
        if kind == CAR:
            cabin_half = w * (0.95 - 0.25 * np.clip((v - 0.58 * h) / (0.42 * h), 0, 1))
            out.fill((a <= w) & (v >= 0.12) & (v <= 0.58 * h), CAR, body_colour)
            out.fill((a <= cabin_half) & (v > 0.58 * h) & (v <= h), CAR, body_colour)
            out.fill((a <= cabin_half - 0.1) & (v > 0.63 * h) & (v < 0.94 * h), CAR, textured(GLASS, p, 0.15, 0.03))
            out.fill((a <= w) & (v >= 0.12) & (v < 0.24), CAR, vehicle.paint * 0.45)
            out.fill((a > w - 0.3) & (a <= w - 0.04) & (v > 0.42 * h) & (v < 0.52 * h), CAR, _lamp(vehicle.facing_away))
            out.fill((a < 0.25) & (v > 0.26) & (v < 0.37), CAR, colour((225, 225, 220)))
            out.fill((a >= w - 0.4) & (a <= w - 0.06) & (v < 0.3), CAR, TYRE)
            return out
        out.fill((a <= w) & (v >= 0.45) & (v <= h), kind, body_colour)
        out.fill((a <= w) & (v >= 0.45) & (v < 0.75), kind, vehicle.paint * 0.4)
        out.fill((a >= w - 0.75) & (a <= w - 0.1) & (v < 0.55), kind, TYRE)
        out.fill((a > w - 0.3) & (a <= w - 0.05) & (v > 0.8) & (v < 1.0), kind, _lamp(vehicle.facing_away))
        if kind == BUS or not vehicle.facing_away:  # a bus's rear window, or any windscreen
            out.fill((a <= w - 0.15) & (v > h - 1.3) & (v < h - 0.25), kind, textured(GLASS, p, 0.15, 0.03))
        else:  # a truck's cargo doors
            out.fill((a < 0.04) & (v > 1.0) & (v < h - 0.1), kind, vehicle.paint * 0.6)
        if kind == BUS:
            out.fill((a <= w - 0.6) & (v > h - 0.22) & (v < h - 0.05), kind, colour((255, 150, 30)))
        return out

    return shade


def vehicle_side(vehicle: Vehicle) -> Shader:
    """The side facing the camera; u runs from the near end (0) to the far end (length)."""
    length, h, kind = vehicle.length, vehicle.height, vehicle.kind
    wheels = (0.7, length - 0.9) if kind == CAR else (1.3, length - 1.6, length - 2.9)
    radius = 0.32 if kind == CAR else 0.5

    def shade(p: Patch) -> Paint:
        u = p.u if vehicle.facing_away else length - p.u  # u from the rear
        v = p.v
        out = Paint(p.shape)
        body_colour = vehicle.paint * (0.72 + 0.2 * np.clip(v / h, 0, 1))[..., None]
        if kind == CAR:
            roof = (u > 0.25 * length) & (u < 0.8 * length) & (v <= h - 0.15 * np.abs(u - 0.5 * length))
            out.fill(((v >= 0.15) & (v <= 0.6 * h)) | (roof & (v > 0.55 * h)), CAR, body_colour)
            glass = roof & (v > 0.64 * h) & (v < 0.92 * h) & (u > 0.3 * length) & (u < 0.75 * length)
            out.fill(glass, CAR, textured(GLASS, p, 0.15, 0.03))
        elif kind == TRUCK:
            cab = u > length - 2.2
            out.fill(
                (v >= 0.5) & (v <= np.where(cab, h - 0.6, h)) & (np.abs(u - (length - 2.3)) > 0.15), kind, body_colour
            )
            out.fill(cab & (v > h - 1.7) & (v < h - 0.8) & (u > length - 1.3), kind, textured(GLASS, p, 0.15, 0.03))
            out.fill((v >= 0.5) & (v < 1.0) & ~cab, kind, vehicle.paint * 0.35)
        else:
            out.fill((v >= 0.35) & (v <= h), kind, body_colour)
            pillars = np.abs((u % 1.4) - 0.7) > 0.62
            out.fill((v > 1.25) & (v < h - 0.45) & (u > 0.3) & (u < length - 0.3) & ~pillars, kind, GLASS * 1.2)
            out.fill((v > 0.35) & (v < 0.7), kind, vehicle.paint * 0.55)
        for centre in wheels:
            out.fill(np.hypot(u - centre, v - radius) <= radius, kind, TYRE)
            out.fill(np.hypot(u - centre, v - radius) <= 0.4 * radius, kind, colour((120, 120, 125)))
        return out

    return shade


# -- people and bicycles -----------------------------------------------------------------------------------------


def person(rng: np.random.Generator) -> tuple[Shader, float]:
    """A pedestrian facing or leaving the camera; returns (shader, height)."""
    h = rng.uniform(1.55, 1.92)
    skin, hair = pick(rng, SKIN, 8), pick(rng, ((25, 20, 15), (80, 55, 30), (150, 120, 70)), 10)
    shirt, trousers = pick(rng, CLOTHES, 20), pick(rng, CLOTHES[:5], 15)
    stride = rng.uniform(0.0, 0.14)
    bag = rng.random() < 0.3

    def shade(p: Patch) -> Paint:
        u, v = p.u, p.v
        out = Paint(p.shape)
        hip, shoulder = 0.5 * h, 0.82 * h
        leg_offset = 0.09 + stride * np.clip(1 - v / hip, 0, 1)
        legs = (v <= hip) & ((np.abs(u - leg_offset) <= 0.075) | (np.abs(u + leg_offset) <= 0.075))
        out.fill(legs, PERSON, textured(trousers, p, 0.0, 0.05))
        out.fill(legs & (v < 0.07), PERSON, colour((30, 28, 26)))
        torso_half = 0.19 + 0.04 * ((v > 0.55 * h) & (v < 0.8 * h))
        out.fill((v > hip - 0.05) & (v <= shoulder) & (np.abs(u) <= torso_half), PERSON, textured(shirt, p, 0.0, 0.06))
        out.fill((v > shoulder - 0.02) & (v <= shoulder + 0.05) & (np.abs(u) <= 0.06), PERSON, skin)
        head = (u / 0.1) ** 2 + ((v - (h - 0.12)) / 0.125) ** 2 <= 1
        out.fill(head, PERSON, skin)
        out.fill(head & (v > h - 0.09), PERSON, hair)
        if bag:
            out.fill((u > 0.2) & (u < 0.36) & (v > 0.62 * h) & (v < 0.75 * h), PERSON, shirt * 0.5)
        return out

    return shade, h


def cyclist(rng: np.random.Generator, with_rider: bool) -> Shader:
    """A bicycle seen from the side (u from 0 to 1.8 m along it), optionally ridden; mirrored at random."""
    frame_colour = pick(rng, ((20, 20, 22), (160, 30, 30), (30, 60, 140), (200, 200, 200), (40, 110, 60)), 15)
    shirt, trousers, skin = pick(rng, CLOTHES, 20), pick(rng, CLOTHES[:5], 15), pick(rng, SKIN, 8)
    mirrored = rng.random() < 0.5
    rear, front, r = (0.38, 0.34), (1.42, 0.34), 0.33
    seat, crank, head = (0.72, 0.9), (0.85, 0.34), (1.28, 0.95)
    frame = (
        (rear, seat),
        (seat, crank),
        (crank, rear),
        (seat, head),
        (crank, head),
        (head, front),
        (head, (1.2, 1.05)),
    )

    def shade(p: Patch) -> Paint:
        u = 1.8 - p.u if mirrored else p.u
        v = p.v
        out = Paint(p.shape)
        ring, bar = p.at_least(0.08, 1.0), p.at_least(0.06, 0.9)
        for hub in (rear, front):
            out.fill(np.abs(np.hypot(u - hub[0], v - hub[1]) - r) <= ring, BICYCLE, TYRE)
        for a, b in frame:
            out.fill(segment_distance(u, v, a, b) <= bar, BICYCLE, frame_colour)
        if with_rider:
            hip, knee, shoulder = (0.72, 1.0), (1.0, 0.72), (1.02, 1.52)
            out.fill(segment_distance(u, v, hip, knee) <= 0.08, RIDER, trousers)
            out.fill(segment_distance(u, v, knee, crank) <= 0.065, RIDER, trousers)
            out.fill(segment_distance(u, v, shoulder, (1.2, 1.06)) <= 0.05, RIDER, shirt * 0.85)
            out.fill(segment_distance(u, v, hip, shoulder) <= 0.17, RIDER, textured(shirt, p, 0.0, 0.06))
            out.fill(np.hypot(u - 1.1, v - 1.72) <= 0.12, RIDER, skin)
        return out

    return shade


def cyclist_from_behind(rng: np.random.Generator) -> Shader:
    """A rider seen from behind (u lateral): mostly rider, a thin sliver of wheel."""
    shirt, trousers, skin = pick(rng, CLOTHES, 20), pick(rng, CLOTHES[:5], 15), pick(rng, SKIN, 8)

    def shade(p: Patch) -> Paint:
        u, v = p.u, p.v
        out = Paint(p.shape)
        out.fill((np.abs(u) <= p.at_least(0.03, 0.6)) & (v <= 0.68), BICYCLE, TYRE)
        out.fill((np.abs(u) <= 0.3) & (np.abs(v - 1.0) <= 0.025), BICYCLE, TYRE)
        out.fill((np.abs(np.abs(u) - 0.12) <= 0.06) & (v > 0.35) & (v <= 0.95), RIDER, trousers)
        out.fill((np.abs(u) <= 0.2) & (v > 0.9) & (v <= 1.5), RIDER, textured(shirt, p, 0.0, 0.06))
        out.fill((u / 0.11) ** 2 + ((v - 1.63) / 0.13) ** 2 <= 1, RIDER, skin * 0.6)
        return out

    return shade


# -- street furniture and nature ---------------------------------------------------------------------------------

SIGN_LOOKS = ("prohibition", "mandatory", "warning", "info", "back")


def pole(rng: np.random.Generator, height: float, toward_road: float, carries: str) -> tuple[Shader, float]:
    """A pole with a street lamp, a traffic sign, a traffic light or nothing; returns (shader, half width)."""
    half = rng.uniform(0.06, 0.12)
    metal = pick(rng, ((110, 110, 112), (70, 75, 70), (150, 150, 150), (40, 60, 45)), 10)
    sign_look = SIGN_LOOKS[rng.integers(len(SIGN_LOOKS))]
    sign_height = height - rng.uniform(0.3, 0.5) if carries == "sign" else 0.0
    arm = rng.uniform(1.2, 3.5) if carries in ("lamp", "hanging light") else 0.0
    lit = int(rng.integers(3))  # which lamp is on; also picks the backplate
    reach = arm + 0.6

    def shade(p: Patch) -> Paint:
        u, v = p.u, p.v
        out = Paint(p.shape)
        width = p.at_least(half, 1.6)
        out.fill((np.abs(u) <= width) & (v <= height), POLE, metal * (0.85 + 0.3 * (u > 0))[..., None])
        along = u * toward_road
        if arm:
            arm_bar = (along >= 0) & (along <= arm) & (np.abs(v - height) <= p.at_least(0.06, 0.5))
            out.fill(arm_bar, POLE, metal)
        if carries == "lamp":
            out.fill((along > arm - 0.5) & (along <= arm) & (v > height - 0.25) & (v <= height), POLE, metal * 1.3)
        if carries == "sign":
            _sign(out, p, u, v - sign_height, sign_look)
        if carries in ("light", "hanging light"):
            centre = arm * toward_road
            top = height - 0.05 if arm else height + 0.9
            _traffic_light(out, p, u - centre, v - top, lit)
        return out

    return shade, reach


def _sign(out: Paint, p: Patch, u: np.ndarray, dv: np.ndarray, look: str) -> None:
    r = p.at_least(0.5, 1.6)
    if look == "warning":
        shape = (dv >= -r) & (dv <= r) & (np.abs(u) <= (r - dv) * 0.58)
        face = (223, 60, 50), (235, 230, 220)
    elif look == "info":
        shape = (np.abs(u) <= r * 1.2) & (np.abs(dv) <= r * 0.8)
        face = (30, 70, 160), (230, 230, 230)
    else:
        shape = np.hypot(u, dv) <= r
        face = {"prohibition": ((200, 30, 30), (235, 235, 230)), "mandatory": ((30, 80, 170), (235, 235, 235))}.get(
            look, ((130, 130, 135), (120, 120, 125))
        )
    out.fill(shape, SIGN, colour(face[0]))
    out.fill(shape & (np.hypot(u, dv) <= 0.6 * r), SIGN, colour(face[1]))


def _traffic_light(out: Paint, p: Patch, u: np.ndarray, dv: np.ndarray, lit: int) -> None:
    """A backplate (yellow-bordered when lit is even) around a housing hanging from dv = 0 down to -1.05 m, three
    lamps, one of them lit."""
    plate = p.at_least(0.32, 1.6)
    plate_colour = colour((215, 185, 40)) if lit % 2 == 0 else colour((35, 38, 35))
    out.fill((np.abs(u) <= plate) & (dv <= 0.05) & (dv >= -1.05), LIGHT, plate_colour)
    half = p.at_least(0.2, 1.2)
    out.fill((np.abs(u) <= half) & (dv <= -0.05) & (dv >= -0.95), LIGHT, colour((35, 38, 35)))
    lamps = ((255, 40, 30), (255, 190, 30), (40, 230, 90))
    for index, lamp in enumerate(lamps):
        shade = colour(lamp) if index == lit else colour(lamp) * 0.25
        out.fill(np.hypot(u, dv + 0.17 + 0.3 * index) <= 0.1, LIGHT, shade)


def tree(rng: np.random.Generator) -> tuple[Shader, float, float]:
    """A street tree (trunk and crown are both vegetation); returns (shader, half width, height)."""
    trunk, crown = rng.uniform(1.8, 3.2), rng.uniform(1.4, 2.8)
    leaves = pick(rng, ((60, 95, 35), (85, 120, 45), (45, 75, 40), (110, 125, 50)), 10)
    centre = trunk + 0.9 * crown

    def shade(p: Patch) -> Paint:
        u, v = p.u, p.v
        out = Paint(p.shape)
        out.fill((np.abs(u) <= p.at_least(0.14, 1.0)) & (v <= centre), VEGETATION, colour((80, 62, 45)))
        blob = (u / crown) ** 2 + ((v - centre) / (1.15 * crown)) ** 2 <= 1 + 0.35 * p.low + 0.2 * p.fine
        out.fill(blob, VEGETATION, textured(leaves, p, 0.2, 0.14))
        return out

    return shade, 1.6 * crown, centre + 1.6 * crown


def bin_or_box(rng: np.random.Generator) -> Shader:
    """Street clutter labelled 'static' (ignored in evaluation)."""
    paint = pick(rng, ((40, 80, 50), (90, 90, 95), (160, 120, 40), (60, 60, 150)), 15)
    height = rng.uniform(0.8, 1.4)

    def shade(p: Patch) -> Paint:
        out = Paint(p.shape)
        out.fill((np.abs(p.u) <= 0.3) & (p.v <= height), STATIC, textured(paint, p, 0.05, 0.05))
        return out

    return shade
