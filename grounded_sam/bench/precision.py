"""``python -m grounded_sam.bench --precision-check``: how much faster bf16 autocast is than fp32, and how far
its outputs move, for Florence-2 and SAM2 separately.

Figures per model, on one image, fp32 and bf16 alternating in one process:

* Florence-2: seconds of the vision tower and of the language encoder + generation for the scenario's
  categories; the relative error (``|bf16 - fp32| / |fp32|``, Frobenius norms) of the image features and of the
  language encoder's output; and the boxes' agreement. The scripted random models emit the same tokens under
  any precision by construction, so with them the encoder errors are the meaningful figure (real weights
  make the token agreement meaningful too).
* SAM2: seconds of ``set_image`` and of the mask decoder for the scenario's boxes; mask IoU (mean and
  worst) and the largest predicted-IoU score change.

``auto`` should pick bf16 only where it is faster for both and close: see
:func:`grounded_sam.models.devices.auto_precision`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from grounded_sam.bench.scenarios import Scenario

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class PrecisionConfig:
    """What one precision check runs.

    Attributes:
        detector: Florence-2 folder or registry name.
        segmenter: SAM2 ``.pt`` or registry name.
        description: The models, for the report.
        image: The image file.
        scenario: Categories and scripted boxes.
        device: Where to run (``cpu``, ``cuda``...).
        repeats: Timed rounds per precision after one warm-up.
    """

    detector: str
    segmenter: str
    description: str
    image: Path
    scenario: Scenario
    device: str = "cpu"
    repeats: int = 2


def relative_error(reference: Any, other: Any) -> float:
    """``||other - reference|| / ||reference||`` over every element (fp32 maths; 0 for an all-zero reference)."""
    ref = np.asarray(reference, dtype=np.float64).ravel()
    diff = np.asarray(other, dtype=np.float64).ravel() - ref
    norm = float(np.linalg.norm(ref))
    return float(np.linalg.norm(diff) / norm) if norm else float(np.linalg.norm(diff))


def mask_ious(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of each pair of (N, H, W) bool masks; two empty masks agree (1.0)."""
    a = a.reshape(len(a), -1)
    b = b.reshape(len(b), -1)
    union = (a | b).sum(axis=1)
    inter = (a & b).sum(axis=1)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def _best(samples: list[float]) -> float:
    return min(samples) if samples else 0.0


def check_florence(detector: Any, image: np.ndarray, prompts: list[str], repeats: int) -> dict[str, Any]:
    """Times and compares Florence-2 in fp32 and bf16 (see the module docstring)."""
    from grounded_sam.models.devices import inference_context, precision_scope

    times: dict[str, dict[str, list[float]]] = {p: {"vision_s": [], "text_s": []} for p in PRECISIONS}
    outputs: dict[str, dict[str, Any]] = {}
    tokenizer = detector.processor.tokenizer
    batch = [detector._image_prefix + detector.build_prompt(p) + detector._eos for p in prompts]
    encoded = tokenizer(batch, add_special_tokens=False, padding=True, return_tensors="pt").to(detector.device)
    for round_ in range(repeats + 1):
        for precision in PRECISIONS:
            with precision_scope(precision):
                vision_s, features = _timed(lambda: detector.encode_image(image))
                text_s, texts = _timed(lambda features=features: detector.generate_texts(features, prompts))
                with inference_context(detector.device):  # the language encoder's output alone, for its error
                    embeds = detector.model.get_input_embeddings()(encoded["input_ids"])
                    slots = (encoded["input_ids"] == detector._image_token_id).unsqueeze(-1)
                    embeds = embeds.masked_scatter(slots, features.to(embeds.dtype).expand(len(batch), -1, -1))
                    hidden = detector.model.get_encoder()(inputs_embeds=embeds, attention_mask=encoded["attention_mask"],
                                                          return_dict=True).last_hidden_state
            if round_:  # round 0 warms up
                times[precision]["vision_s"].append(vision_s)
                times[precision]["text_s"].append(text_s)
            outputs[precision] = {"features": features.float().cpu().numpy(), "hidden": hidden.float().cpu().numpy(),
                                  "texts": texts}
    fp32, bf16 = outputs["fp32"], outputs["bf16"]
    agree = sum(a == b for a, b in zip(fp32["texts"], bf16["texts"]))
    result: dict[str, Any] = {p: {k: _best(v) for k, v in times[p].items()} for p in PRECISIONS}
    for precision in PRECISIONS:
        result[precision]["total_s"] = result[precision]["vision_s"] + result[precision]["text_s"]
    result.update({
        "speedup": _ratio(result["fp32"]["total_s"], result["bf16"]["total_s"]),
        "vision_speedup": _ratio(result["fp32"]["vision_s"], result["bf16"]["vision_s"]),
        "text_speedup": _ratio(result["fp32"]["text_s"], result["bf16"]["text_s"]),
        "image_features_rel_error": relative_error(fp32["features"], bf16["features"]),
        "encoder_rel_error": relative_error(fp32["hidden"], bf16["hidden"]),
        "texts_equal": f"{agree}/{len(prompts)}",
    })
    return result


