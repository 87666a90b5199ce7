"""Weather, sensor and digital corruptions of an evaluation image, at severities 1-5, by the published definitions.

Source of every definition and constant: Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common
Corruptions and Perturbations", ICLR 2019 (ImageNet-C), as packaged for images of any size by Michaelis et al.,
"Benchmarking Robustness in Object Detection: Autonomous Driving when Winter is Coming", 2019 (the `imagecorruptions`
package; constants checked against bethgelab/imagecorruptions, corruptions.py at commit 952dc3e, including its
uint8 conversion, which truncates); Kamann & Rother's Cityscapes-C uses the same. The code is written here: numpy,
scipy and Pillow in place of scikit-image, OpenCV and Wand, which `imagecorruptions` needs and which fail under
NumPy 2 for some corruptions (glass blur, Gaussian blur and fog). Offered: all 19 of the package, the 15 "common"
ones (gaussian, shot and impulse noise; defocus, glass, motion and zoom blur; snow, frost, fog, brightness; contrast,
elastic transform, pixelate, JPEG compression) and the 4 "validation" ones (speckle noise, gaussian blur, spatter,
saturate). Where the package calls OpenCV (defocus blur's disc and filter, frost's resize, spatter's edge map, snow's
grey level) the same operation is written here and named in the function's docstring, as is every place where the
result differs from the package's by more than rounding. Frost blends one of five frost photographs shipped in
`frost/` (from the package; Apache-2.0, see frost/NOTICE). The random draws come from numpy's Generator, not the
package's global RandomState, so random corruptions match the package in distribution, not pixel for pixel (fed
the package's draws, the eight added last match imagecorruptions 1.1.2 within one grey level on every pixel).

Every function maps a uint8 RGB image [H, W, 3] of any size to one of the same shape, with `rng` the only source of
randomness; `corrupt` seeds it from the caller's key, so a rerun produces the same pixels. `tests/test_corruptions.py`
pins each output on a small image (one grey level of tolerance).
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable
from importlib.resources import files

import numpy as np
from PIL import Image

Corruption = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


def _unit(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float64) / 255.0


def _uint8(x: np.ndarray, top: float = 1.0) -> np.ndarray:
    """Back to uint8 as the package's `corrupt` does (`np.uint8` of the values clipped to [0, top], x 255 / top:
    truncated); `top` is 255 for the corruptions the package computes on the 0-255 scale (motion blur, frost)."""
    return (np.clip(x, 0.0, top) * (255.0 / top)).astype(np.uint8)


def _gaussian(x: np.ndarray, sigma: float | np.ndarray, mode: str = "nearest", truncate: float = 4.0) -> np.ndarray:
    """scikit-image's `gaussian` as the package calls it: rows and columns filtered (`sigma` one value or one per
    axis), channels kept apart, edges repeated and the kernel cut at 4 sigma unless told otherwise."""
    from scipy import ndimage

    sigmas = [float(s) for s in np.broadcast_to(sigma, (2,))] + [0.0] * (x.ndim - 2)
    return ndimage.gaussian_filter(x, sigmas, mode=mode, truncate=truncate)


def gaussian_noise(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    c = [0.08, 0.12, 0.18, 0.26, 0.38][severity - 1]
    x = _unit(image)
    return _uint8(x + rng.normal(size=x.shape, scale=c))


def shot_noise(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    c = [60, 25, 12, 5, 3][severity - 1]
    return _uint8(rng.poisson(_unit(image) * c) / float(c))


def impulse_noise(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Salt and pepper on `amount` of the values (channels independently), half each."""
    amount = [0.03, 0.06, 0.09, 0.17, 0.27][severity - 1]
    x = _unit(image)
    flipped = rng.random(x.shape) < amount
    salted = rng.random(x.shape) < 0.5
    x[flipped & salted] = 1.0
    x[flipped & ~salted] = 0.0
    return _uint8(x)


