"""Named models: what each registry name points to on the Hugging Face hub.

A name is the user-facing handle (``florence-2-base``, ``sam2.1-hiera-base-plus``); the
:mod:`grounded_sam.models.weights` module turns it into files on disk. Revisions are ``None`` (the
repo's default branch) until a verified commit is pinned here: a pin is only worth having when
it is the exact commit the weights were checked against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from grounded_sam.errors import UnknownModelError

ModelKind = Literal["detector", "segmenter"]


@dataclass(frozen=True)
class DetectorSpec:
    """A Florence-2 checkpoint in transformers' native format.

    Attributes:
        name: Registry name, also the folder name under ``models/``.
        repo_id: Hugging Face hub repository.
        revision: Git revision to fetch; ``None`` means the default branch.
        description: One line for menus and ``--help``.
        license: The weights' licence.
    """

    name: str
    repo_id: str
    description: str
    license: str = "MIT"
    revision: str | None = None

    @property
    def kind(self) -> ModelKind:
        return "detector"


@dataclass(frozen=True)
class SegmenterSpec:
    """A SAM2 checkpoint as Meta publishes it (``{"model": state_dict}`` in a ``.pt``).

    Attributes:
        name: Registry name.
        repo_id: Hugging Face hub repository.
        filename: Checkpoint file name in the repo and under ``models/sam2/``.
        config_name: Model config inside the ``sam2`` package (``sam2/<config_name>``).
        description: One line for menus and ``--help``.
        license: The weights' licence.
        revision: Git revision to fetch; ``None`` means the default branch.
    """

    name: str
    repo_id: str
    filename: str
    config_name: str
    description: str
    license: str = "Apache-2.0"
    revision: str | None = None

    @property
    def kind(self) -> ModelKind:
        return "segmenter"


DETECTORS: dict[str, DetectorSpec] = {
    spec.name: spec
    for spec in (
        DetectorSpec("florence-2-base", "florence-community/Florence-2-base", "Florence-2 base (0.23B), faster"),
        DetectorSpec("florence-2-large", "florence-community/Florence-2-large", "Florence-2 large (0.77B), more accurate"),
    )
}

SEGMENTERS: dict[str, SegmenterSpec] = {
    spec.name: spec
    for spec in (
        SegmenterSpec(
            "sam2.1-hiera-tiny", "facebook/sam2.1-hiera-tiny", "sam2.1_hiera_tiny.pt",
            "configs/sam2.1/sam2.1_hiera_t.yaml", "SAM 2.1 Hiera tiny (39M), fastest",
        ),
        SegmenterSpec(
            "sam2.1-hiera-small", "facebook/sam2.1-hiera-small", "sam2.1_hiera_small.pt",
            "configs/sam2.1/sam2.1_hiera_s.yaml", "SAM 2.1 Hiera small (46M)",
        ),
        SegmenterSpec(
            "sam2.1-hiera-base-plus", "facebook/sam2.1-hiera-base-plus", "sam2.1_hiera_base_plus.pt",
            "configs/sam2.1/sam2.1_hiera_b+.yaml", "SAM 2.1 Hiera base+ (81M), balanced",
        ),
        SegmenterSpec(
            "sam2.1-hiera-large", "facebook/sam2.1-hiera-large", "sam2.1_hiera_large.pt",
            "configs/sam2.1/sam2.1_hiera_l.yaml", "SAM 2.1 Hiera large (224M), most accurate",
        ),
    )
}

DEFAULT_DETECTOR = "florence-2-base"
DEFAULT_SEGMENTER = "sam2.1-hiera-base-plus"


def list_models(kind: ModelKind) -> list[str]:
    """Returns the registry names of one kind, in menu order."""
    return list(_table(kind))


def _table(kind: ModelKind) -> dict[str, DetectorSpec] | dict[str, SegmenterSpec]:
    if kind == "detector":
        return DETECTORS
    if kind == "segmenter":
        return SEGMENTERS
    raise ValueError(f"kind must be 'detector' or 'segmenter', but got {kind!r}")


def get_detector_spec(name: str) -> DetectorSpec:
    """Looks up a detector by registry name.

    Raises:
        UnknownModelError: If ``name`` is not registered; the message lists the valid names.
    """
    return _lookup("detector", name)  # type: ignore[return-value]


def get_segmenter_spec(name: str) -> SegmenterSpec:
    """Looks up a segmenter by registry name.

    Raises:
        UnknownModelError: If ``name`` is not registered; the message lists the valid names.
    """
    return _lookup("segmenter", name)  # type: ignore[return-value]


def _lookup(kind: ModelKind, name: str) -> DetectorSpec | SegmenterSpec:
    spec = _table(kind).get(name)
    if spec is None:
        valid = ", ".join(list_models(kind))
        raise UnknownModelError(
            f"Unknown {kind} {name!r}: expected one of {valid}, or a path to local weights (see models/README.md)."
        )
    return spec


def find_segmenter_by_filename(filename: str) -> SegmenterSpec | None:
    """Returns the registered segmenter whose checkpoint file is named ``filename``, if any."""
    for spec in SEGMENTERS.values():
        if spec.filename == filename:
            return spec
    return None
