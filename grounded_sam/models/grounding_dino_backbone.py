"""Grounding DINO's image backbone, run once per image for any number of text queries.

transformers' ``GroundingDinoModel.forward`` takes no precomputed image features: every row of a batch
(one text query each) goes through the Swin backbone. :class:`SharedBackbone` replaces the model's
``model.backbone`` (:func:`share_backbone`) with the same submodules and weights; inside
``encoded(pixel_values, pixel_mask)`` every forward gets that one image's feature maps and position
embeddings, expanded over its batch, and outside it behaves exactly as transformers' module.

Imported only when a Grounding DINO detector is built (it imports torch and transformers).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from transformers.models.grounding_dino.modeling_grounding_dino import GroundingDinoConvModel


class SharedBackbone(GroundingDinoConvModel):
    """transformers' backbone + position embedding module that can serve one image's output to every query."""

    _features: Any = None

    @contextmanager
    def encoded(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor) -> Iterator[None]:
        """Runs the backbone on one image ((1, 3, H, W) pixels and its (1, H, W) mask) for the forwards inside."""
        self._features = (tuple(pixel_values.shape[-2:]), super().forward(pixel_values, pixel_mask))
        try:
            yield
        finally:
            self._features = None

    def forward(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor) -> Any:
        """As transformers' forward; inside :meth:`encoded`, the encoded image's output for every row."""
        if self._features is None:
            return super().forward(pixel_values, pixel_mask)
        size, (maps, positions) = self._features
        if tuple(pixel_values.shape[-2:]) != size:
            raise ValueError(f"Expected pixel values of the encoded image {size}, but got shape {tuple(pixel_values.shape)}")
        batch = pixel_values.shape[0]
        return ([(m.expand(batch, *m.shape[1:]), k.expand(batch, *k.shape[1:])) for m, k in maps],
                [p.expand(batch, *p.shape[1:]) for p in positions])


def share_backbone(model: Any) -> SharedBackbone:
    """Puts a :class:`SharedBackbone` in place of ``model.model.backbone`` (a ``GroundingDinoForObjectDetection``).

    Returns:
        The new backbone module: the same ``conv_encoder`` and ``position_embedding`` (so the same weights and
        state-dict names).
    """
    backbone = model.model.backbone
    if not isinstance(backbone, SharedBackbone):
        model.model.backbone = SharedBackbone(backbone.conv_encoder, backbone.position_embedding)
    return model.model.backbone
