"""Pretrained encoder weights: the names each encoder offers, finding or fetching their files, loading them.

segmentation-models-pytorch 0.6 keeps an encoder's weights in a Hugging Face Hub repository named by its
`pretrained_settings` (repo_id, revision; files config.json and model.safetensors). A `tu-` encoder is a timm model:
smp takes only "pretrained or not" for it, so `imagenet` means timm's pretrained tag of that model (its default, or
the tag in the encoder name, tu-resnet50.a1_in1k), whose pretrained_cfg names the Hub repository (hf_hub_id).

Files are fetched with `huggingface_hub.hf_hub_download` into the standard cache (HF_HOME, HF_HUB_CACHE), the call
both libraries make, and never downloaded while a cell trains: the runner resolves them first (resolve_weights) and
the cell loads the cached file (load_pretrained) through the libraries' own loading.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from torch import nn

from segbench.errors import ConfigError, SegbenchError

NO_WEIGHTS = "none"
TIMM_WEIGHTS = "imagenet"  # the one name a tu- encoder takes: timm's pretrained tag of the model
TIMM_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm's load_state_dict_from_hf tries, in this order
SMP_FILES = ("config.json", "model.safetensors")  # what smp's get_encoder downloads; the last is the weights


class WeightsUnavailable(SegbenchError):
    """A weights file is neither in the cache nor downloadable here."""


@dataclass(frozen=True)
class WeightsSource:
    """Where the library keeps one encoder's weights: a Hub repository, at `revision` (None: its main branch)."""

    encoder: str
    name: str
    library: str  # "smp" or "timm"
    repo_id: str
    revision: str | None
    files: tuple[str, ...]  # fetched before the weights file (smp's config.json)
    candidates: tuple[str, ...]  # the weights file: the first of these the repository has


@dataclass(frozen=True)
class ResolvedWeights:
    """A weights file in the local Hub cache: `path` is the snapshot file the libraries would load."""

    source: WeightsSource
    path: Path

    @property
    def revision(self) -> str:
        return self.path.parent.name  # the snapshot folder is named by the commit

    def record(self) -> dict[str, Any]:
        """The record's `weights` section (segbench.records.schema.Weights)."""
        return {"name": self.source.name, "library": self.source.library, "repo_id": self.source.repo_id,
                "revision": self.revision, "file": self.path.name, "sha256": file_sha256(self.path)}


def file_sha256(path: Path) -> str:
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return _sha256(str(resolved), stat.st_size, stat.st_mtime_ns)


@cache
def _sha256(path: str, size: int, mtime_ns: int) -> str:  # size and time: a replaced file is hashed again
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_command(encoder: str, name: str) -> str:
    return f"segbench weights fetch {encoder}:{name}"


def _timm_cfg(encoder: str) -> Any:
    from timm.models import get_pretrained_cfg

    return get_pretrained_cfg(encoder.removeprefix("tu-"))


def _smp_settings(encoder: str) -> dict[str, Any]:
    import segmentation_models_pytorch as smp

    entry = smp.encoders.encoders.get(encoder)
    return dict(entry["pretrained_settings"]) if entry else {}


def offered_weights(encoder: str) -> tuple[str, ...]:
    """The pretrained names `encoder` can start from: smp's names, `imagenet` for a timm model with Hub weights."""
    if encoder.startswith("tu-"):
        cfg = _timm_cfg(encoder)
        return (TIMM_WEIGHTS,) if cfg is not None and cfg.hf_hub_id else ()
    return tuple(_smp_settings(encoder))


def weights_problem(encoder: str, name: str) -> str | None:
    """Why `encoder` cannot start from the weights `name`, or None (always None for `none`)."""
    if name == NO_WEIGHTS:
        return None
    if encoder == "native":
        return (f"'native' is a from-scratch network with no pretrained weights; weights '{name}' needs a library "
                "encoder")
    offered = offered_weights(encoder)
    if name in offered:
        return None
    if encoder.startswith("tu-"):
        if not offered:
            return f"timm has no pretrained weights on the Hugging Face Hub for '{encoder[3:]}'"
        return (f"a timm encoder takes weights '{TIMM_WEIGHTS}' (timm's pretrained tag of the model); choose another "
                f"tag in the encoder name (e.g. tu-resnet50.a1_in1k), not weights '{name}'")
    if not offered:
        return f"segmentation-models-pytorch has no pretrained weights for '{encoder}'"
    return f"segmentation-models-pytorch offers {', '.join(offered)} for '{encoder}', not '{name}'"


