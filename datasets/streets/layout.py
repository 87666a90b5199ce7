"""Where things stand in a synthetic street, and the full rendering of one image.

`render_scene(rng, height, width)` draws everything from its own generator, so an image depends only on the seed
it was given (never on which process rendered it or in which order).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from segbench.datasets.streets.canvas import Camera, Canvas, colour, draw_billboard, draw_side
from segbench.datasets.streets.scene import (
    GAP,
    GREEN,
    HOUSE,
    LOW_FENCE,
    LOW_WALL,
    Frontage,
    Street,
    draw_building_shadows,
    draw_ego_vehicle,
    draw_ground,
    draw_sky,
    frontage_shader,
    shifted,
    vehicle_shadow,
)
from segbench.datasets.streets.shaders import (
    BICYCLE,
    BUILDING,
    BUS,
    CAR,
    FENCE,
    LIGHT,
    PERSON,
    POLE,
    RIDER,
    ROAD,
    SIDEWALK,
    SIGN,
    SKY,
    TERRAIN,
    TRUCK,
    VEGETATION,
    WALL,
    Vehicle,
    bin_or_box,
    cyclist,
    cyclist_from_behind,
    person,
    pole,
    tree,
    vehicle_end,
    vehicle_side,
)

Draw = Callable[[Canvas, Camera], None]
SIDES = ((0, -1.0), (1, 1.0))  # (index, sign of x): left, right
POLE_LOADS = ("lamp", "sign", "none", "light")


def draw_vehicle(canvas: Canvas, cam: Camera, vehicle: Vehicle, x: float, z: float) -> None:
    """Shadow, then the side facing the camera (if any), then the end facing the camera."""
    half = vehicle.width / 2
    vehicle_shadow(canvas, cam, x, z, half, vehicle.length)
    lateral = x + cam.offset
    if abs(lateral) > half:
        side_x = x - half if lateral > 0 else x + half
        draw_side(canvas, cam, side_x, z, vehicle.length, vehicle.height, vehicle_side(vehicle))
    draw_billboard(canvas, cam, x, z, half, vehicle.height, vehicle_end(vehicle))


def place_vehicles(rng: np.random.Generator, street: Street, far: float) -> list[tuple[float, Draw]]:
    rh = street.road_half
    lanes = (-rh / 2, rh / 2) if rh < 5.0 else (-0.75 * rh, -0.25 * rh, 0.25 * rh, 0.75 * rh)
    items: list[tuple[float, Draw]] = []
    occupied: list[tuple[float, float, float]] = []
    for _ in range(rng.poisson(4.0)):
        lane = lanes[rng.integers(len(lanes))]
        kind = (CAR, TRUCK, BUS)[rng.choice(3, p=(0.7, 0.15, 0.15))]
        vehicle = Vehicle.sample(rng, kind, facing_away=lane > 0)
        z = rng.uniform(4.0, min(far, 80.0))
        if any(lane == other and z < end + 2 and z + vehicle.length > start - 2 for other, start, end in occupied):
            continue
        occupied.append((lane, z, z + vehicle.length))
        items.append((z, partial(draw_vehicle, vehicle=vehicle, x=lane + rng.uniform(-0.3, 0.3), z=z)))
    for side, sign in SIDES:
        if street.parking[side] == 0 and (rh < 5.0 or rng.random() < 0.5):
            continue
        x = sign * (rh + street.parking[side] / 2 if street.parking[side] else rh - 1.1)
        z = rng.uniform(2.0, 12.0)
        while z < min(far, 70.0):
            vehicle = Vehicle.sample(rng, TRUCK if rng.random() < 0.08 else CAR, facing_away=rng.random() < 0.5)
            if rng.random() < 0.75:
                items.append((z, partial(draw_vehicle, vehicle=vehicle, x=x, z=z)))
            z += vehicle.length + rng.uniform(0.8, 9.0)
    return items


def place_people(rng: np.random.Generator, street: Street, cam: Camera, far: float) -> list[tuple[float, Draw]]:
    items: list[tuple[float, Draw]] = []
    for _ in range(rng.poisson(8.0)):
        side, sign = SIDES[rng.integers(2)]
        z = rng.uniform(3.0, min(far, 30.0))
        if rng.random() < 0.2 or street.sidewalk[side] < 1.0:
            x = rng.uniform(-street.road_half, street.road_half)
        else:
            x = sign * (street.edge(side, "lawn") + rng.uniform(0.4, street.sidewalk[side] - 0.4))
        shader, height = person(rng)
        items.append((z, partial(draw_billboard, x=x, z=z, half_width=0.4, top=height, shader=shader)))
    for _ in range(rng.poisson(3.0)):
        side, sign = SIDES[1 if rng.random() < 0.7 else 0]
        z = rng.uniform(4.0, min(far, 25.0))
        style = rng.random()
        if style < 0.55:  # riding along the road's edge
            x = sign * (street.road_half - 0.7)
            if abs(x + cam.offset) < 2.0:
                draw = partial(draw_billboard, x=x, z=z, half_width=0.35, top=1.8, shader=cyclist_from_behind(rng))
            else:
                draw = partial(draw_side, x=x, z0=z, length=1.8, top=1.9, shader=cyclist(rng, with_rider=True))
        elif style < 0.8:  # crossing
            x = rng.uniform(-street.road_half, street.road_half)
            shader = shifted(cyclist(rng, with_rider=True), 0.9)
            draw = partial(draw_billboard, x=x, z=z, half_width=0.95, top=1.9, shader=shader)
        else:  # parked on the sidewalk
            x = sign * (street.edge(side, "sidewalk") - 0.5)
            draw = partial(draw_side, x=x, z0=z, length=1.8, top=1.2, shader=cyclist(rng, with_rider=False))
        items.append((z, draw))
    return items


def place_furniture(rng: np.random.Generator, street: Street, far: float) -> list[tuple[float, Draw]]:
    items: list[tuple[float, Draw]] = []
    for side, sign in SIDES:
        curb = sign * (street.edge(side, "parking") + 0.35)
        if rng.random() < 0.85:
            z = rng.uniform(3.0, 15.0)
            while z < min(far, 90.0):
                load = POLE_LOADS[rng.choice(4, p=(0.25, 0.4, 0.1, 0.25))]
                height = {"lamp": (6, 9), "sign": (2.3, 3.2), "none": (3, 6), "light": (2.8, 3.8)}[load]
                items.append((z, _pole(rng, curb, z, rng.uniform(*height), -sign, load)))
                z += rng.uniform(8.0, 20.0)
        if rng.random() < 0.45:
            x = sign * (
                street.edge(side, "sidewalk") - 0.7 if street.sidewalk[side] > 2 else street.edge(side, "verge")
            )
            z = rng.uniform(3.0, 12.0)
            while z < min(far, 80.0):
                shader, half, top = tree(rng)
                items.append((z, partial(draw_billboard, x=x, z=z, half_width=half, top=top, shader=shader)))
                z += rng.uniform(7.0, 15.0)
        for _ in range(rng.poisson(0.4)):
            x = sign * (street.edge(side, "sidewalk") - 0.4)
            z = rng.uniform(3.0, 40.0)
            items.append((z, partial(draw_billboard, x=x, z=z, half_width=0.35, top=1.5, shader=bin_or_box(rng))))
    if rng.random() < 0.7:  # a junction: lights hanging over the road, and a sign
        z = rng.uniform(12.0, min(far, 50.0))
        for side, sign in SIDES:
            curb = sign * (street.edge(side, "parking") + 0.35)
            items.append((z, _pole(rng, curb, z, rng.uniform(5.5, 6.5), -sign, "hanging light")))
            if rng.random() < 0.5:
                items.append((z - 0.5, _pole(rng, curb, z - 0.5, rng.uniform(2.3, 3.0), -sign, "sign")))
    return items


def _pole(rng: np.random.Generator, x: float, z: float, height: float, toward_road: float, load: str) -> Draw:
    shader, reach = pole(rng, height, toward_road, load)
    return partial(draw_billboard, x=x, z=z, half_width=reach, top=height + 1.0, shader=shader)


def place_frontages(rng: np.random.Generator, street: Street, far: float) -> tuple[list[Draw], list[Draw]]:
    """(the frontage across the street's end and both sides' frontages, the low front layers before the verges)."""
    draws: list[Draw] = []
    outer = [street.edge(side, "verge") + rng.uniform(0.0, 1.0) for side, _ in SIDES]
    main = {GAP: 0.05, HOUSE: 0.53, GREEN: 0.17, LOW_WALL: 0.13, LOW_FENCE: 0.12}
    if np.isfinite(street.end):
        span = outer[0] + outer[1] + 60.0
        shader = shifted(frontage_shader(Frontage.sample(rng, span, main, 3.0)), outer[0] + 30.0)
        draws.append(
            partial(
                draw_billboard, x=(outer[1] - outer[0]) / 2, z=street.end, half_width=span / 2, top=30.0, shader=shader
            )
        )
    for side, sign in SIDES:
        shader = frontage_shader(Frontage.sample(rng, far, main, 3.0))
        draws.append(partial(draw_side, x=sign * outer[side], z0=0.2, length=far, top=30.0, shader=shader))
    front_layers: list[Draw] = []
    for side, sign in SIDES:
        if street.verge[side] > 0.5:
            low = {GAP: 0.25, GREEN: 0.1, LOW_WALL: 0.3, LOW_FENCE: 0.35}
            shader = frontage_shader(Frontage.sample(rng, far, low, 2.0))
            x = sign * (street.edge(side, "sidewalk") + 0.1)
            front_layers.append(partial(draw_side, x=x, z0=0.2, length=far, top=12.0, shader=shader))
    return draws, front_layers


# A colour cast per class, mixed in with a strength drawn per image from TINT_RANGE. Without it the shared greys and
# random paints make the scenes too hard to learn in a one-minute CPU training run; with it, colour alone still does
# not separate grey walls, buildings, roads and cars, so shape, texture and context keep mattering.
TINT_RANGE = (0.5, 0.7)
CLASS_TINT = {
    ROAD: (90, 80, 95), SIDEWALK: (190, 150, 170), BUILDING: (130, 110, 90), WALL: (110, 110, 150),
    FENCE: (175, 125, 55), POLE: (160, 160, 160), LIGHT: (240, 140, 20), SIGN: (230, 210, 40),
    VEGETATION: (60, 110, 30), TERRAIN: (160, 200, 110), SKY: (110, 150, 210), PERSON: (200, 40, 70),
    RIDER: (230, 60, 30), CAR: (40, 50, 150), TRUCK: (50, 90, 60), BUS: (40, 110, 130), BICYCLE: (130, 30, 60),
}  # fmt: skip
_TINT = np.zeros((256, 3), dtype=np.float32)
_TINTED = np.zeros(256, dtype=bool)
for _label_id, _rgb in CLASS_TINT.items():
    _TINT[_label_id], _TINTED[_label_id] = _rgb, True


def develop(canvas: Canvas, rng: np.random.Generator) -> np.ndarray:
    """Class colour cast, exposure, contrast, colour temperature, optional defocus and sensor noise -> uint8 RGB."""
    strength = np.float32(rng.uniform(*TINT_RANGE))
    image = canvas.image
    if strength > 0:
        tinted = _TINTED[canvas.label][..., None]
        image = np.where(tinted, (1 - strength) * image + strength * _TINT[canvas.label], image)
    if rng.random() < 0.5:  # a [1, 2, 1] / 4 blur in both directions
        padded = np.pad(image, ((1, 1), (1, 1), (0, 0)), mode="edge")
        image = (padded[:-2] + 2 * padded[1:-1] + padded[2:]) / 4
        image = (image[:, :-2] + 2 * image[:, 1:-1] + image[:, 2:]) / 4
    warmth = rng.uniform(-0.07, 0.07)
    gains = colour((1 + warmth, 1 + 0.2 * warmth, 1 - warmth)) * rng.uniform(0.75, 1.2)
    image = ((image - 110.0) * rng.uniform(0.85, 1.15) + 110.0) * gains
    image = image + rng.standard_normal(image.shape, dtype=np.float32) * rng.uniform(2.0, 5.0)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def render_scene(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 RGB [height, width, 3], uint8 Cityscapes label ids [height, width]) of one random street."""
    canvas = Canvas(rng, height, width)
    street = Street.sample(rng)
    cam = Camera(
        focal=width * rng.uniform(0.9, 1.2),
        horizon=height * rng.uniform(0.36, 0.52),
        centre=width * rng.uniform(0.42, 0.58),
        height=rng.uniform(1.3, 1.7),
        offset=rng.uniform(-0.6, 0.6) * street.road_half,
    )
    far = min(street.end, 300.0)
    draw_sky(canvas, rng, cam)
    draw_ground(canvas, rng, cam, street)
    frontages, front_layers = place_frontages(rng, street, far)
    for draw in frontages:
        draw(canvas, cam)
    draw_building_shadows(canvas, rng, cam, street)
    for draw in front_layers:
        draw(canvas, cam)
    items = place_vehicles(rng, street, far) + place_people(rng, street, cam, far) + place_furniture(rng, street, far)
    for _, _, draw in sorted(((z, order, draw) for order, (z, draw) in enumerate(items)), key=lambda t: (-t[0], t[1])):
        draw(canvas, cam)
    if rng.random() < 0.3:
        draw_ego_vehicle(canvas, rng)
    return develop(canvas, rng), canvas.label