def check_sam2(segmenter: Any, image: np.ndarray, boxes: np.ndarray, repeats: int) -> dict[str, Any]:
    """Times and compares SAM2 in fp32 and bf16 (see the module docstring)."""
    from grounded_sam.models.devices import inference_context, precision_scope
    from grounded_sam.models.sam2.segmenter import normalize_sam2_output

    times: dict[str, dict[str, list[float]]] = {p: {"set_image_s": [], "masks_s": []} for p in PRECISIONS}
    outputs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    predictor = segmenter.predictor
    for round_ in range(repeats + 1):
        for precision in PRECISIONS:
            with segmenter.lock, precision_scope(precision), inference_context(segmenter.device):
                set_s, _ = _timed(lambda: predictor.set_image(image))
                masks_s, (masks, scores, _) = _timed(lambda: predictor.predict(box=boxes, multimask_output=False))
                predictor.reset_predictor()
            if round_:
                times[precision]["set_image_s"].append(set_s)
                times[precision]["masks_s"].append(masks_s)
            outputs[precision] = normalize_sam2_output(masks, scores, len(boxes))
    result: dict[str, Any] = {p: {k: _best(v) for k, v in times[p].items()} for p in PRECISIONS}
    for precision in PRECISIONS:
        result[precision]["total_s"] = result[precision]["set_image_s"] + result[precision]["masks_s"]
    (masks32, scores32), (masks16, scores16) = outputs["fp32"], outputs["bf16"]
    ious = mask_ious(masks32, masks16)
    result.update({
        "speedup": _ratio(result["fp32"]["total_s"], result["bf16"]["total_s"]),
        "set_image_speedup": _ratio(result["fp32"]["set_image_s"], result["bf16"]["set_image_s"]),
        "masks_speedup": _ratio(result["fp32"]["masks_s"], result["bf16"]["masks_s"]),
        "mask_iou_mean": float(ious.mean()) if len(ious) else 1.0,
        "mask_iou_min": float(ious.min()) if len(ious) else 1.0,
        "score_delta_max": float(np.abs(scores32 - scores16).max()) if len(ious) else 0.0,
        "masks_dtype": str(masks16.dtype),
        "scores_dtype": str(scores16.dtype),
    })
    return result


def _ratio(slow: float, fast: float) -> float:
    return slow / fast if fast > 0 else 0.0


def run_precision_check(config: PrecisionConfig) -> dict[str, Any]:
    """Loads the models once and measures both (see the module docstring); returns the report's ``precision`` part."""
    from grounded_sam.bench.runner import machine_info
    from grounded_sam.categories import parse_categories
    from grounded_sam.inputs.images import load_image
    from grounded_sam.models.devices import auto_precision, cpu_bf16_feature, precision_scope, resolve_device
    from grounded_sam.models.loading import load_detector, load_segmenter
    from grounded_sam.pipeline.postprocess import sanitize_boxes

    device = resolve_device(config.device)
    image = load_image(config.image)
    height, width = image.shape[:2]
    prompts = config.scenario.category_names
    detector = load_detector(config.detector, config.device)
    segmenter = load_segmenter(config.segmenter, config.device)
    # SAM2 gets the boxes the (scripted) detector finds in fp32, as the pipeline would give them.
    with precision_scope("fp32"):
        found = sanitize_boxes(detector.detect(image, parse_categories(prompts)), (width, height), 1.0)
    boxes = found.xyxy.astype(np.float32)
    logger.info("Precision check: Florence-2 with %d prompts", len(prompts))
    florence = check_florence(detector, image, prompts, config.repeats)
    logger.info("Precision check: SAM2 with %d boxes", len(boxes))
    sam2 = check_sam2(segmenter, image, boxes, config.repeats)
    return {
        "kind": "precision",
        "models": config.description,
        "image": config.image.name,
        "image_size": [width, height],
        "scenario": config.scenario.name,
        "repeats": config.repeats,
        "machine": machine_info(device),
        "cpu_bf16": cpu_bf16_feature(),
        "auto_picks": auto_precision(device),
        "florence2": florence,
        "sam2": sam2,
    }


def format_precision_table(report: dict[str, Any]) -> str:
    """The precision check as Markdown: one row per model, then what ``auto`` picks here."""
    florence, sam2 = report["florence2"], report["sam2"]
    machine = report["machine"]
    lines = [
        f"Precision check: {report['models']}, {report['image']} {report['image_size'][0]}x{report['image_size'][1]}, "
        f"{report['scenario']}, best of {report['repeats']} rounds",
        f"Machine: {machine['cpu']} ({machine['cpu_count']} cores), device {machine['device']}"
        + (f" ({machine['gpu']})" if machine.get("gpu") else "")
        + f"; CPU bf16: {report['cpu_bf16'] or 'none'}; auto picks {report['auto_picks']}",
        "",
        "| model | fp32 s | bf16 s | speed-up | parts (fp32 / bf16 s) | how close |",
        "|---|---|---|---|---|---|",
        f"| Florence-2 | {florence['fp32']['total_s']:.3f} | {florence['bf16']['total_s']:.3f} | {florence['speedup']:.2f}x | "
        f"vision {florence['fp32']['vision_s']:.3f} / {florence['bf16']['vision_s']:.3f}, "
        f"text {florence['fp32']['text_s']:.3f} / {florence['bf16']['text_s']:.3f} | "
        f"image features rel. error {florence['image_features_rel_error']:.4f}, encoder rel. error "
        f"{florence['encoder_rel_error']:.4f}, outputs equal {florence['texts_equal']} |",
        f"| SAM2 | {sam2['fp32']['total_s']:.3f} | {sam2['bf16']['total_s']:.3f} | {sam2['speedup']:.2f}x | "
        f"set_image {sam2['fp32']['set_image_s']:.3f} / {sam2['bf16']['set_image_s']:.3f}, "
        f"masks {sam2['fp32']['masks_s']:.3f} / {sam2['bf16']['masks_s']:.3f} | "
        f"mask IoU mean {sam2['mask_iou_mean']:.4f} (min {sam2['mask_iou_min']:.4f}), "
        f"score delta max {sam2['score_delta_max']:.4f} |",
    ]
    return "\n".join(lines)
