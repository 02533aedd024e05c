"""Category prompts: what the user types, turned into detector prompts and class names.

``"person, helmet, forklift"`` gives three classes in that order. A prompt may name the class
it feeds with ``prompt: class`` (``"yellow hard hat: helmet, person"``), and several prompts may
feed one class, as autodistill's ``CaptionOntology`` allows. Class ids follow the order in which
class names first appear, so colours and dataset ids never shift between runs.

Limits, so a pasted document or a runaway script is refused at once rather than queued for hours: at most
:data:`MAX_PROMPTS` prompts, each at most :data:`MAX_PROMPT_CHARS` characters. Control characters are dropped;
any other text (right-to-left scripts, emoji) is a prompt like any other.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from grounded_sam.errors import CategoryError

_SEPARATORS = re.compile(r"[,\n;]")
_WHITESPACE = re.compile(r"\s+")

#: Prompts one run may have: each is one detector pass, so more would keep a server busy for hours.
MAX_PROMPTS = 200
#: Characters in one prompt or class name (detector prompts are a few words).
MAX_PROMPT_CHARS = 200


@dataclass(frozen=True)
class Prompt:
    """One text the detector looks for, and the class its boxes belong to.

    Attributes:
        text: What Florence-2 is asked to ground, e.g. ``"yellow hard hat"``.
        class_id: Index into :attr:`Categories.class_names`.
    """

    text: str
    class_id: int


@dataclass(frozen=True)
class Categories:
    """Cleaned category prompts.

    Attributes:
        class_names: Class names in the user's order; ``class_id`` indexes this tuple.
        prompts: Detector prompts, each mapped to a class, in the user's order.
    """

    class_names: tuple[str, ...]
    prompts: tuple[Prompt, ...]

    def __len__(self) -> int:
        return len(self.class_names)

    def to_spec(self) -> str:
        """A canonical, readable text form (``"yellow hard hat: helmet, person"``).

        :func:`parse_categories` turns it back into ``self`` when no prompt or class contains a
        separator (``,`` ``;`` ``:`` or a newline); :meth:`as_pairs` round-trips exactly always.
        """
        parts = []
        for prompt in self.prompts:
            name = self.class_names[prompt.class_id]
            parts.append(prompt.text if prompt.text == name else f"{prompt.text}: {name}")
        return ", ".join(parts)

    def as_pairs(self) -> list[tuple[str, str]]:
        """``(prompt, class name)`` for every prompt; ``parse_categories(c.as_pairs()) == c``."""
        return [(prompt.text, self.class_names[prompt.class_id]) for prompt in self.prompts]


CategoriesLike = str | Iterable[str | tuple[str, str]] | Mapping[str, str] | Categories


def _clean(text: str) -> str:
    # Control characters (NUL, escape sequences...) never belong in a prompt; format characters such as the
    # right-to-left mark and the zero-width joiner of emoji sequences do, and stay.
    text = "".join(" " if unicodedata.category(c) == "Cc" else c for c in text)
    return _WHITESPACE.sub(" ", text).strip()


def _shown(value: object, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters: an error message never repeats a megabyte of input."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):_} characters)"


def _split_item(item: str) -> tuple[str, str]:
    """Splits ``"prompt: class"`` (or a bare ``"class"``) into (prompt, class name)."""
    if ":" not in item:
        text = _clean(item)
        return text, text
    prompt_text, _, class_name = item.rpartition(":")
    prompt_text, class_name = _clean(prompt_text), _clean(class_name)
    if not prompt_text or not class_name:
        raise CategoryError(
            f"Expected 'prompt: class' with text on both sides of ':', but got {_shown(item.strip())}. "
            "Write e.g. 'yellow hard hat: helmet', or drop the ':' to use the prompt as the class name."
        )
    return prompt_text, class_name


def parse_categories(categories: CategoriesLike) -> Categories:
    """Parses category prompts into classes and detector prompts.

    Args:
        categories: A comma- (or newline-) separated string such as ``"person, helmet"`` or
            ``"yellow hard hat: helmet, person"``; a list of such items (not split on commas) or
            of ``(prompt, class name)`` tuples;
            a mapping ``{prompt: class_name}``; or an already parsed :class:`Categories`.

    Returns:
        The classes in order of first appearance and the prompts that feed them. Whitespace is
        collapsed; duplicate prompts, and class names that differ only in letter case, are merged
        (the first spelling wins).

    Raises:
        CategoryError: If no category remains after cleaning, an item is malformed, there are more than
            :data:`MAX_PROMPTS` distinct prompts, or one is longer than :data:`MAX_PROMPT_CHARS`.
    """
    if isinstance(categories, Categories):
        return categories
    if isinstance(categories, Mapping):
        pairs = [(_clean(str(p)), _clean(str(c))) for p, c in categories.items()]
        if any(not p or not c for p, c in pairs):
            raise CategoryError(f"Every prompt and class name must be non-empty, but got {_shown(dict(categories))}.")
    else:
        if isinstance(categories, str):
            items = _SEPARATORS.split(categories)
        elif isinstance(categories, Iterable):
            items = []
            for item in categories:
                if isinstance(item, tuple) and len(item) == 2 and all(isinstance(v, str) for v in item):
                    items.append(item)
                    continue
                if not isinstance(item, str):
                    raise CategoryError(
                        f"Expected category prompts as strings, but got {type(item).__name__}: {_shown(item)}.")
                items.append(item)
        else:
            raise CategoryError(
                f"Expected categories as a string like 'person, helmet', a list of strings or a mapping, "
                f"but got {type(categories).__name__}."
            )
        pairs = []
        for item in items:
            if isinstance(item, tuple):
                prompt_text, class_name = _clean(item[0]), _clean(item[1])
                if not prompt_text or not class_name:
                    raise CategoryError(f"Expected (prompt, class name) with both non-empty, but got {_shown(item)}.")
                pairs.append((prompt_text, class_name))
            elif _clean(item):
                pairs.append(_split_item(item))

    _check_sizes(pairs)
    class_names: list[str] = []
    class_index: dict[str, int] = {}
    prompts: list[Prompt] = []
    seen_prompts: set[tuple[str, int]] = set()
    for prompt_text, class_name in pairs:
        key = class_name.casefold()
        if key not in class_index:
            class_index[key] = len(class_names)
            class_names.append(class_name)
        class_id = class_index[key]
        prompt_key = (prompt_text.casefold(), class_id)
        if prompt_key in seen_prompts:
            continue
        seen_prompts.add(prompt_key)
        prompts.append(Prompt(text=prompt_text, class_id=class_id))

    if not class_names:
        raise CategoryError(
            f"Expected at least one category, e.g. 'person, helmet', but got {_shown(categories)}. "
            "Type the things to find, separated by commas."
        )
    return Categories(class_names=tuple(class_names), prompts=tuple(prompts))


def _check_sizes(pairs: list[tuple[str, str]]) -> None:
    """Refuses an over-long prompt or class name, and more distinct prompts than :data:`MAX_PROMPTS`."""
    for prompt_text, class_name in pairs:
        for text in (prompt_text, class_name):
            if len(text) > MAX_PROMPT_CHARS:
                raise CategoryError(
                    f"Expected each category to be at most {MAX_PROMPT_CHARS} characters, but one has {len(text):_}: "
                    f"{_shown(text, 60)}. Separate categories with commas, e.g. 'person, helmet'."
                )
    distinct = {(p.casefold(), c.casefold()) for p, c in pairs}
    if len(distinct) > MAX_PROMPTS:
        raise CategoryError(
            f"Expected at most {MAX_PROMPTS} categories, but got {len(distinct):_}. Each category is one detector "
            "pass over the image: split them over several runs."
        )
