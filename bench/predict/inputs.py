"""What `segbench predict` reads: one image, a folder of images (searched recursively), or a video file.

`plan_input` checks the input before anything is decoded or written (it exists, its kind is known, a folder holds
images, the video library is installed); `read_frames` then yields the frames one at a time with their decode time,
so a long video is never held in memory.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from segbench.datasets.pairs import IMAGE_EXTENSIONS, read_image
from segbench.errors import ConfigError, SegbenchError

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv")
VIDEO_EXTRA_HINT = "pip install 'segbench[video]'"


@dataclass(frozen=True)
class InputPlan:
    """The frames to predict: `images` as (path, output name without extension) pairs, or one `video`.

    Output names are relative paths: for a folder, the image's path under it (sub-folders kept); for one image, its
    stem; for a video, `<video stem>_<frame index:06d>`.
    """

    source: Path
    images: list[tuple[Path, str]] = field(default_factory=list)
    video: Path | None = None
    fps: float | None = None  # the video's frame rate (frames/s), None for images

    @property
    def is_video(self) -> bool:
        return self.video is not None


@dataclass
class Frame:
    name: str  # output name without extension, a relative path (see InputPlan)
    image: Image.Image  # RGB, native size
    decode_s: float  # seconds spent reading and decoding this frame


def plan_input(path: Path) -> InputPlan:
    """Check `--input` and list its images (sorted by relative path); ConfigError naming the problem otherwise."""
    path = Path(path)
    if path.is_dir():
        images = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not images:
            raise ConfigError(
                f"--input folder {path} holds no images ({', '.join(IMAGE_EXTENSIONS)}, searched with its "
                "sub-folders); point --input at images or a video file."
            )
        named = [(p, p.relative_to(path).with_suffix("").as_posix()) for p in images]
        seen: dict[str, Path] = {}
        for image, name in named:
            if name in seen:
                raise ConfigError(f"--input images {seen[name]} and {image} would both be written as {name}.png; "
                                  "rename one of them.")
            seen[name] = image
        return InputPlan(path, images=named)
    if not path.is_file():
        raise ConfigError(f"--input {path} does not exist; pass an image, a folder of images or a video file.")
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return InputPlan(path, images=[(path, path.stem)])
    if suffix in VIDEO_EXTENSIONS:
        return InputPlan(path, video=path, fps=_video_fps(path))
    raise ConfigError(
        f"--input {path} has the unknown format '{suffix or 'no extension'}'; use an image "
        f"({', '.join(IMAGE_EXTENSIONS)}), a folder of images or a video ({', '.join(VIDEO_EXTENSIONS)})."
    )


def video_library():
    """imageio's v2 API with the ffmpeg plugin (imageio-ffmpeg ships its own ffmpeg binary); ConfigError without."""
    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401  (the plugin imageio needs for video)
    except ImportError:
        raise ConfigError(f"reading and writing video needs imageio and imageio-ffmpeg; {VIDEO_EXTRA_HINT}.") from None
    return imageio


def _video_fps(path: Path) -> float:
    """The frame rate of a readable video; SegbenchError when ffmpeg cannot open it."""
    imageio = video_library()
    try:
        with imageio.get_reader(path, format="FFMPEG") as reader:
            fps = float(reader.get_meta_data().get("fps") or 0)
    except Exception as exc:  # ffmpeg reports a broken file in many ways (OSError, RuntimeError, IndexError)
        raise SegbenchError(f"video {path} cannot be read ({_short(exc)}); check that it plays and is complete.") \
            from None
    return fps if fps > 0 else 25.0


def read_frames(plan: InputPlan) -> Iterator[Frame]:
    """The input's frames in order; SegbenchError naming the file (and frame) that cannot be decoded."""
    if not plan.is_video:
        for path, name in plan.images:
            start = time.perf_counter()
            image = read_image(path, "input")  # decoded and converted to RGB exactly as the dataset loaders do
            yield Frame(name, image, time.perf_counter() - start)
        return
    imageio = video_library()
    stem = plan.video.stem
    index = 0
    try:
        with imageio.get_reader(plan.video, format="FFMPEG") as reader:
            frames = iter(reader)
            while True:
                start = time.perf_counter()
                try:
                    pixels = next(frames)
                except StopIteration:
                    break
                image = Image.fromarray(np.asarray(pixels)[..., :3]).convert("RGB")
                yield Frame(f"{stem}_{index:06d}", image, time.perf_counter() - start)
                index += 1
    except SegbenchError:
        raise
    except Exception as exc:  # a corrupt stream surfaces while iterating
        raise SegbenchError(f"video {plan.video} cannot be decoded at frame {index} ({_short(exc)}).") from None
    if index == 0:
        raise SegbenchError(f"video {plan.video} holds no frames; check that it plays and is complete.")


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:160] or type(exc).__name__
