"""The concurrency groups events join: interactive model work, long jobs, and edits that run no model.

Gradio's groups decide which events may *start*; the models themselves are shared through
:data:`~grounded_sam.app.gate.MODEL_GATE`, which runs one model call at a time and puts interactive calls
first. So a batch (in the job group) labels image after image while Run and clicks (in the model group) start
at once and take the models between two of its images.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

__all__ = ["EDIT_GROUP", "EDIT_QUEUE", "JOB_EVENT", "JOB_QUEUE", "MODEL_EVENT", "MODEL_GROUP", "MODEL_QUEUE"]

#: Interactive events that run a model (Run, ``/segment``, a click) join this group, one at a time.
MODEL_QUEUE = "models"
#: Long jobs (a batch, a clip) join this group, one at a time; they take the models one image at a time.
JOB_QUEUE = "jobs"
#: Edits that run no model (select, delete, undo...) share this group, apart from the model queue.
EDIT_QUEUE = "edits"

MODEL_GROUP: MappingProxyType[str, Any] = MappingProxyType({"concurrency_id": MODEL_QUEUE, "concurrency_limit": 1})
EDIT_GROUP: MappingProxyType[str, Any] = MappingProxyType({"concurrency_id": EDIT_QUEUE, "concurrency_limit": 4})
#: Run: preprocessing off, so a bad upload reaches the package's loader (a clear message).
MODEL_EVENT: MappingProxyType[str, Any] = MappingProxyType({**MODEL_GROUP, "preprocess": False})
#: The batch and the clip: as :data:`MODEL_EVENT`, in the job group.
JOB_EVENT: MappingProxyType[str, Any] = MappingProxyType(
    {"concurrency_id": JOB_QUEUE, "concurrency_limit": 1, "preprocess": False})
