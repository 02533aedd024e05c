"""Category prompts -> Florence-2 boxes -> SAM2 masks, as one call (:class:`GroundedSAM2`), its options,
and the clean-up between and after the models (box sanity, score threshold, NMS).

>>> pipe = GroundedSAM2(detector="florence-2-base", segmenter="sam2.1-hiera-base-plus", device="auto")
>>> detections = pipe("truck.jpg", ["truck", "tire"])  # doctest: +SKIP
"""

from grounded_sam.pipeline.grounded import GroundedSAM2, label_image
from grounded_sam.pipeline.options import PipelineOptions, PipelineSettings, StageTimes

__all__ = ["GroundedSAM2", "PipelineOptions", "PipelineSettings", "StageTimes", "label_image"]
