"""Florence-2 as an open-vocabulary box detector.

The image is encoded ONCE by the vision tower; its features are scattered into a batch of
per-category prompts, the language encoder runs over that batch, and one ``generate`` call
decodes every category. Re-encoding the image per category would cost a full vision pass each
(about 2 s on a 2-core CPU for Florence-2-base).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import supervision as sv

from grounded_sam.categories import Categories
from grounded_sam.detections import empty_detections
from grounded_sam.errors import ModelLoadError
from grounded_sam.models.devices import inference_context
from grounded_sam.models.florence.parsing import parse_grounding
from grounded_sam.models.native import NativeDetector, load_native

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

GROUNDING_TASK = "<CAPTION_TO_PHRASE_GROUNDING>"
OPEN_VOCABULARY_TASK = "<OPEN_VOCABULARY_DETECTION>"
DETECTION_TASKS = (GROUNDING_TASK, OPEN_VOCABULARY_TASK)


class FlorenceDetector(NativeDetector):
    """Finds boxes for category prompts with a Florence-2 model (it gives no scores).

    Args:
        model: A ``Florence2ForConditionalGeneration`` in eval mode on ``device``.
        processor: The matching ``Florence2Processor``.
        device: Where the model lives.
        task: ``<CAPTION_TO_PHRASE_GROUNDING>`` (default) or ``<OPEN_VOCABULARY_DETECTION>``.
        num_beams: 1 is greedy decoding (default, fastest); more beams search wider.
        max_new_tokens: Generation budget per category; each box costs 4 tokens plus its phrase.
        prompt_batch_size: Categories decoded together in one ``generate`` call.
    """

    model_class_name = "Florence2ForConditionalGeneration"
    label = "Florence-2"
    family = "florence2"

    def __init__(
        self,
        model: Any,
        processor: Any,
        device: torch.device,
        *,
        task: str = GROUNDING_TASK,
        num_beams: int = 1,
        max_new_tokens: int = 512,
        prompt_batch_size: int = 16,
    ) -> None:
        if task not in DETECTION_TASKS:
            raise ValueError(f"task must be one of {DETECTION_TASKS}, but got {task!r}")
        if num_beams < 1 or max_new_tokens < 1 or prompt_batch_size < 1:
            raise ValueError(
                f"num_beams, max_new_tokens and prompt_batch_size must be >= 1, but got "
                f"{num_beams}, {max_new_tokens}, {prompt_batch_size}"
            )
        super().__init__(model, processor, device)
        self.task = task
        self.num_beams = num_beams
        self.max_new_tokens = max_new_tokens
        self.prompt_batch_size = prompt_batch_size
        tokenizer = processor.tokenizer
        self._image_token_id = int(tokenizer.image_token_id)
        self._image_prefix = tokenizer.image_token * int(processor.num_image_tokens) + tokenizer.bos_token
        self._eos = tokenizer.eos_token

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str], device: torch.device, **options: Any) -> FlorenceDetector:
        """Loads model and processor from a ``save_pretrained`` folder, strictly (see :func:`load_native`).

        Raises:
            ModelLoadError: The folder's files do not make a complete Florence-2 (missing or
                mismatched weights, no processor).
        """
        model, processor = load_native(cls.model_class_name, path, cls.label)
        if not hasattr(processor, "post_processor") or not hasattr(processor.tokenizer, "image_token_id"):
            raise ModelLoadError(f"{path} holds no Florence-2 processor (expected processor and tokenizer files).")
        return cls(model.to(device), processor, device, **options)

    # ------------------------------------------------------------------ stages

    def encode_image(self, image: np.ndarray) -> torch.Tensor:
        """Runs the vision tower once.

        Args:
            image: (H, W, 3) uint8 RGB.

        Returns:
            (1, T, D) image features, T = the processor's ``num_image_tokens``.
        """
        pixel_values = self.processor.image_processor(images=image, return_tensors="pt")["pixel_values"]
        with inference_context(self.device):
            return self.model.get_image_features(pixel_values.to(self.device)).pooler_output

    def build_prompt(self, text: str) -> str:
        """The full prompt text for one category under this detector's task."""
        template = self.processor.task_prompts_with_input[self.task]
        return template.format(input=text)

    def generate_texts(
        self,
        image_features: torch.Tensor,
        prompts: Sequence[str],
        *,
        num_beams: int | None = None,
        max_new_tokens: int | None = None,
        **generate_kwargs: Any,
    ) -> list[str]:
        """Decodes every prompt against the same image features.

        Args:
            image_features: (1, T, D) output of :meth:`encode_image`.
            prompts: Category texts (not yet wrapped in the task template).
            num_beams: Overrides the detector's default for this call.
            max_new_tokens: Overrides the detector's default for this call.
            **generate_kwargs: Passed to ``generate`` (e.g. ``prefix_allowed_tokens_fn`` in tests).

        Returns:
            One decoded text per prompt, special tokens kept, ready for :func:`parse_grounding`.
        """
        tokenizer = self.processor.tokenizer
        texts: list[str] = []
        for start in range(0, len(prompts), self.prompt_batch_size):
            batch = [self._image_prefix + self.build_prompt(p) + self._eos for p in prompts[start : start + self.prompt_batch_size]]
            encoded = tokenizer(batch, add_special_tokens=False, padding=True, return_tensors="pt").to(self.device)
            with inference_context(self.device):
                embeds = self.model.get_input_embeddings()(encoded["input_ids"])
                image_slots = (encoded["input_ids"] == self._image_token_id).unsqueeze(-1)
                features = image_features.to(embeds.dtype).expand(len(batch), -1, -1)
                embeds = embeds.masked_scatter(image_slots, features)
                encoder_outputs = self.model.get_encoder()(
                    inputs_embeds=embeds, attention_mask=encoded["attention_mask"], return_dict=True
                )
                options = {
                    "max_new_tokens": max_new_tokens or self.max_new_tokens,
                    "num_beams": num_beams or self.num_beams,
                    "do_sample": False,
                    **generate_kwargs,
                }
                generated = self.model.generate(
                    input_ids=encoded["input_ids"],
                    attention_mask=encoded["attention_mask"],
                    encoder_outputs=encoder_outputs,
                    **options,
                )
            texts.extend(tokenizer.batch_decode(generated, skip_special_tokens=False))
        return texts

    def detect(
        self,
        image: np.ndarray,
        categories: Categories,
        *,
        num_beams: int | None = None,
        max_new_tokens: int | None = None,
        prefix_allowed_tokens_fn: Callable[[int, Any], list[int]] | None = None,
    ) -> sv.Detections:
        """Finds boxes for every prompt of ``categories`` in one image.

        Args:
            image: (H, W, 3) uint8 RGB.
            categories: Parsed prompts; each box gets its prompt's ``class_id``.
            num_beams: Beams for this call (default: the detector's, 1 = greedy).
            max_new_tokens: Generation budget per category for this call.
            prefix_allowed_tokens_fn: Optional generation constraint (drives output in tests).

        Returns:
            Detections with ``xyxy`` (N, 4) float32 pixels (raw, not yet clipped), ``class_id``
            (N,) int and ``data["class_name"]``; ``confidence`` is None (Florence-2 gives none).
        """
        height, width = image.shape[:2]
        features = self.encode_image(image)
        extra = {"prefix_allowed_tokens_fn": prefix_allowed_tokens_fn} if prefix_allowed_tokens_fn else {}
        texts = self.generate_texts(
            features, [p.text for p in categories.prompts], num_beams=num_beams, max_new_tokens=max_new_tokens, **extra
        )
        boxes: list[np.ndarray] = []
        class_ids: list[int] = []
        for prompt, text in zip(categories.prompts, texts):
            _, prompt_boxes = parse_grounding(text, (width, height))
            logger.debug("Florence-2 %r -> %d boxes: %s", prompt.text, len(prompt_boxes), text)
            boxes.append(prompt_boxes)
            class_ids.extend([prompt.class_id] * len(prompt_boxes))
        if not class_ids:
            return empty_detections()
        class_id = np.array(class_ids, dtype=int)
        return sv.Detections(
            xyxy=np.concatenate(boxes).astype(np.float32),
            class_id=class_id,
            data={"class_name": np.array([categories.class_names[i] for i in class_id])},
        )
