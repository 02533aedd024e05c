"""Florence-2 + SAM2 called the way the public demos call them: the baseline we compare with.

Per category: ``processor(text=task + category, images=image)``, one ``model.generate`` with 3
beams and a 1024-token budget as the model cards and demos call it, then
``processor.post_process_generation``. Then SAM2: ``set_image`` once and one
``predict(box=..., multimask_output=False)`` per box. The image is decoded with PIL.

Beam search stops once 3 beams have finished (``early_stopping=True``, the BART-style setting of
the checkpoints). Florence-2's sample notebook passes ``early_stopping=False``, which with random
weights lets the beams run on far past the emitted text (one category took 2.4 times as long in
one trial on a busy machine); the cheaper setting keeps the comparison conservative.

It takes the already loaded model objects of our pipeline, so both run the same weights.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv

from grounded_sam.detections import empty_detections
from grounded_sam.models.devices import inference_context
from grounded_sam.models.florence.detector import GROUNDING_TASK

logger = logging.getLogger(__name__)

STAGES = ("load_image", "detect", "segment", "postprocess")


class ReferencePipeline:
    """The demo-style pipeline.

    Args:
        model: A loaded ``Florence2ForConditionalGeneration``.
        processor: Its ``Florence2Processor``.
        sam2_model: A loaded SAM2 model (``SAM2Base``).
        device: Where the models live.
        num_beams: Beams per ``generate`` (3, the checkpoints' default).
        max_new_tokens: Token budget per category (1024, as the demos pass).
        early_stopping: Stop beam search once ``num_beams`` hypotheses are finished.
    """

    def __init__(
        self, model: Any, processor: Any, sam2_model: Any, device: Any, *, num_beams: int = 3,
        max_new_tokens: int = 1024, early_stopping: bool = True,
    ) -> None:
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        self.model = model
        self.processor = processor
        self.device = device
        self.num_beams = num_beams
        self.max_new_tokens = max_new_tokens
        self.early_stopping = early_stopping
        self.predictor = SAM2ImagePredictor(sam2_model)

    @classmethod
    def sharing_models_of(cls, pipe: Any, **options: Any) -> ReferencePipeline:
        """A reference over the very model objects a :class:`~grounded_sam.pipeline.GroundedSAM2` has loaded."""
        detector, segmenter = pipe.detector, pipe.segmenter
        return cls(detector.model, detector.processor, segmenter.model, detector.device, **options)

    def __call__(
        self, image_path: str | Path, categories: Sequence[str]
    ) -> tuple[np.ndarray, sv.Detections, dict[str, float]]:
        """Labels one image file.

        Returns:
            ``(rgb, detections, seconds per stage)``: the decoded image; detections with
            ``xyxy``, ``mask``, ``confidence``, ``class_id`` and ``data["class_name"]`` like our
            pipeline's; seconds for each of :data:`STAGES`.
        """
        from PIL import Image

        times: dict[str, float] = {}
        started = time.perf_counter()
        image = Image.open(image_path).convert("RGB")
        rgb = np.array(image)
        times["load_image"] = time.perf_counter() - started

        started = time.perf_counter()
        boxes: list[list[float]] = []
        class_ids: list[int] = []
        for class_id, category in enumerate(categories):
            found = self._ground(image, category)
            boxes.extend(found)
            class_ids.extend([class_id] * len(found))
        times["detect"] = time.perf_counter() - started

        started = time.perf_counter()
        masks: list[np.ndarray] = []
        scores: list[float] = []
        if boxes:
            with inference_context(self.device):
                self.predictor.set_image(rgb)
                for box in boxes:
                    mask, score, _ = self.predictor.predict(box=np.array(box), multimask_output=False)
                    masks.append(mask[0] > 0)
                    scores.append(float(score[0]))
        times["segment"] = time.perf_counter() - started

        started = time.perf_counter()
        detections = _to_detections(boxes, masks, scores, class_ids, list(categories), rgb.shape[:2])
        times["postprocess"] = time.perf_counter() - started
        return rgb, detections, times

    def _ground(self, image: Any, category: str) -> list[list[float]]:
        inputs = self.processor(text=GROUNDING_TASK + category, images=image, return_tensors="pt").to(self.device)
        with inference_context(self.device):
            generated = self.model.generate(
                input_ids=inputs["input_ids"],
                pixel_values=inputs["pixel_values"],
                max_new_tokens=self.max_new_tokens,
                num_beams=self.num_beams,
                early_stopping=self.early_stopping,
                do_sample=False,
            )
        text = self.processor.batch_decode(generated, skip_special_tokens=False)[0]
        parsed = self.processor.post_process_generation(text, task=GROUNDING_TASK, image_size=image.size)
        return [list(map(float, box)) for box in parsed[GROUNDING_TASK]["bboxes"]]


def _to_detections(
    boxes: list[list[float]], masks: list[np.ndarray], scores: list[float], class_ids: list[int],
    class_names: list[str], image_hw: tuple[int, int],
) -> sv.Detections:
    if not boxes:
        detections = empty_detections()
        detections.mask = np.zeros((0, *image_hw), dtype=bool)
        return detections
    class_id = np.array(class_ids, dtype=int)
    return sv.Detections(
        xyxy=np.array(boxes, dtype=np.float32),
        mask=np.stack(masks),
        confidence=np.array(scores, dtype=np.float32),
        class_id=class_id,
        data={"class_name": np.array([class_names[i] for i in class_id])},
    )
