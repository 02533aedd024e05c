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
#: How a detector finds boxes; each family has its own module under :mod:`grounded_sam.models`. ``sam3``
#: finds masks itself (a one-model pipeline: the segmenter is not used).
DetectorFamily = Literal["florence2", "grounding-dino", "owlv2", "sam3"]
#: ``config.json``'s ``model_type`` of each family, so a local folder says which family it is. ``facebook/sam3``
#: is a ``sam3_video`` checkpoint (the detector and the click tracker in one); ``sam3`` is the detector alone.
MODEL_TYPES: dict[str, DetectorFamily] = {"florence2": "florence2", "grounding-dino": "grounding-dino", "owlv2": "owlv2",
                                         "sam3": "sam3", "sam3_video": "sam3"}


@dataclass(frozen=True)
class DetectorSpec:
    """A detector checkpoint in transformers' native format (loaded without ``trust_remote_code``).

    Attributes:
        name: Registry name, also the folder name under ``models/``.
        repo_id: Hugging Face hub repository.
        description: One line for menus and ``--help``: size and what it is good at.
        family: Which detector code loads and runs it (see :data:`DetectorFamily`).
        license: The weights' licence.
        size: Parameter count, for menus (``"0.23B"``).
        gated: Whether the hub asks users to accept a licence before downloading.
        revision: Git revision to fetch; ``None`` means the default branch.
    """

    name: str
    repo_id: str
    description: str
    family: DetectorFamily = "florence2"
    license: str = "MIT"
    size: str = ""
    gated: bool = False
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
        size: Parameter count, for menus (``"39M"``).
        gated: Whether the hub asks users to accept a licence before downloading.
        revision: Git revision to fetch; ``None`` means the default branch.
    """

    name: str
    repo_id: str
    filename: str
    config_name: str
    description: str
    license: str = "Apache-2.0"
    size: str = ""
    gated: bool = False
    revision: str | None = None

    @property
    def kind(self) -> ModelKind:
        return "segmenter"


DETECTORS: dict[str, DetectorSpec] = {
    spec.name: spec
    for spec in (
        DetectorSpec("florence-2-base", "florence-community/Florence-2-base", "Florence-2 base (0.23B), faster",
                     size="0.23B"),
        DetectorSpec("florence-2-large", "florence-community/Florence-2-large", "Florence-2 large (0.77B), more accurate",
                     size="0.77B"),
        DetectorSpec("grounding-dino-tiny", "IDEA-Research/grounding-dino-tiny",
                     "Grounding DINO tiny (172M): scored boxes, all categories in one text query",
                     family="grounding-dino", license="Apache-2.0", size="172M"),
        DetectorSpec("grounding-dino-base", "IDEA-Research/grounding-dino-base",
                     "Grounding DINO base (233M): scored boxes, more accurate than tiny",
                     family="grounding-dino", license="Apache-2.0", size="233M"),
        DetectorSpec("owlv2-base", "google/owlv2-base-patch16-ensemble",
                     "OWLv2 base (155M): scored boxes, each category a separate query; good for small objects",
                     family="owlv2", license="Apache-2.0", size="155M"),
        DetectorSpec("sam3", "facebook/sam3",
                     "SAM 3 (0.85B): text -> masks and scores in one model; the segmenter is not used",
                     family="sam3", license="SAM License", size="0.85B", gated=True),
    )
}

SEGMENTERS: dict[str, SegmenterSpec] = {
    spec.name: spec
    for spec in (
        SegmenterSpec(
            "sam2.1-hiera-tiny", "facebook/sam2.1-hiera-tiny", "sam2.1_hiera_tiny.pt",
            "configs/sam2.1/sam2.1_hiera_t.yaml", "SAM 2.1 Hiera tiny (39M), fastest", size="39M",
        ),
        SegmenterSpec(
            "sam2.1-hiera-small", "facebook/sam2.1-hiera-small", "sam2.1_hiera_small.pt",
            "configs/sam2.1/sam2.1_hiera_s.yaml", "SAM 2.1 Hiera small (46M)", size="46M",
        ),
        SegmenterSpec(
            "sam2.1-hiera-base-plus", "facebook/sam2.1-hiera-base-plus", "sam2.1_hiera_base_plus.pt",
            "configs/sam2.1/sam2.1_hiera_b+.yaml", "SAM 2.1 Hiera base+ (81M), balanced", size="81M",
        ),
        SegmenterSpec(
            "sam2.1-hiera-large", "facebook/sam2.1-hiera-large", "sam2.1_hiera_large.pt",
            "configs/sam2.1/sam2.1_hiera_l.yaml", "SAM 2.1 Hiera large (224M), most accurate", size="224M",
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


def family_of_model_type(model_type: str | None, where: str) -> DetectorFamily:
    """The detector family of a ``config.json`` ``model_type``.

    Raises:
        UnknownModelError: The model type is none this package can run; the message lists those it can.
    """
    family = MODEL_TYPES.get(model_type or "")
    if family is None:
        raise UnknownModelError(
            f"{where} holds a {model_type!r} model, but a detector must be one of the model types "
            f"{', '.join(MODEL_TYPES)} (config.json's model_type)."
        )
    return family