def speckle_noise(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    c = [0.15, 0.2, 0.35, 0.45, 0.6][severity - 1]
    x = _unit(image)
    return _uint8(x + x * rng.normal(size=x.shape, scale=c))


def gaussian_blur(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian filter per channel, sigma c, edges repeated, truncated at 4 sigma (scikit-image's defaults)."""
    sigma = [1, 2, 3, 4, 6][severity - 1]
    return _uint8(_gaussian(_unit(image), sigma))


def _filter2d(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """OpenCV's `filter2D` (correlation, edges mirrored without repeating the edge pixel: reflect-101) of each
    channel of `x` [H, W, C] with `kernel` [k, k], by FFT as OpenCV does for kernels this large."""
    from scipy.signal import fftconvolve

    half = kernel.shape[0] // 2
    padded = np.pad(x, ((half, half), (half, half), (0, 0)), mode="reflect")
    return fftconvolve(padded, kernel[::-1, ::-1, None].astype(np.float64), mode="valid", axes=(0, 1))


def _disk(radius: int, alias_blur: float) -> np.ndarray:
    """The package's `disk`: a flat disc of `radius` on a [17, 17] grid (wider beyond radius 8), summing to 1 in
    float32, antialiased as by `cv2.GaussianBlur` (3x3, 5x5 beyond radius 8; sigma `alias_blur`; reflect-101)."""
    from scipy import ndimage

    half, size = (8, 3) if radius <= 8 else (radius, 5)
    grid = np.arange(-half, half + 1)
    disc = ((grid[:, None] ** 2 + grid[None, :] ** 2) <= radius**2).astype(np.float32)
    disc /= disc.sum()
    taps = np.arange(size) - (size - 1) / 2
    weights = np.exp(-(taps**2) / (2 * alias_blur**2)).astype(np.float32)
    weights = (weights / weights.sum(dtype=np.float64)).astype(np.float32)
    for axis in (0, 1):
        disc = ndimage.correlate1d(disc, weights, axis=axis, mode="mirror")
    return disc


def defocus_blur(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Each channel filtered with an antialiased disc of radius c[0] (alias blur c[1]), as `cv2.filter2D` does
    (reflect-101 edges); the package's definition, OpenCV's operations written with scipy."""
    radius, alias_blur = [(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)][severity - 1]
    return _uint8(_filter2d(_unit(image), _disk(radius, alias_blur)))


def _glass_shuffle(x: np.ndarray, delta: int, rng: np.random.Generator) -> np.ndarray:
    """One sweep of the package's local pixel shuffle over `x` [H, W, C], without its loop (Python in release 1.1.2,
    compiled with numba at 952dc3e; in Python about 10 s per megapixel and sweep, here under 0.3 s).

    The package visits rows H-delta .. delta+1 and, in each, columns W-delta .. delta+1 (both downwards), drawing
    (dx, dy) in [-delta, delta) per pixel, and writes `x[h, w], x[h+dy, w+dx] = x[h+dy, w+dx], x[h, w]`. With
    numpy views that statement copies, it does not swap: the pixel takes the current value of its displaced
    neighbour, which keeps its own (so does ImageNet-C). The current value is the neighbour's new one when the sweep
    has already visited it, so the values move along chains of such copies; following each chain to its start
    (pointer jumping) gives every pixel at once the old pixel whose value it ends with, as the loop would."""
    height, width = x.shape[:2]
    rows = np.arange(height - delta, delta, -1)
    cols = np.arange(width - delta, delta, -1)
    if rows.size == 0 or cols.size == 0:
        return x
    shifts = rng.integers(-delta, delta, size=(rows.size, cols.size, 2))  # (dx, dy), in the package's visit order
    target = (rows[:, None] * width + cols[None, :]).ravel()
    source = ((rows[:, None] + shifts[..., 1]) * width + cols[None, :] + shifts[..., 0]).ravel()
    visit = np.full(height * width, -1)
    visit[target] = np.arange(target.size)
    source_visit = visit[source]
    step = np.arange(target.size)
    parent = np.where((source_visit >= 0) & (source_visit < step), source_visit, step)
    while True:
        grandparent = parent[parent]
        if np.array_equal(grandparent, parent):
            break
        parent = grandparent
    flat = x.reshape(height * width, -1)
    shuffled = flat.copy()
    shuffled[target] = flat[source[parent]]
    return shuffled.reshape(x.shape)


def glass_blur(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur (sigma c[0]) to uint8, c[2] sweeps of local pixel shuffles within c[1] pixels, blurred again:
    the package's definition and draws per pixel, its loop vectorised (`_glass_shuffle`)."""
    sigma, delta, sweeps = [(0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)][severity - 1]
    x = (_gaussian(_unit(image), sigma) * 255).astype(np.uint8)
    for _ in range(sweeps):
        x = _glass_shuffle(x, delta, rng)
    return _uint8(_gaussian(_unit(x), sigma))


def _motion_blur(x: np.ndarray, radius: int, sigma: float, angle: float) -> np.ndarray:
    """The package's `_motion_blur` (its own kernel, in place of Wand's motion blur): the sum of 2*radius+1 copies
    of `x` [H, W, ...] shifted along `angle` (degrees) one pixel step each (edges repeated), weighted by a
    one-sided Gaussian (sigma) summing to 1; the copies stop where the shift would leave the image, without
    renormalising (as the package does), so an image narrower than the streak darkens."""
    width = 2 * radius + 1
    taps = np.arange(width)
    kernel = np.exp(-(taps**2) / (2 * sigma**2)) / (np.sqrt(2 * np.pi) * sigma)
    kernel = kernel / np.sum(kernel)
    point = (width * np.sin(np.deg2rad(angle)), width * np.cos(np.deg2rad(angle)))
    hypot = math.hypot(point[0], point[1])
    height, breadth = x.shape[:2]
    blurred = np.zeros(x.shape, dtype=np.float64)
    for i in range(width):
        dy = -math.ceil(((i * point[0]) / hypot) - 0.5)
        dx = -math.ceil(((i * point[1]) / hypot) - 0.5)
        if abs(dy) >= height or abs(dx) >= breadth:
            break
        rows = np.clip(np.arange(height) - dy, 0, height - 1)
        cols = np.clip(np.arange(breadth) - dx, 0, breadth - 1)
        blurred += kernel[i] * np.take(np.take(x, rows, axis=0), cols, axis=1)
    return blurred


def motion_blur(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A streak of radius c[0] (sigma c[1]) at an angle drawn in [-45, 45) degrees, by the package's own kernel."""
    radius, sigma = [(10, 3), (15, 5), (15, 8), (15, 12), (20, 15)][severity - 1]
    return _uint8(_motion_blur(image, radius, sigma, rng.uniform(-45, 45)), top=255.0)


def _clipped_zoom(x: np.ndarray, factor: float, shape: tuple[int, int] | None = None) -> np.ndarray:
    """The package's `clipped_zoom`: the centre 1/factor of `x` [H, W, ...] scaled by `factor` as
    scipy.ndimage.zoom(order=1) does (linear, first and last samples on the first and last pixels), written
    separably; only its top-left `shape` is computed when given (the package crops to it). As in scipy's constant
    mode, a sample that rounding puts past the last pixel is 0 (a dark last row or column at some factors)."""
    out = x.astype(np.float64)
    for axis in (0, 1):
        size = x.shape[axis]
        crop = int(np.ceil(size / float(factor)))
        start = (size - crop) // 2
        zoomed = int(round(crop * factor))
        kept = zoomed if shape is None else min(zoomed, shape[axis])
        position = np.arange(kept) * ((crop - 1) / (zoomed - 1) if zoomed > 1 else 1.0)
        low = np.minimum(np.floor(position).astype(np.intp), crop - 1)
        high = np.minimum(low + 1, crop - 1)
        later_axes = tuple(range(1, out.ndim - axis))
        weight = np.expand_dims(position - low, later_axes)
        inside = np.expand_dims(position <= crop - 1, later_axes)
        blend = np.take(out, start + low, axis=axis) * (1 - weight) + np.take(out, start + high, axis=axis) * weight
        out = np.where(inside, blend, 0.0)
    return out.astype(x.dtype)


def zoom_blur(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """The mean of the image and its centre zoomed by each factor of c (1 to 1.3), as the package computes it (in
    float32)."""
    factors = [np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01), np.arange(1, 1.21, 0.02),
               np.arange(1, 1.26, 0.02), np.arange(1, 1.31, 0.03)][severity - 1]
    x = (image / 255.0).astype(np.float32)
    total = np.zeros_like(x)
    for factor in factors:
        total += _clipped_zoom(x, factor, x.shape[:2])
    return _uint8((x + total) / (len(factors) + 1))


def _hsv(image: np.ndarray) -> np.ndarray:
    from matplotlib.colors import rgb_to_hsv

    return rgb_to_hsv(_unit(image))


def _rgb(hsv: np.ndarray) -> np.ndarray:
    from matplotlib.colors import hsv_to_rgb

    return _uint8(hsv_to_rgb(np.clip(hsv, 0.0, 1.0)))


def brightness(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    c = [0.1, 0.2, 0.3, 0.4, 0.5][severity - 1]
    hsv = _hsv(image)
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0.0, 1.0)
    return _rgb(hsv)


def saturate(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    scale, shift = [(0.3, 0.0), (0.1, 0.0), (2.0, 0.0), (5.0, 0.1), (20.0, 0.2)][severity - 1]
    hsv = _hsv(image)
    hsv[..., 1] = np.clip(hsv[..., 1] * scale + shift, 0.0, 1.0)
    return _rgb(hsv)


def contrast(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    c = [0.4, 0.3, 0.2, 0.1, 0.05][severity - 1]
    x = _unit(image)
    means = x.mean(axis=(0, 1), keepdims=True)
    return _uint8((x - means) * c + means)


def jpeg_compression(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    quality = [25, 18, 15, 10, 7][severity - 1]
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def pixelate(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    c = [0.6, 0.5, 0.4, 0.3, 0.25][severity - 1]
    height, width = image.shape[:2]
    small = Image.fromarray(image).resize((max(1, int(width * c)), max(1, int(height * c))), Image.BOX)
    return np.asarray(small.resize((width, height), Image.NEAREST))


def plasma_fractal(size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """A [size, size] diamond-square height map in [0, 1] (size a power of 2), roughness falling by `decay` per
    level: the fog's density."""
    field = np.zeros((size, size), dtype=np.float64)
    step, wibble = size, 100.0

    def wibbled_mean(total: np.ndarray) -> np.ndarray:
        return total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)

    while step >= 2:
        half = step // 2
        corners = field[0:size:step, 0:size:step]
        squares = corners + np.roll(corners, -1, axis=0)
        squares = squares + np.roll(squares, -1, axis=1)
        field[half:size:step, half:size:step] = wibbled_mean(squares)
        centres = field[half:size:step, half:size:step]
        corners = field[0:size:step, 0:size:step]
        field[0:size:step, half:size:step] = wibbled_mean(centres + np.roll(centres, 1, axis=0)
                                                          + corners + np.roll(corners, -1, axis=1))
        field[half:size:step, 0:size:step] = wibbled_mean(centres + np.roll(centres, 1, axis=1)
                                                          + corners + np.roll(corners, -1, axis=0))
        step //= 2
        wibble /= decay
    field -= field.min()
    return field / field.max()


def fog(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    thickness, decay = [(1.5, 2.0), (2.0, 2.0), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)][severity - 1]
    height, width = image.shape[:2]
    size = 1 << max(1, int(np.ceil(np.log2(max(height, width)))))
    x = _unit(image)
    top = x.max()
    x = x + thickness * plasma_fractal(size, decay, rng)[:height, :width, None]
    return _uint8(x * top / (top + thickness))


def snow(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Flakes (Gaussian noise at c[0] +- c[1], zoomed by c[2], kept above c[3]) streaked by the motion blur (radius
    c[4], sigma c[5], angle drawn in [-135, -45) degrees) and added twice (turned by 180 degrees) to the image
    blended (c[6]) with its brightened grey level (OpenCV's RGB2GRAY weights in float32): the package's definition."""
    loc, scale, zoom, threshold, radius, sigma, keep = [
        (0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7), (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
        (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65), (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)][severity - 1]
    x = image.astype(np.float32) / 255.0
    height, width = x.shape[:2]
    flakes = _clipped_zoom(rng.normal(loc, scale, size=(height, width))[..., None], zoom)[..., 0]
    flakes[flakes < threshold] = 0
    flakes = _motion_blur(np.clip(flakes, 0, 1), radius, sigma, rng.uniform(-135, -45))
    flakes = (np.round(flakes * 255).astype(np.uint8) / 255.0)[:height, :width, None]
    grey = x[..., 0] * np.float32(0.299) + x[..., 1] * np.float32(0.587) + x[..., 2] * np.float32(0.114)
    x = keep * x + (1 - keep) * np.maximum(x, grey[..., None] * 1.5 + 0.5)
    return _uint8(x + flakes + np.rot90(flakes, k=2))


FROST_IMAGES = ("frost1.webp", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")  # frost1: see NOTICE


@functools.cache
def _frost_image(index: int) -> np.ndarray:
    """Frost photograph `index` (0-4) as uint8 RGB, its alpha channel dropped as `cv2.imread` drops it."""
    with (files(f"{__package__}.frost") / FROST_IMAGES[index]).open("rb") as stream:
        pixels = np.asarray(Image.open(stream).convert("RGB"))
    pixels.flags.writeable = False
    return pixels


def _cubic_taps(positions: np.ndarray, size: int, resized: int) -> tuple[np.ndarray, np.ndarray]:
    """`cv2.resize`'s INTER_CUBIC along one axis (`size` -> `resized` samples) at output `positions`: the four
    source indices [n, 4] (edges repeated) and their weights [n, 4] (A = -0.75, float32 as OpenCV computes them)."""
    at = ((positions + 0.5) * (1.0 / (resized / size)) - 0.5).astype(np.float32)
    start = np.floor(at)
    t = at - start
    a = np.float32(-0.75)
    w0 = ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a
    w1 = ((a + 2) * t - (a + 3)) * t * t + 1
    w2 = ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1
    w3 = 1 - w0 - w1 - w2
    index = np.clip(start.astype(np.int64)[:, None] + np.arange(-1, 3), 0, size - 1)
    return index, np.stack([w0, w1, w2, w3], axis=-1).astype(np.float64)


def _resize_cubic(pixels: np.ndarray, resized: tuple[int, int], rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Rows `rows` and columns `cols` of `cv2.resize(pixels, resized[::-1], interpolation=INTER_CUBIC)` for uint8
    `pixels` [h, w, C], computed in floating point and rounded as the opencv-python 4.11 wheel does (OpenCV's
    generic 11-bit fixed-point code differs by one grey level on a few % of pixels); only the crop that is used
    gets computed."""
    row_index, row_weights = _cubic_taps(rows, pixels.shape[0], resized[0])
    col_index, col_weights = _cubic_taps(cols, pixels.shape[1], resized[1])
    source = pixels.astype(np.float64)
    across = sum(col_weights[:, k, None] * source[:, col_index[:, k]] for k in range(4))
    both = sum(row_weights[:, k, None, None] * across[row_index[:, k]] for k in range(4))
    return np.clip(np.rint(both), 0, 255)


def frost(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """c[0] x the image + c[1] x a random crop of one of the package's first five frost photographs (it draws
    `randint(5)`, so its sixth is never used and is not shipped), scaled by 1.1 x what makes it cover the image
    with `cv2.resize`'s bicubic interpolation: the package's definition, OpenCV's resize written here."""
    keep, weight = [(1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)][severity - 1]
    pixels = _frost_image(int(rng.integers(5)))
    height, width = image.shape[:2]
    scale = max(1.0, height / pixels.shape[0], width / pixels.shape[1]) * 1.1
    resized = (int(np.ceil(pixels.shape[0] * scale)), int(np.ceil(pixels.shape[1] * scale)))
    top, left = rng.integers(0, resized[0] - height), rng.integers(0, resized[1] - width)
    crop = _resize_cubic(pixels, resized, top + np.arange(height), left + np.arange(width))
    return _uint8(keep * image + weight * crop, top=255.0)


def _sum3x3(x: np.ndarray) -> np.ndarray:
    """Sum over each pixel's 3x3 neighbourhood of a 2-D array, edges reflect-101 (OpenCV's default)."""
    padded = np.pad(x, 1, mode="reflect")
    height, width = x.shape
    return sum(padded[i:i + height, j:j + width] for i in range(3) for j in range(3))


def _canny(image: np.ndarray, low: int, high: int) -> np.ndarray:
    """`cv2.Canny(image, low, high)` for uint8 `image` [H, W] with its defaults: 3x3 Sobel (edges repeated), L1
    gradient magnitude, non-maximum suppression along the gradient quantised to 4 directions (OpenCV's tan 22.5
    and tan 67.5 tests and tie rules, zero magnitude beyond the image), hysteresis over 8-neighbours. 255 on
    edges, else 0."""
    from scipy import ndimage

    p = np.pad(image.astype(np.int64), 1, mode="edge")
    dx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    dy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    magnitude = np.abs(dx) + np.abs(dy)
    height, width = magnitude.shape
    padded = np.pad(magnitude, 1)

    def beside(down: int, right: int) -> np.ndarray:
        return padded[1 + down:1 + down + height, 1 + right:1 + right + width]

    tan22 = np.abs(dx) * 13573  # round(tan(22.5 degrees) * 2**15)
    steep = np.abs(dy) << 15
    across = steep < tan22
    along = ~across & (steep > tan22 + (np.abs(dx) << 16))
    mixed = (dx ^ dy) < 0  # the gradient's diagonal runs up-right to down-left
    peak = np.where(across, (magnitude > beside(0, -1)) & (magnitude >= beside(0, 1)),
                    np.where(along, (magnitude > beside(-1, 0)) & (magnitude >= beside(1, 0)),
                             (magnitude > np.where(mixed, beside(-1, 1), beside(-1, -1)))
                             & (magnitude > np.where(mixed, beside(1, -1), beside(1, 1)))))
    candidate = peak & (magnitude > low)
    labels, _ = ndimage.label(candidate, structure=np.ones((3, 3)))
    seeds = np.unique(labels[candidate & (magnitude > high)])
    return np.where(np.isin(labels, seeds[seeds > 0]), 255, 0).astype(np.uint8)


def _chamfer_distance(zero: np.ndarray) -> np.ndarray:
    """`cv2.distanceTransform(image, cv2.DIST_L2, 5)` where `zero` marks the image's zero pixels: the 5x5 chamfer
    distance (steps 1, 1.4 and 2.1969) to the nearest one, by OpenCV's two raster passes (the backward one is the
    forward one on the image turned by 180 degrees); nothing beyond the image is near. The opencv-python wheel sums
    in float32, this in float64: distances differ by < 1e-5, which can (rarely) move a truncation to uint8
    downstream."""
    d = np.full((zero.shape[0] + 4, zero.shape[1] + 4), np.inf)
    d[2:-2, 2:-2] = np.where(zero, 0.0, np.inf)
    d = _chamfer_pass(_chamfer_pass(d)[::-1, ::-1])[::-1, ::-1]
    return np.minimum(d[2:-2, 2:-2], 2**29).astype(np.float32)


def _chamfer_pass(d: np.ndarray) -> np.ndarray:
    """OpenCV's forward pass over `d` [H + 4, W + 4] (a border of 2): top to bottom, each pixel the least of itself
    and its upper half of the 5x5 mask plus the step; the run along the row, left to right, as a running minimum."""
    straight, diagonal, knight = 1.0, 1.4, 2.1969
    d = d.copy()
    run = np.arange(d.shape[1] - 4) * straight
    for y in range(2, d.shape[0] - 2):
        above, above2 = d[y - 1], d[y - 2]
        best = np.minimum.reduce([d[y, 2:-2], above2[1:-3] + knight, above2[3:-1] + knight, above[:-4] + knight,
                                  above[1:-3] + diagonal, above[2:-2] + straight, above[3:-1] + diagonal,
                                  above[4:] + knight])
        d[y, 2:-2] = np.minimum.accumulate(best - run) + run
    return d


def _equalize_hist(image: np.ndarray) -> np.ndarray:
    """`cv2.equalizeHist` of uint8 `image`: the cumulative histogram above the lowest level, scaled to 0-255 in
    float32 and rounded."""
    counts = np.bincount(image.ravel(), minlength=256)
    lowest = int(np.flatnonzero(counts)[0])
    if counts[lowest] == image.size:
        return np.full_like(image, lowest)
    scale = np.float32(255.0) / np.float32(image.size - counts[lowest])
    lut = np.zeros(256, dtype=np.uint8)
    lut[lowest + 1:] = np.clip(np.rint(np.cumsum(counts[lowest + 1:]).astype(np.float32) * scale), 0, 255)
    return lut[image]


def _water_relief(drops: np.ndarray) -> np.ndarray:
    """The package's shading of water drops (uint8 [H, W]), its OpenCV calls written here: the distance to the
    drops' Canny edges (50, 150) capped at 20 and box-blurred, histogram-equalised, embossed and box-blurred."""
    from scipy import ndimage

    distance = np.minimum(_chamfer_distance(_canny(drops, 50, 150) == 255), 20)
    distance = (_sum3x3(distance.astype(np.float64)) * (1.0 / 9)).astype(np.float32).astype(np.uint8)
    emboss = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])
    relief = ndimage.correlate(_equalize_hist(distance).astype(np.int64), emboss, mode="mirror")
    return ((2 * _sum3x3(np.clip(relief, 0, 255)) + 9) // 18).astype(np.float32)


def spatter(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Liquid: Gaussian noise (c[0] +- c[1]) blurred (sigma c[2]) and kept above c[3]; at severities 1-3 it is
    water (pale turquoise, shaded by `_water_relief`, strength c[4]), at 4-5 mud (brown, blended in where the
    liquid's mask blurred by sigma c[4] reaches 0.8): the package's definition. One difference: where no drop
    survives (a tiny image) the package divides by zero and returns garbage; here the image is returned unchanged.
    (The package's uint8 cast of the liquid would also wrap above 1, which its draws do not reach; here it is
    clipped.)"""
    loc, scale, sigma, threshold, strength, mud = [
        (0.65, 0.3, 4, 0.69, 0.6, 0), (0.65, 0.3, 3, 0.68, 0.6, 0), (0.65, 0.3, 2, 0.68, 0.5, 0),
        (0.65, 0.3, 1, 0.65, 1.5, 1), (0.67, 0.4, 1, 0.65, 1.5, 1)][severity - 1]
    x = image.astype(np.float32) / 255.0
    liquid = _gaussian(rng.normal(loc, scale, size=x.shape[:2]), sigma)
    liquid[liquid < threshold] = 0
    if mud:
        cover = _gaussian((liquid > threshold).astype(np.float32), strength)
        cover[cover < 0.8] = 0
        brown = np.array([63, 42, 20]) / 255.0 * cover[..., None]
        return _uint8(x * (1 - cover[..., None]) + brown)
    drops = (np.clip(liquid, 0, 1) * 255).astype(np.uint8)
    water = drops * _water_relief(drops)
    peak = water.max()
    if peak == 0:
        return image.copy()
    water = water / peak * strength
    turquoise = np.array([175 / 255, 238 / 255, 238 / 255], dtype=np.float32)
    return _uint8(x + water[..., None] * turquoise)


def elastic_transform(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Each pixel read (bilinear, edges mirrored) from where a smooth random field moves it: uniform noise of
    +-0.5 % of the height, Gaussian-blurred with sigma 1 % of each side (cut at 3 sigma), times alpha c. The
    package's definition (ImageNet-C's, after Simard et al. 2003), by scipy as there, channel by channel."""
    from scipy import ndimage

    alpha = [250 * 0.05, 250 * 0.065, 250 * 0.085, 250 * 0.1, 250 * 0.12][severity - 1]
    x = image.astype(np.float32) / 255.0
    height, width = x.shape[:2]
    sigma = np.array([height, width]) * 0.01
    reach = height * 0.005
    dx, dy = ((_gaussian(rng.uniform(-reach, reach, size=(height, width)), sigma, mode="reflect", truncate=3)
               * alpha).astype(np.float32) for _ in range(2))
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    where = [rows + dy, cols + dx]
    return _uint8(np.stack([ndimage.map_coordinates(x[..., k], where, order=1, mode="reflect")
                            for k in range(x.shape[-1])], axis=-1))


# A corruption's position here seeds its draws (`corrupt`): add new ones at the end, so existing outputs stay put.
CORRUPTIONS: dict[str, Corruption] = {
    "gaussian_noise": gaussian_noise, "shot_noise": shot_noise, "impulse_noise": impulse_noise,
    "speckle_noise": speckle_noise, "gaussian_blur": gaussian_blur, "brightness": brightness,
    "saturate": saturate, "contrast": contrast, "jpeg_compression": jpeg_compression, "pixelate": pixelate,
    "fog": fog, "defocus_blur": defocus_blur, "glass_blur": glass_blur, "motion_blur": motion_blur,
    "zoom_blur": zoom_blur, "snow": snow, "frost": frost, "spatter": spatter, "elastic_transform": elastic_transform,
}


def corrupt(image: np.ndarray, name: str, severity: int, key: tuple[int, ...]) -> np.ndarray:
    """`image` (uint8 RGB) under corruption `name` at `severity` (1-5), its randomness seeded by `key` (the caller's
    cell seed and image), so the same key gives the same pixels."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption '{name}'; known: {', '.join(CORRUPTIONS)}")
    if not 1 <= severity <= 5:
        raise ValueError(f"severity must be 1-5, not {severity}")
    rng = np.random.default_rng([*key, list(CORRUPTIONS).index(name), severity])
    return np.ascontiguousarray(CORRUPTIONS[name](np.asarray(image, dtype=np.uint8), severity, rng))


class CorruptedTransform:
    """An evaluation transform that first corrupts the image (uint8, its native size): `corrupt` keyed by `seed` and
    a checksum of the image's bytes, so every image gets its own, reproducible randomness."""

    def __init__(self, inner: Callable, name: str, severity: int, seed: int) -> None:
        self.inner = inner
        self.name = name
        self.severity = severity
        self.seed = seed

    def __call__(self, image: Image.Image, label: np.ndarray):
        import zlib

        pixels = np.asarray(image.convert("RGB"))
        key = (self.seed, zlib.crc32(pixels.tobytes()))
        return self.inner(Image.fromarray(corrupt(pixels, self.name, self.severity, key)), label)
