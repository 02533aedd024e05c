"""Finding model weights on disk, in the Hugging Face cache, or on the hub.

A registry name resolves, in order, to:

1. the project's ``models/`` folder (``GROUNDED_SAM_MODELS_DIR`` overrides its location):
   ``models/<detector-name>/`` for a detector, ``models/sam2/<checkpoint>.pt`` (or
   ``models/<checkpoint>.pt``) for a segmenter;
2. the Hugging Face cache (``HF_HUB_CACHE`` / ``HF_HOME``);
3. a download through ``huggingface_hub`` into that cache, unless ``HF_HUB_OFFLINE`` is set.

A local path works wherever a name does; a detector folder's family (Florence-2, Grounding DINO,
OWLv2) is read from its ``config.json`` ``model_type``. When nothing is found, :class:`ModelNotFoundError`
names every place tried and the command that downloads the weights; for a gated model it also says how
to accept the licence and log in.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from grounded_sam.errors import ModelLoadError, ModelNotFoundError, UnknownModelError
from grounded_sam.models.registry import (
    DETECTORS,
    SEGMENTERS,
    DetectorFamily,
    DetectorSpec,
    SegmenterSpec,
    family_of_model_type,
    find_segmenter_by_filename,
    get_detector_spec,
    get_segmenter_spec,
)

logger = logging.getLogger(__name__)

Source = Literal["path", "models-dir", "hf-cache", "download"]

# Files a detector folder needs; weights come as safetensors (maybe sharded) or a legacy .bin.
_DETECTOR_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
_DETECTOR_ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model"]
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class DetectorWeights:
    """Where a detector's files are.

    Attributes:
        path: Folder written by ``save_pretrained`` (model and processor together).
        source: Which place the resolver found it in.
        name: Registry name, or the path's folder name for a local path.
        family: Which detector code runs it: the registry's; None for a local path, whose family
            :func:`detector_family_of` reads from its ``config.json`` when it is loaded.
    """

    path: Path
    source: Source
    name: str
    family: DetectorFamily | None = None


@dataclass(frozen=True)
class SegmenterWeights:
    """Where a segmenter's checkpoint and model config are.

    Attributes:
        checkpoint: ``.pt`` file holding ``{"model": state_dict}``.
        config: ``.yaml`` SAM2 model config (from the ``sam2`` package or beside the checkpoint).
        source: Which place the resolver found the checkpoint in.
        name: Registry name, or the checkpoint's stem for a local path.
    """

    checkpoint: Path
    config: Path
    source: Source
    name: str


def project_models_dir() -> Path:
    """Returns the models folder: ``$GROUNDED_SAM_MODELS_DIR``, else ``models/`` beside the package."""
    override = os.environ.get("GROUNDED_SAM_MODELS_DIR")
    if override:
        return Path(override).expanduser()
    return Path(__file__).resolve().parent.parent / "models"


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set to a true value (read now, not at import time)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def hf_cache_dir() -> str:
    """The Hugging Face hub cache folder ``huggingface_hub`` uses now."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    hf_home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface"
    )
    return os.path.join(hf_home, "hub")


def looks_like_path(name_or_path: str | os.PathLike[str]) -> bool:
    """True when the argument is meant as a filesystem path rather than a registry name."""
    text = os.fspath(name_or_path)
    return (
        isinstance(name_or_path, os.PathLike)
        or os.sep in text
        or "/" in text
        or text.startswith((".", "~"))
        or text.endswith((".pt", ".pth", ".yaml"))
        or Path(text).exists()
    )


