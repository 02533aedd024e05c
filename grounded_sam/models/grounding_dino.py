"""Grounding DINO as an open-vocabulary box detector (transformers' ``GroundingDinoForObjectDetection``).

Every category goes into ONE text query, ``[CLS] truck . tire . person . [SEP]``, built from token
ids so that each prompt's token span (and so its class id) is known exactly: a box's score for a
prompt is the highest probability over that prompt's tokens, and the box goes to the prompt it
scores highest for. The model reads at most ``max_text_len`` (256) tokens, roughly 60 short
categories; more categories are split into several queries, run ``query_batch_size`` to a forward.

What is reused: the Swin backbone runs once per image, whatever the number of queries.
transformers' ``GroundingDinoModel.forward`` takes no precomputed image features, so the detector
puts a :class:`~grounded_sam.models.grounding_dino_backbone.SharedBackbone` (the same submodules and
weights) in place of the model's backbone, which hands every row of every batch the image's feature maps
computed once.
The deformable encoder and decoder still run per query: the encoder fuses each query's text into the
image features, so its outputs cannot be shared.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import supervision as sv

from grounded_sam.categories import Categories
from grounded_sam.detections import empty_detections
from grounded_sam.models.devices import inference_context
from grounded_sam.models.native import NativeDetector, best_class, cxcywh_to_xyxy, scored_detections

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

#: Grounding DINO's usual box threshold; ``min_score`` raises it.
DEFAULT_BOX_THRESHOLD = 0.35


@dataclass(frozen=True)
class TextQuery:
    """One text query: its token ids and where each prompt's tokens are.

    Attributes:
        input_ids: ``[CLS] p1 . p2 . ... [SEP]`` token ids.
        spans: ``(start, end)`` token positions (end exclusive) of each prompt in ``input_ids``.
        class_ids: The class id of each prompt, in ``spans`` order.
    """

    input_ids: tuple[int, ...]
    spans: tuple[tuple[int, int], ...]
    class_ids: tuple[int, ...]


def build_queries(
    prompt_ids: Sequence[Sequence[int]], class_ids: Sequence[int], *, cls_id: int, sep_id: int, dot_id: int,
    max_len: int,
) -> list[TextQuery]:
    """Packs tokenised prompts into as few ``p1 . p2 .`` queries of at most ``max_len`` tokens as their order allows.

    Args:
        prompt_ids: Each prompt's token ids, without special tokens.
        class_ids: Each prompt's class id.
        cls_id, sep_id, dot_id: Ids of ``[CLS]``, ``[SEP]`` and ``.``.
        max_len: Most tokens a query may hold (the model's ``max_text_len``).

    Returns:
        The queries; a prompt longer than a query can hold is cut to fit (and logged).
    """
    if len(prompt_ids) != len(class_ids):
        raise ValueError(f"Expected one class id per prompt, but got {len(prompt_ids)} prompts and {len(class_ids)} ids")
    room = max_len - 3  # [CLS], the prompt's ".", [SEP]
    if room < 1:
        raise ValueError(f"max_len must be at least 4, but got {max_len}")
    queries: list[TextQuery] = []
    ids: list[int] = [cls_id]
    spans: list[tuple[int, int]] = []
    owners: list[int] = []
    for tokens, class_id in zip(prompt_ids, class_ids):
        tokens = list(tokens)
        if not tokens:
            continue
        if len(tokens) > room:
            logger.warning("A prompt of %d tokens is cut to the %d Grounding DINO can read", len(tokens), room)
            tokens = tokens[:room]
        if spans and len(ids) + len(tokens) + 2 > max_len:
            queries.append(TextQuery(tuple(ids + [sep_id]), tuple(spans), tuple(owners)))
            ids, spans, owners = [cls_id], [], []
        spans.append((len(ids), len(ids) + len(tokens)))
        owners.append(int(class_id))
        ids.extend(tokens + [dot_id])
    if spans:
        queries.append(TextQuery(tuple(ids + [sep_id]), tuple(spans), tuple(owners)))
    return queries


def prompt_scores(logits: np.ndarray, spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """Each box's probability for each prompt: the highest sigmoid over the prompt's tokens.

    Args:
        logits: (Q, T) token logits of Q boxes (``outputs.logits[i]``).
        spans: ``(start, end)`` of each prompt's tokens.

    Returns:
        (Q, P) float32.
    """
    logits = np.asarray(logits, dtype=np.float64)
    probabilities = 1.0 / (1.0 + np.exp(-np.clip(logits, -80, 80)))
    columns = [probabilities[:, start:end].max(axis=1) for start, end in spans]
    if not columns:
        return np.zeros((len(logits), 0), dtype=np.float32)
    return np.stack(columns, axis=1).astype(np.float32)


def grounding_dino_to_detections(
    logits: np.ndarray, boxes: np.ndarray, query: TextQuery, image_size: tuple[int, int], threshold: float,
    class_names: Sequence[str],
) -> sv.Detections:
    """Turns one query's raw output into Detections (a pure function: tested with literal arrays).

    Args:
        logits: (Q, T) token logits (``outputs.logits[i]``).
        boxes: (Q, 4) normalised ``cx, cy, w, h`` (``outputs.pred_boxes[i]``).
        query: The query these outputs answer.
        image_size: ``(width, height)`` in pixels.
        threshold: Least detector score a box keeps.
        class_names: Every class name, in class-id order.

    Returns:
        Detections with ``xyxy`` float32 pixels, ``class_id``, ``data["class_name"]`` and
        ``data["detector_score"]`` (float32); ``confidence`` None.
    """
    rows, class_id, score = best_class(prompt_scores(logits, query.spans), query.class_ids, threshold)
    width, height = image_size
    xyxy = cxcywh_to_xyxy(np.asarray(boxes)[rows], (width, height))
    return scored_detections(xyxy, class_id, score, class_names)


class GroundingDinoDetector(NativeDetector):
    """Finds scored boxes for category prompts with Grounding DINO.

    Args:
        model: A ``GroundingDinoForObjectDetection`` in eval mode on ``device``.
        processor: The matching ``GroundingDinoProcessor``.
        device: Where the model lives.
        box_threshold: Least detector score a box keeps (``min_score`` raises it per call).
        query_batch_size: Queries run together when the categories need more than one.
    """

    model_class_name = "GroundingDinoForObjectDetection"
    label = "Grounding DINO"
    family = "grounding-dino"

    def __init__(
        self, model: Any, processor: Any, device: torch.device, *, box_threshold: float = DEFAULT_BOX_THRESHOLD,
        query_batch_size: int = 4,
    ) -> None:
        if not 0.0 <= box_threshold <= 1.0 or query_batch_size < 1:
            raise ValueError(f"box_threshold must be within [0, 1] and query_batch_size >= 1, but got "
                             f"{box_threshold}, {query_batch_size}")
        super().__init__(model, processor, device)
        self.box_threshold = box_threshold
        self.query_batch_size = query_batch_size
        from grounded_sam.models.grounding_dino_backbone import share_backbone

        share_backbone(model)
        self._lock = threading.Lock()  # the backbone holds the image being detected in
        tokenizer = processor.tokenizer
        self._cls, self._sep = int(tokenizer.cls_token_id), int(tokenizer.sep_token_id)
        self._dot = int(tokenizer.convert_tokens_to_ids("."))
        self._pad = int(tokenizer.pad_token_id or 0)
        self.max_text_len = int(model.config.max_text_len)

    def build_queries(self, categories: Categories) -> list[TextQuery]:
        """The text queries for these categories (lower-cased, as Grounding DINO was trained)."""
        tokenizer = self.processor.tokenizer
        prompt_ids = [tokenizer(p.text.lower().strip(" ."), add_special_tokens=False)["input_ids"]
                      for p in categories.prompts]
        return build_queries(prompt_ids, [p.class_id for p in categories.prompts], cls_id=self._cls,
                             sep_id=self._sep, dot_id=self._dot, max_len=self.max_text_len)

    def detect(self, image: np.ndarray, categories: Categories, *, min_score: float = 0.0) -> sv.Detections:
        """Finds boxes for every prompt of ``categories`` in one image.

        Args:
            image: (H, W, 3) uint8 RGB.
            categories: Parsed prompts; each box gets the ``class_id`` of the prompt it scores highest for.
            min_score: Least detector score for this call (the detector's ``box_threshold`` when higher).

        Returns:
            Detections with ``xyxy`` (N, 4) float32 pixels, ``class_id``, ``data["class_name"]`` and
            ``data["detector_score"]`` (N,) float32; ``confidence`` is None until SAM2 scores the masks.
        """
        import torch

        height, width = image.shape[:2]
        threshold = max(self.box_threshold, min_score)
        queries = self.build_queries(categories)
        pixels = self.processor.image_processor(images=image, return_tensors="pt")
        pixel_values = pixels["pixel_values"].to(self.device)
        pixel_mask = (pixels["pixel_mask"] if "pixel_mask" in pixels
                      else torch.ones(pixel_values.shape[:1] + pixel_values.shape[2:], dtype=torch.long)).to(self.device)
        found: list[sv.Detections] = []
        with self._lock, inference_context(self.device), self.model.model.backbone.encoded(pixel_values, pixel_mask):
            for start in range(0, len(queries), self.query_batch_size):
                batch = queries[start : start + self.query_batch_size]
                length = max(len(q.input_ids) for q in batch)
                input_ids = torch.full((len(batch), length), self._pad, dtype=torch.long)
                attention_mask = torch.zeros((len(batch), length), dtype=torch.long)
                for row, query in enumerate(batch):
                    input_ids[row, : len(query.input_ids)] = torch.tensor(query.input_ids)
                    attention_mask[row, : len(query.input_ids)] = 1
                outputs = self.model(
                    pixel_values=pixel_values.expand(len(batch), -1, -1, -1),
                    pixel_mask=pixel_mask.expand(len(batch), -1, -1),
                    input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device),
                )
                logits = outputs.logits.float().cpu().numpy()
                boxes = outputs.pred_boxes.float().cpu().numpy()
                for row, query in enumerate(batch):
                    found.append(grounding_dino_to_detections(
                        logits[row], boxes[row], query, (width, height), threshold, categories.class_names))
        found = [d for d in found if len(d)]
        logger.debug("Grounding DINO: %d queries -> %d boxes", len(queries), sum(len(d) for d in found))
        return sv.Detections.merge(found) if found else empty_detections()
