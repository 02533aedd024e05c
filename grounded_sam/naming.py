"""File-system-safe names: one sanitiser, unique names, image stems and class folder names.

Every output name the package writes (per-image stems, class folders, mask and crop files) comes
from here, so the same class or image gets the same name in every format and front-end, and no
name can climb out of its folder.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import PurePath

_UNSAFE = re.compile(r"[^\w.-]+")  # \w keeps letters of every script
MAX_STEM = 150
MAX_FOLDER = 100


def safe_name(text: str, fallback: str, max_length: int = MAX_FOLDER) -> str:
    """``text`` with every run of characters other than letters, digits, ``.``, ``_`` and ``-`` made ``_``.

    Leading and trailing dots and underscores are dropped (so ``..`` and hidden names cannot
    appear), the result is cut to ``max_length``, and ``fallback`` stands in when nothing is left.
    ``"../evil"`` -> ``"evil"``, ``"hard hat"`` -> ``"hard_hat"``.
    """
    return _UNSAFE.sub("_", str(text)).strip("._")[:max_length] or fallback


def sanitize_stem(relative: PurePath) -> str:
    """A file-system-safe output name from a relative input path, without its suffix.

    ``sub/dir/img 1.jpg`` becomes ``sub__dir__img_1``; nothing in it can climb out of a folder.
    """
    parts = [*relative.parent.parts, relative.stem] if relative.suffix else list(relative.parts)
    cleaned = [safe_name(part, "", MAX_STEM) for part in parts if part not in ("", ".", "..")]
    stem = "__".join(part for part in cleaned if part) or "image"
    return stem[:MAX_STEM]


def unique_name(base: str, used: set[str]) -> str:
    """``base``, or ``base-2``, ``base-3``... the first not in ``used`` (compared case-folded); adds it to ``used``.

    Case-folded so names stay distinct on case-insensitive file systems too.
    """
    name, n = base, 1
    while name.casefold() in used:
        n += 1
        name = f"{base}-{n}"
    used.add(name.casefold())
    return name


def sanitize_class_name(name: str) -> str:
    """A file-system-safe folder name for a class (``"../evil"`` -> ``"evil"``, ``"hard hat"`` -> ``"hard_hat"``)."""
    return safe_name(name, "unnamed")


def class_folder_names(class_names: Sequence[str]) -> list[str]:
    """One distinct folder name per class, in class-id order.

    Names that collide once sanitised or case-folded (``"hard hat"`` and ``"hard_hat"``,
    ``"Truck"`` and ``"truck"``) get ``-2``, ``-3``... in class order, so classes never share a
    folder, on case-insensitive file systems too.
    """
    used: set[str] = set()
    return [unique_name(sanitize_class_name(name), used) for name in class_names]


def mask_file_name(stem: str, index: int, class_name: str) -> str:
    """``<stem>_<NNN>_<class>.png``: one object's mask PNG, ``NNN`` its detection index (sorts in detection order)."""
    return f"{stem}_{index:03d}_{safe_name(class_name, 'object')}.png"
