"""Which model refines the clicks on a pipeline's results: the one place that chooses.

After a detector + SAM2 run, clicks go to SAM2's mask decoder
(:class:`~grounded_sam.models.sam2.refiner.Sam2Refiner`); after a SAM 3 run (a one-model pipeline, no
SAM2), to SAM 3's tracker from the same checkpoint
(:class:`~grounded_sam.models.sam3_tracker.Sam3TrackerRefiner`). Both are
:class:`~grounded_sam.models.refiner.ClickRefiner`\\ s, which is all
:class:`~grounded_sam.editing.session.LabelSession` uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from grounded_sam.models.refiner import ClickRefiner
    from grounded_sam.pipeline import GroundedSAM2


def refiner_for(pipe: GroundedSAM2) -> ClickRefiner:
    """The click refiner of ``pipe``'s results (loads its model once per process, as the pipeline's models are).

    With SAM2, the refiner is attached to the pipeline's segmenter: from then on the segmenter keeps every
    image embedding it computes, so the first click on a fresh result is decoder-only too.

    Raises:
        ModelNotFoundError, ModelLoadError, UnknownModelError, DeviceError: As loading the pipeline's models.
    """
    from grounded_sam.models.weights import detector_family

    if detector_family(pipe.detector_name) == "sam3":
        from grounded_sam.models.loading import load_sam3_tracker

        return load_sam3_tracker(pipe.detector_name, pipe.device, models_dir=pipe.models_dir)
    from grounded_sam.models.sam2.refiner import Sam2Refiner

    return Sam2Refiner(pipe.segmenter)
