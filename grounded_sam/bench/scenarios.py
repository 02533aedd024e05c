"""What one benchmark scenario asks for: C categories, B boxes each.

Random weights emit arbitrary token counts, so the benchmark scripts the detector's output to a
realistic size (``B`` boxes per category, the same text for every category) and both pipelines
then decode, segment and write the same boxes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Names the benchmark prompts with, in order; real-looking so real weights give real work.
CATEGORY_NAMES = (
    "truck", "tire", "person", "window", "door", "wheel", "road", "building", "tree", "sign",
    "car", "light", "helmet", "box", "bag", "bottle",
)

# Boxes as Florence-2 location bins (x1, y1, x2, y2), varied in size and spread over the image.
SCRIPTED_BINS = (
    (60, 120, 620, 900),
    (540, 260, 960, 760),
    (120, 640, 380, 980),
    (700, 40, 990, 420),
    (300, 300, 520, 560),
    (20, 20, 240, 300),
    (620, 600, 900, 980),
    (400, 80, 700, 330),
)

_SCENARIO = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


@dataclass(frozen=True)
class Scenario:
    """``categories`` prompts per image, ``boxes_per_category`` boxes found for each.

    Attributes:
        categories: Number of category prompts.
        boxes_per_category: Boxes the scripted detector emits per prompt.
    """

    categories: int
    boxes_per_category: int

    def __post_init__(self) -> None:
        if not 1 <= self.categories <= len(CATEGORY_NAMES):
            raise ValueError(f"categories must be within [1, {len(CATEGORY_NAMES)}], but got {self.categories}")
        if not 1 <= self.boxes_per_category <= len(SCRIPTED_BINS):
            raise ValueError(
                f"boxes_per_category must be within [1, {len(SCRIPTED_BINS)}], but got {self.boxes_per_category}"
            )

    @property
    def name(self) -> str:
        """``"5x4"`` for 5 categories of 4 boxes."""
        return f"{self.categories}x{self.boxes_per_category}"

    @property
    def num_boxes(self) -> int:
        return self.categories * self.boxes_per_category

    @property
    def category_names(self) -> list[str]:
        """The prompts, distinct, in order."""
        return list(CATEGORY_NAMES[: self.categories])


def parse_scenarios(text: str) -> list[Scenario]:
    """Parses ``"5x4,10x2"`` into scenarios.

    Raises:
        ValueError: An entry is not ``CxB`` or is out of range.
    """
    scenarios = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = _SCENARIO.match(part)
        if match is None:
            raise ValueError(f"Expected scenarios like '5x4,10x2' (categories x boxes), but got {part!r}")
        scenarios.append(Scenario(int(match.group(1)), int(match.group(2))))
    if not scenarios:
        raise ValueError(f"Expected at least one scenario like '5x4', but got {text!r}")
    return scenarios


def scripted_text(boxes_per_category: int, phrase: str = "object") -> str:
    """The detector output every prompt gets: ``phrase`` and ``boxes_per_category`` location boxes."""
    from grounded_sam.models.testing import scripted_text as text_of

    if not 1 <= boxes_per_category <= len(SCRIPTED_BINS):
        raise ValueError(f"boxes_per_category must be within [1, {len(SCRIPTED_BINS)}], but got {boxes_per_category}")
    return text_of(SCRIPTED_BINS[:boxes_per_category], phrase)
