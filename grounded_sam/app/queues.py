"""The concurrency groups events join: one queue for the models, one for edits that run none."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

__all__ = ["EDIT_GROUP", "EDIT_QUEUE", "MODEL_EVENT", "MODEL_GROUP", "MODEL_QUEUE"]

#: Every event that runs a model joins this concurrency group, limited to one at a time.
MODEL_QUEUE = "models"
#: Edits that run no model (select, delete, undo...) share this group, apart from the model queue.
EDIT_QUEUE = "edits"

MODEL_GROUP: MappingProxyType[str, Any] = MappingProxyType({"concurrency_id": MODEL_QUEUE, "concurrency_limit": 1})
EDIT_GROUP: MappingProxyType[str, Any] = MappingProxyType({"concurrency_id": EDIT_QUEUE, "concurrency_limit": 4})
#: Run and the batch: preprocessing off, so a bad upload reaches the package's loader (a clear message).
MODEL_EVENT: MappingProxyType[str, Any] = MappingProxyType({**MODEL_GROUP, "preprocess": False})
