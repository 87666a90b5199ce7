"""Weather and sensor corruptions of an evaluation image, at severities 1-5, by the published definitions.

Source of every definition and constant: Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common
Corruptions and Perturbations", ICLR 2019 (ImageNet-C), as packaged for images of any size by Michaelis et al.,
"Benchmarking Robustness in Object Detection: Autonomous Driving when Winter is Coming", 2019 (the `imagecorruptions`
package; constants checked against bethgelab/imagecorruptions, corruptions.py at commit 952dc3e, including its
uint8 conversion, which truncates); Kamann & Rother's Cityscapes-C uses the same. The code is written here: numpy,
scipy and Pillow in place of scikit-image, OpenCV and Wand, which `imagecorruptions` needs and which fail under
NumPy 2 for some corruptions (glass blur, Gaussian blur and fog). Offered: 8 of the 15 "common" corruptions
(gaussian, shot and impulse noise, fog, brightness, contrast, pixelate, JPEG compression) and 3 of the 4
"validation" ones (speckle noise, gaussian blur, saturate). Not offered yet: defocus, glass, motion and zoom blur,
snow, frost (image files), spatter and the elastic transform. The random draws come from numpy's Generator, not the
package's global RandomState, so noisy corruptions match the package in distribution, not pixel for pixel.

Every function maps a uint8 RGB image [H, W, 3] to one of the same shape, with `rng` the only source of randomness;
`corrupt` seeds it from the caller's key, so a rerun produces the same pixels. `tests/test_corruptions.py` pins each
output on a small image (one grey level of tolerance).
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image

Corruption = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


def _unit(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float64) / 255.0


def _uint8(x: np.ndarray) -> np.ndarray:
    """Back to uint8 as the package's `corrupt` does (`np.uint8` of the clipped values x 255: truncated)."""
    return (np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


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
    from scipy import ndimage

    sigma = [1, 2, 3, 4, 6][severity - 1]
    x = _unit(image)
    return _uint8(np.stack([ndimage.gaussian_filter(x[..., k], sigma, mode="nearest", truncate=4.0)
                            for k in range(x.shape[-1])], axis=-1))


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


CORRUPTIONS: dict[str, Corruption] = {
    "gaussian_noise": gaussian_noise, "shot_noise": shot_noise, "impulse_noise": impulse_noise,
    "speckle_noise": speckle_noise, "gaussian_blur": gaussian_blur, "brightness": brightness,
    "saturate": saturate, "contrast": contrast, "jpeg_compression": jpeg_compression, "pixelate": pixelate,
    "fog": fog,
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
