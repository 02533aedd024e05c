"""A request's options as Gradio hands them over, turned into the package's objects.

Gradio passes raw values (preprocessing is off for the model events, so that a bad upload reaches
the package's loader and comes back as a clear message), so nothing here trusts a type: each
option is converted when it is used, and a value that does not convert is an
:class:`~grounded_sam.errors.OptionError` naming it. The field names are the named API's
parameter names (``detector``, ``min_score``, ... ``opacity``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, TypeVar

from grounded_sam.app.settings import AppSettings
from grounded_sam.categories import Categories
from grounded_sam.errors import OptionError

if TYPE_CHECKING:
    from grounded_sam.annotate import OverlayAnnotator
    from grounded_sam.editing.view import OverlayStyle
    from grounded_sam.pipeline import GroundedSAM2

__all__ = ["LabelOptions", "ModelOptions", "OverlayOptions", "load_models", "run_settings"]

T = TypeVar("T")


def _checked(what: str, build: Callable[[], T]) -> T:
    try:
        return build()
    except (TypeError, ValueError) as exc:
        raise OptionError(f"Invalid {what}: {exc}.") from exc


@dataclass(frozen=True)
class ModelOptions:
    """Which models, and how their output is filtered. None picks the server's default model."""

    detector: str | None = None
    segmenter: str | None = None
    min_score: Any = 0.0
    nms: Any = "class"
    nms_iou: Any = 0.7

    def pipeline(self, settings: AppSettings) -> GroundedSAM2:
        """The pipeline for these options; builds no model (they load on first use).

        Raises:
            OptionError: A model the server does not offer, or an option out of range.
        """
        from grounded_sam.pipeline import GroundedSAM2

        detector = settings.check_model("detector", self.detector)
        segmenter = settings.check_model("segmenter", self.segmenter)
        return _checked("option", lambda: GroundedSAM2(
            detector, segmenter, settings.device, min_score=float(self.min_score), nms=str(self.nms),
            nms_iou=float(self.nms_iou)))


@dataclass(frozen=True)
class OverlayOptions:
    """What the overlay draws: masks, boxes, labels, and the masks' opacity."""

    show_masks: Any = True
    show_boxes: Any = True
    show_labels: Any = True
    opacity: Any = 0.5

    def annotator(self) -> OverlayAnnotator:
        """The annotator that draws a result with these options."""
        from grounded_sam.annotate import OverlayAnnotator

        return _checked("overlay option", lambda: OverlayAnnotator(
            masks=bool(self.show_masks), boxes=bool(self.show_boxes), labels=bool(self.show_labels),
            opacity=float(self.opacity)))

    def style(self) -> OverlayStyle:
        """These options as an :class:`~grounded_sam.editing.view.OverlayStyle` (an editor's overlay)."""
        from grounded_sam.editing.view import OverlayStyle

        return _checked("overlay option", lambda: OverlayStyle(
            bool(self.show_masks), bool(self.show_boxes), bool(self.show_labels), float(self.opacity)))


@dataclass(frozen=True)
class LabelOptions:
    """Everything the options column sets: the categories (as typed), the model and the overlay options."""

    categories: str = ""
    models: ModelOptions = field(default_factory=ModelOptions)
    overlay: OverlayOptions = field(default_factory=OverlayOptions)

    @classmethod
    def from_flat(cls, values: Mapping[str, Any]) -> LabelOptions:
        """From values keyed by the API's flat parameter names; a name that is absent keeps its default."""

        def pick(kind: type[T]) -> T:
            return kind(**{f.name: values[f.name] for f in fields(kind) if f.name in values})

        return cls(values.get("categories") or "", pick(ModelOptions), pick(OverlayOptions))


def load_models(pipe: GroundedSAM2, *, tracking: bool = False) -> None:
    """Loads the pipeline's models now, before the GPU-wrapped call (with ``tracking``, SAM2's video predictor too).

    A one-model pipeline (SAM 3) never uses the segmenter, so it is not loaded.
    """
    # On ZeroGPU that keeps them in the main process across calls; elsewhere it simply makes
    # missing weights fail before any work starts.
    if getattr(pipe.detector, "family", None) != "sam3":
        pipe.segmenter  # noqa: B018
    if tracking:
        pipe.video_propagator  # noqa: B018


def run_settings(pipe: GroundedSAM2, categories: Categories) -> dict[str, Any]:
    """The settings a run's records carry: the categories and the pipeline's settings (short model names)."""
    return {"categories": categories.to_spec(), **pipe.settings().as_dict(short_model_names=True)}