def sam2_package_config(config_name: str) -> Path:
    """Path of a model config shipped inside the ``sam2`` package, e.g. ``configs/sam2.1/sam2.1_hiera_t.yaml``.

    Raises:
        ModelNotFoundError: If the ``sam2`` package is not installed or lacks that config.
    """
    spec = importlib.util.find_spec("sam2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "The 'sam2' package is not installed, so SAM2 model configs cannot be found. "
            "Install it with: SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / config_name
    if not path.is_file():
        raise ModelNotFoundError(f"The installed sam2 package has no model config {config_name!r} (looked for {path}).")
    return path


# --------------------------------------------------------------------------- detectors


def _is_detector_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and any((path / f).is_file() for f in _DETECTOR_WEIGHT_FILES)


def detector_family_of(path: Path) -> DetectorFamily:
    """The detector family of a ``save_pretrained`` folder, from its ``config.json`` ``model_type``.

    Raises:
        ModelLoadError: ``config.json`` cannot be read.
        UnknownModelError: Its model type is not a detector this package runs.
    """
    try:
        model_type = json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError) as exc:
        raise ModelLoadError(f"Could not read {path / 'config.json'}: {exc}") from exc
    return family_of_model_type(model_type, str(path))


def detector_family(name_or_path: str | os.PathLike[str]) -> DetectorFamily:
    """The family of a detector registry name or folder, without loading or downloading anything.

    Raises:
        UnknownModelError: Neither a registered name nor a folder of a family this package runs.
        ModelLoadError: The folder's ``config.json`` cannot be read.
    """
    if not looks_like_path(name_or_path):
        return get_detector_spec(os.fspath(name_or_path)).family
    return detector_family_of(Path(name_or_path).expanduser())


def resolve_detector(
    name_or_path: str | os.PathLike[str], *, models_dir: Path | None = None, allow_download: bool = True
) -> DetectorWeights:
    """Finds a detector's folder (any registered family).

    Args:
        name_or_path: A registry name (``florence-2-base``, ``grounding-dino-tiny``...) or a folder written
            by ``save_pretrained`` (its family is read from its ``config.json`` when it is loaded).
        models_dir: The project's models folder; defaults to :func:`project_models_dir`.
        allow_download: Whether a download may be tried (it never is when ``HF_HUB_OFFLINE`` is set).

    Raises:
        ModelNotFoundError: Nothing usable was found; the message lists every place tried.
        UnknownModelError: ``name_or_path`` is neither a registered name nor a path, or the folder holds
            a model type that is no detector this package runs.
    """
    if looks_like_path(name_or_path):
        path = Path(name_or_path).expanduser()
        if _is_detector_dir(path):
            return DetectorWeights(path=path, source="path", name=path.name)
        raise ModelNotFoundError(
            f"Expected a detector folder written by transformers' save_pretrained (config.json plus "
            f"{' or '.join(_DETECTOR_WEIGHT_FILES)}) at {path}, but "
            + ("that folder lacks them." if path.is_dir() else "nothing is there.")
        )
    spec = get_detector_spec(os.fspath(name_or_path))
    models_dir = models_dir or project_models_dir()
    tried: list[str] = []

    local = models_dir / spec.name
    if _is_detector_dir(local):
        return DetectorWeights(path=local, source="models-dir", name=spec.name, family=spec.family)
    tried.append(f"{local}/ (a save_pretrained folder): not found")

    cached = _cached_snapshot(spec)
    if cached is not None:
        return DetectorWeights(path=cached, source="hf-cache", name=spec.name, family=spec.family)
    tried.append(f"Hugging Face cache {hf_cache_dir()} for {spec.repo_id}: not cached")

    downloaded = _try_download(spec, tried, allow_download)
    if downloaded is not None:
        return DetectorWeights(path=downloaded, source="download", name=spec.name, family=spec.family)
    raise ModelNotFoundError(_not_found_message(spec, tried))


def _cached_snapshot(spec: DetectorSpec) -> Path | None:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = Path(
            snapshot_download(
                spec.repo_id, revision=spec.revision, cache_dir=hf_cache_dir(), local_files_only=True,
                allow_patterns=_DETECTOR_ALLOW_PATTERNS,
            )
        )
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        return None
    return path if _is_detector_dir(path) else None


