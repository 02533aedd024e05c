"""The floor: what the models themselves cost for one image, with nothing of a pipeline around them.

Defined as the least model work that yields every category's boxes and every box's mask:

* ``florence_vision``: Florence-2's image processor and vision tower, once.
* ``florence_encoder``: the language encoder over all category prompts in one batch (the image
  features scattered into each prompt).
* ``florence_decode``: a bare greedy decode (decoder step with KV cache, LM head, argmax; no
  ``generate`` machinery) of the tokens the model emits, all categories in one batch.
  Batching is the cheapest way for the model to emit C outputs, so it is the fair floor.
* ``sam2_image``: SAM2's ``set_image`` (its resize and the image encoder), once.
* ``sam2_masks``: prompt encoder + mask decoder for every box, masks upsampled to the image size
  and thresholded (SAM2's own ``_predict``, torch tensors, no numpy conversion), at the best of
  several chunk sizes.

Model input transforms count (every caller pays them); JPEG decoding, box parsing, NMS and
writing outputs do not: they are the pipeline's overhead.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from grounded_sam.models.devices import inference_context
from grounded_sam.models.florence.parsing import parse_grounding

FLORENCE_PARTS = ("florence_vision", "florence_encoder", "florence_decode")
SAM2_PARTS = ("sam2_image", "sam2_masks")


@dataclass
class FloorSample:
    """One measurement of the floor (seconds).

    Attributes:
        florence_vision: Image processor + vision tower.
        florence_encoder: Language encoder over the prompt batch.
        florence_decode: Bare greedy decode of the emitted tokens, all prompts batched.
        sam2_image: ``set_image``.
        sam2_masks: Seconds to decode every box's mask, per chunk size.
        decode_steps: Decoder steps the greedy decode took (longest emitted sequence).
        num_boxes: Boxes the decoded text holds.
        cpu: Process CPU seconds of each part but the masks (less disturbed by other load than wall time).
        cpu_masks: Process CPU seconds of the mask decode, per chunk size.
    """

    florence_vision: float = 0.0
    florence_encoder: float = 0.0
    florence_decode: float = 0.0
    sam2_image: float = 0.0
    sam2_masks: dict[int, float] = field(default_factory=dict)
    decode_steps: int = 0
    num_boxes: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    cpu_masks: dict[int, float] = field(default_factory=dict)


class ModelFloor:
    """Measures the floor with the same loaded models as the pipelines.

    Args:
        detector: A loaded :class:`~grounded_sam.models.florence.detector.FlorenceDetector`.
        segmenter: A loaded :class:`~grounded_sam.models.sam2.segmenter.Sam2Segmenter` (its model is shared;
            the floor keeps its own ``SAM2ImagePredictor``).
        chunk_sizes: Boxes per mask-decoder call to try; the number of boxes is always tried too.
        max_new_tokens: Cap of the greedy decode.
    """

    def __init__(
        self, detector: Any, segmenter: Any, *, chunk_sizes: Sequence[int] = (1, 2, 4, 8), max_new_tokens: int = 1024
    ) -> None:
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        self.detector = detector
        self.segmenter = segmenter
        self.device = detector.device
        self.chunk_sizes = tuple(sorted(set(chunk_sizes)))
        self.max_new_tokens = max_new_tokens
        self.predictor = SAM2ImagePredictor(segmenter.model)

    def measure(self, rgb: np.ndarray, prompts: Sequence[str]) -> FloorSample:
        """Runs every floor part once on ``rgb`` for ``prompts``."""
        sample = FloorSample()
        height, width = rgb.shape[:2]
        with inference_context(self.device):
            features, sample.florence_vision, sample.cpu["florence_vision"] = self._timed(self._encode_image, rgb)
            (encoder_outputs, attention_mask), sample.florence_encoder, sample.cpu["florence_encoder"] = self._timed(
                self._encode_prompts, features, prompts
            )
            tokens, sample.florence_decode, sample.cpu["florence_decode"] = self._timed(
                self._greedy_decode, encoder_outputs, attention_mask
            )
            sample.decode_steps = int(tokens.shape[1])

            texts = self.detector.processor.tokenizer.batch_decode(tokens, skip_special_tokens=False)
            boxes = [b for text in texts for b in parse_grounding(text, (width, height))[1]]
            sample.num_boxes = len(boxes)

            _, sample.sam2_image, sample.cpu["sam2_image"] = self._timed(self.predictor.set_image, rgb)
            if boxes:
                all_boxes = np.clip(np.stack(boxes), 0, [width, height, width, height]).astype(np.float32)
                for chunk_size in sorted({*(c for c in self.chunk_sizes if c < len(all_boxes)), len(all_boxes)}):
                    _, sample.sam2_masks[chunk_size], sample.cpu_masks[chunk_size] = self._timed(
                        self._decode_masks, all_boxes, chunk_size
                    )
            self.predictor.reset_predictor()
        return sample

    # ------------------------------------------------------------------ parts

    def _timed(self, fn: Any, *args: Any) -> tuple[Any, float, float]:
        """``(fn(*args), wall seconds, process CPU seconds)``, the GPU synchronised at both ends."""
        self._sync()
        cpu, wall = time.process_time(), time.perf_counter()
        result = fn(*args)
        self._sync()
        return result, time.perf_counter() - wall, time.process_time() - cpu

    def _sync(self) -> None:
        if self.device.type == "cuda":
            import torch

            torch.cuda.synchronize(self.device)

    def _encode_image(self, rgb: np.ndarray) -> Any:
        pixel_values = self.detector.processor.image_processor(images=rgb, return_tensors="pt")["pixel_values"]
        return self.detector.model.get_image_features(pixel_values.to(self.device)).pooler_output

    def _encode_prompts(self, features: Any, prompts: Sequence[str]) -> tuple[Any, Any]:
        processor, model = self.detector.processor, self.detector.model
        tokenizer = processor.tokenizer
        prefix = tokenizer.image_token * int(processor.num_image_tokens) + tokenizer.bos_token
        batch = [prefix + self.detector.build_prompt(p) + tokenizer.eos_token for p in prompts]
        encoded = tokenizer(batch, add_special_tokens=False, padding=True, return_tensors="pt").to(self.device)
        embeds = model.get_input_embeddings()(encoded["input_ids"])
        slots = (encoded["input_ids"] == tokenizer.image_token_id).unsqueeze(-1)
        embeds = embeds.masked_scatter(slots, features.to(embeds.dtype).expand(len(batch), -1, -1))
        outputs = model.get_encoder()(inputs_embeds=embeds, attention_mask=encoded["attention_mask"], return_dict=True)
        return outputs, encoded["attention_mask"]

    def _greedy_decode(self, encoder_outputs: Any, attention_mask: Any) -> Any:
        """Decoder steps with a KV cache until every row has emitted ``</s>``: (B, steps) token ids."""
        import torch
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache

        model = self.detector.model
        text_config = model.config.text_config
        eos, pad = text_config.eos_token_id, text_config.pad_token_id
        batch = attention_mask.shape[0]
        step_input = torch.full((batch, 1), text_config.decoder_start_token_id, dtype=torch.long, device=self.device)
        finished = torch.zeros(batch, dtype=torch.bool, device=self.device)
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        emitted = []
        for _ in range(self.max_new_tokens):
            out = model(
                encoder_outputs=encoder_outputs, attention_mask=attention_mask, decoder_input_ids=step_input,
                past_key_values=cache, use_cache=True,
            )
            cache = out.past_key_values
            token = out.logits[:, -1].argmax(dim=-1).masked_fill(finished, pad)
            emitted.append(token)
            finished |= token == eos
            if bool(finished.all()):
                break
            step_input = token[:, None]
        return torch.stack(emitted, dim=1)

    def _decode_masks(self, boxes: np.ndarray, chunk_size: int) -> None:
        import torch

        predictor = self.predictor
        for start in range(0, len(boxes), chunk_size):
            chunk = torch.as_tensor(boxes[start : start + chunk_size], device=self.device)
            transformed = predictor._transforms.transform_boxes(chunk, normalize=True, orig_hw=predictor._orig_hw[-1])
            masks, _, _ = predictor._predict(None, None, transformed, None, multimask_output=False)
            del masks