def weights_source(encoder: str, name: str) -> WeightsSource:
    """The Hub repository and files of `encoder`'s weights `name`; ConfigError when it has none of that name."""
    problem = weights_problem(encoder, name)
    if problem is not None or name == NO_WEIGHTS:
        raise ConfigError(f"encoder '{encoder}' cannot start from weights '{name}': {problem or 'nothing to fetch'}.")
    if encoder.startswith("tu-"):
        repo_id, _, revision = _timm_cfg(encoder).hf_hub_id.partition("@")  # timm's hf_split
        filename = _timm_cfg(encoder).hf_hub_filename
        return WeightsSource(encoder, name, "timm", repo_id, revision or None, (),
                             (filename,) if filename else TIMM_FILES)
    settings = _smp_settings(encoder)[name]
    return WeightsSource(encoder, name, "smp", settings["repo_id"], settings.get("revision"), SMP_FILES[:-1],
                         SMP_FILES[-1:])


def _download(source: WeightsSource, filename: str, local_only: bool) -> Path:
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(source.repo_id, filename, revision=source.revision, local_files_only=local_only))


def _resolve(source: WeightsSource, local_only: bool) -> ResolvedWeights:
    """The weights file (and the files fetched with it), from the cache only or by downloading; the libraries'
    errors pass through (LocalEntryNotFoundError when a file is missing from the cache)."""
    from huggingface_hub.errors import LocalEntryNotFoundError, RemoteEntryNotFoundError

    for filename in source.files:
        _download(source, filename, local_only)
    for filename in source.candidates[:-1]:
        try:
            return ResolvedWeights(source, _download(source, filename, local_only))
        except (LocalEntryNotFoundError, RemoteEntryNotFoundError):  # the repository keeps the next form
            continue
    return ResolvedWeights(source, _download(source, source.candidates[-1], local_only))


def cached_weights(encoder: str, name: str) -> ResolvedWeights | None:
    """`encoder`'s weights `name` from the local Hub cache, without any network access; None when missing."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return _resolve(weights_source(encoder, name), local_only=True)
    except LocalEntryNotFoundError:
        return None


def fetch_weights(encoder: str, name: str) -> ResolvedWeights:
    """`encoder`'s weights `name`: from the cache, else downloaded into it. WeightsUnavailable, one sentence naming
    the encoder, the weights and the fetch command, when neither works (offline, no network, no such file)."""
    from huggingface_hub import constants

    source = weights_source(encoder, name)
    found = cached_weights(encoder, name)
    if found is not None:
        return found
    cause = None
    if constants.is_offline_mode():
        why = "HF_HUB_OFFLINE is set"
    else:
        try:
            return _resolve(source, local_only=False)
        except Exception as exc:  # no network, a proxy, a missing repository: hub and HTTP-client errors alike
            why, cause = f"the download failed: {type(exc).__name__}", exc
    raise WeightsUnavailable(
        f"encoder '{encoder}' needs its '{name}' weights ({source.repo_id}), which are not in the Hugging Face cache "
        f"({constants.HF_HUB_CACHE}) and cannot be downloaded here ({why}); run `{fetch_command(encoder, name)}` on "
        "a machine with internet and copy its cache here (or point HF_HOME at it)."
    ) from cause


def resolve_weights(pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], ResolvedWeights]:
    """Every (encoder, weights name) of `pairs` other than `none`, in the cache (fetched when it was not): the
    runner's step before any training."""
    return {pair: fetch_weights(*pair) for pair in dict.fromkeys(pairs) if pair[1] != NO_WEIGHTS}