# --------------------------------------------------------------------------- segmenters


def _config_beside(checkpoint: Path) -> Path | None:
    for suffix in (".yaml", ".yml"):
        candidate = checkpoint.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


def _config_for_checkpoint(checkpoint: Path, spec: SegmenterSpec | None) -> Path:
    beside = _config_beside(checkpoint)
    if beside is not None:
        return beside
    spec = spec or find_segmenter_by_filename(checkpoint.name)
    if spec is not None:
        return sam2_package_config(spec.config_name)
    raise ModelNotFoundError(
        f"Found the SAM2 checkpoint {checkpoint} but not its model config: expected "
        f"{checkpoint.with_suffix('.yaml')} beside it, or a file name Meta publishes "
        f"(e.g. sam2.1_hiera_base_plus.pt) so the config can come from the sam2 package."
    )


def resolve_segmenter(
    name_or_path: str | os.PathLike[str], *, models_dir: Path | None = None, allow_download: bool = True
) -> SegmenterWeights:
    """Finds a SAM2 checkpoint and its model config.

    Args:
        name_or_path: A registry name (``sam2.1-hiera-base-plus``) or a ``.pt`` path. A local
            checkpoint's config is the ``.yaml`` with the same stem beside it, or, for a file name
            Meta publishes, the config inside the ``sam2`` package.
        models_dir: The project's models folder; defaults to :func:`project_models_dir`.
        allow_download: Whether a download may be tried (it never is when ``HF_HUB_OFFLINE`` is set).

    Raises:
        ModelNotFoundError: Nothing usable was found; the message lists every place tried.
        UnknownModelError: ``name_or_path`` is neither a registered name nor a path.
    """
    if looks_like_path(name_or_path):
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise ModelNotFoundError(f"Expected a SAM2 checkpoint file (.pt) at {path}, but nothing is there.")
        if path.suffix.lower() in (".yaml", ".yml"):
            raise ModelNotFoundError(
                f"Expected a SAM2 checkpoint file (.pt), but got the model config {path}. Pass the .pt; "
                "a .yaml with the same stem beside it is picked up as its config."
            )
        return SegmenterWeights(checkpoint=path, config=_config_for_checkpoint(path, None), source="path", name=path.stem)
    spec = get_segmenter_spec(os.fspath(name_or_path))
    models_dir = models_dir or project_models_dir()
    tried: list[str] = []

    for candidate in (models_dir / "sam2" / spec.filename, models_dir / spec.filename):
        if candidate.is_file():
            return SegmenterWeights(candidate, _config_for_checkpoint(candidate, spec), "models-dir", spec.name)
        tried.append(f"{candidate}: not found")

    cached = _cached_file(spec)
    if cached is not None:
        return SegmenterWeights(cached, sam2_package_config(spec.config_name), "hf-cache", spec.name)
    tried.append(f"Hugging Face cache {hf_cache_dir()} for {spec.repo_id}/{spec.filename}: not cached")

    downloaded = _try_download(spec, tried, allow_download)
    if downloaded is not None:
        return SegmenterWeights(downloaded, sam2_package_config(spec.config_name), "download", spec.name)
    raise ModelNotFoundError(_not_found_message(spec, tried))


def _cached_file(spec: SegmenterSpec) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(spec.repo_id, spec.filename, cache_dir=hf_cache_dir(), revision=spec.revision)
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None


# --------------------------------------------------------------------------- downloads


def _try_download(spec: DetectorSpec | SegmenterSpec, tried: list[str], allow_download: bool) -> Path | None:
    if hub_offline():
        tried.append(f"download of {spec.repo_id} from the Hugging Face hub: skipped because HF_HUB_OFFLINE is set")
        return None
    if not allow_download:
        tried.append(f"download of {spec.repo_id} from the Hugging Face hub: not allowed by the caller")
        return None
    from huggingface_hub.errors import GatedRepoError

    logger.info("Downloading %s from the Hugging Face hub (%s)", spec.name, spec.repo_id)
    try:
        return fetch_to_cache(spec)
    except GatedRepoError as exc:
        raise ModelNotFoundError(gated_message(spec, exc)) from exc
    except Exception as exc:  # noqa: BLE001 - any hub/network failure becomes one line of the report
        tried.append(f"download of {spec.repo_id} from the Hugging Face hub: failed ({type(exc).__name__}: {exc})")
        return None


def fetch_to_cache(spec: DetectorSpec | SegmenterSpec) -> Path:
    """Downloads a registry model into the Hugging Face cache and returns its local path."""
    from huggingface_hub import hf_hub_download, snapshot_download

    if isinstance(spec, DetectorSpec):
        return Path(
            snapshot_download(spec.repo_id, revision=spec.revision, cache_dir=hf_cache_dir(), allow_patterns=_DETECTOR_ALLOW_PATTERNS)
        )
    return Path(hf_hub_download(spec.repo_id, spec.filename, revision=spec.revision, cache_dir=hf_cache_dir()))


def download_to_models_dir(name: str, *, models_dir: Path | None = None) -> Path:
    """Downloads a registry model into the project's ``models/`` folder (the ``download`` command).

    Returns:
        The detector folder or the segmenter checkpoint written.

    Raises:
        UnknownModelError: ``name`` is not registered.
        ModelNotFoundError: ``HF_HUB_OFFLINE`` is set, so nothing can be fetched.
    """
    from huggingface_hub import hf_hub_download, snapshot_download

    models_dir = models_dir or project_models_dir()
    spec: DetectorSpec | SegmenterSpec
    if name in DETECTORS:
        spec = get_detector_spec(name)
    elif name in SEGMENTERS:
        spec = get_segmenter_spec(name)
    else:
        raise UnknownModelError(
            f"Unknown model {name!r}: expected a detector ({', '.join(DETECTORS)}) "
            f"or a segmenter ({', '.join(SEGMENTERS)})."
        )
    if hub_offline():
        raise ModelNotFoundError(f"Cannot download {name}: HF_HUB_OFFLINE is set. Unset it, or copy the weights into {models_dir}.")
    from huggingface_hub.errors import GatedRepoError

    try:
        if isinstance(spec, DetectorSpec):
            target = models_dir / spec.name
            snapshot_download(spec.repo_id, revision=spec.revision, local_dir=target, allow_patterns=_DETECTOR_ALLOW_PATTERNS)
            return target
        target_dir = models_dir / "sam2"
        return Path(hf_hub_download(spec.repo_id, spec.filename, revision=spec.revision, local_dir=target_dir))
    except GatedRepoError as exc:
        raise ModelNotFoundError(gated_message(spec, exc)) from exc


def gated_message(spec: DetectorSpec | SegmenterSpec, error: Exception | None = None) -> str:
    """What to do when the hub refuses a gated model: accept its licence on the model page, then log in."""
    refused = f" The hub refused the download ({type(error).__name__})." if error is not None else ""
    return (
        f"{spec.name} ({spec.repo_id}, {spec.license}) is a gated model: the hub serves it only to logged-in users "
        f"who accepted its licence.{refused} To get it: open https://huggingface.co/{spec.repo_id}, accept the "
        "licence there, then log in on this machine with `huggingface-cli login` (or set HF_TOKEN to an access "
        f"token), and run: python -m grounded_sam download {spec.name}"
    )


def _not_found_message(spec: DetectorSpec | SegmenterSpec, tried: list[str]) -> str:
    places = "\n".join(f"  - {line}" for line in tried)
    return (
        f"No weights found for {spec.kind} {spec.name!r}. Looked in:\n{places}\n"
        f"To fetch them (needs internet), run: python -m grounded_sam download {spec.name}\n"
        f"or pass a local path instead of the name (see models/README.md)."
        + (f"\n{gated_message(spec)}" if spec.gated else "")
    )