def cached_or_fail(encoder: str, name: str) -> ResolvedWeights:
    """The cached file a cell loads; never downloads (the runner fetched it before the cell started)."""
    found = cached_weights(encoder, name)
    if found is None:
        raise WeightsUnavailable(f"encoder '{encoder}' needs its '{name}' weights, which are not in the Hugging Face "
                                 f"cache; run `{fetch_command(encoder, name)}` first.")
    return found


def load_pretrained(model: nn.Module, resolved: ResolvedWeights) -> None:
    """Load the cached file into `model.encoder` the libraries' way: smp's state dict (`load_state_dict` of
    model.safetensors, strict), or for a timm encoder smp's own timm encoder built with timm's pretrained loading
    from that file (`pretrained_cfg_overlay={"file": ...}`: head removal and key filters included), whose state is
    then copied."""
    encoder = getattr(model, "encoder", None)
    if encoder is None:
        raise ConfigError(f"this model has no separate encoder to load the '{resolved.source.name}' weights into.")
    if getattr(encoder, "_in_channels", 3) != 3:
        raise ConfigError("pretrained encoder weights take 3 input channels.")
    if resolved.source.library == "smp":
        from safetensors.torch import load_file

        encoder.load_state_dict(load_file(resolved.path, device="cpu"))
        return
    from segmentation_models_pytorch.encoders import get_encoder
    from segmentation_models_pytorch.encoders.timm_universal import TimmUniversalEncoder

    if not isinstance(encoder, TimmUniversalEncoder):
        raise ConfigError(f"pretrained timm weights are loaded into smp's timm encoder only; this model holds a "
                          f"{type(encoder).__name__} (use weights none).")
    twin = get_encoder(resolved.source.encoder, in_channels=3, depth=encoder._depth,
                       output_stride=encoder._output_stride, weights=True,
                       pretrained_cfg_overlay={"file": str(resolved.path)})
    encoder.load_state_dict(twin.state_dict())


def weights_record(encoder: str, name: str, file: Path | None) -> dict[str, Any] | None:
    """The record's `weights` section of a cell: its pretrained weights, or its grid's local encoder_weights file
    (library "file"), or None when it started from random weights."""
    if name != NO_WEIGHTS:
        return cached_or_fail(encoder, name).record()
    if file is not None:
        return {"name": "file", "library": "file", "file": str(file), "sha256": file_sha256(Path(file))}
    return None


@dataclass(frozen=True)
class CachedWeights:
    """One encoder weights file in the local Hub cache."""

    encoder: str
    name: str
    repo_id: str
    revision: str
    path: Path
    size_bytes: int


def _known_repositories() -> dict[str, tuple[str, str]]:
    """smp's Hub repositories: repo_id -> (encoder, weights name)."""
    import segmentation_models_pytorch as smp

    return {settings["repo_id"]: (encoder, name) for encoder, entry in smp.encoders.encoders.items()
            for name, settings in entry["pretrained_settings"].items()}


def list_cached() -> list[CachedWeights]:
    """The encoder weights files in the local Hub cache (smp's repositories and timm's `timm/...`), by encoder."""
    from huggingface_hub import constants, scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(constants.HF_HUB_CACHE)
    except CacheNotFound:
        return []
    known = _known_repositories()
    found = []
    for repo in info.repos:
        if repo.repo_type != "model":
            continue
        if repo.repo_id in known:
            (encoder, name), files = known[repo.repo_id], SMP_FILES[-1:]
        elif repo.repo_id.startswith("timm/"):
            encoder, name, files = f"tu-{repo.repo_id.removeprefix('timm/')}", TIMM_WEIGHTS, TIMM_FILES
        else:
            continue
        for revision in repo.revisions:
            found += [CachedWeights(encoder, name, repo.repo_id, revision.commit_hash, Path(file.file_path),
                                    file.size_on_disk) for file in revision.files if file.file_name in files]
    return sorted(found, key=lambda weights: (weights.encoder, weights.name, weights.revision))
