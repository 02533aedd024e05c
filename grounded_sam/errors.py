"""Exceptions raised by the package.

Every error a user can cause or fix derives from :class:`GroundedSamError`, so front-ends
(the CLI, ``app.py``) can catch one type and show its message, which always says what was
expected, what arrived and how to fix it.
"""

from __future__ import annotations


class GroundedSamError(Exception):
    """Base class of every error this package raises on purpose."""


class CategoryError(GroundedSamError, ValueError):
    """The category prompts are empty or malformed."""


class ImageLoadError(GroundedSamError, ValueError):
    """An image could not be read, decoded or accepted (corrupt, not an image, too large)."""


class VideoLoadError(GroundedSamError, ValueError):
    """A video could not be opened or decoded (not a video, no frames, corrupt, unsupported codec, over a cap)."""


class ModelNotFoundError(GroundedSamError, FileNotFoundError):
    """No weights were found for a model name or path in any place the resolver looks."""


class ModelLoadError(GroundedSamError, RuntimeError):
    """Weights were found but could not be turned into a working model."""


class UnknownModelError(GroundedSamError, KeyError):
    """A model name is not in the registry and is not a path."""

    def __str__(self) -> str:  # KeyError would quote the message; show it plainly.
        return str(self.args[0]) if self.args else ""


class DeviceError(GroundedSamError, ValueError):
    """A device was asked for that this machine does not have or does not know."""


class InputError(GroundedSamError, FileNotFoundError):
    """A command-line input (file or folder) does not exist or holds no images."""


class OptionError(GroundedSamError, ValueError):
    """A setting is out of range or unknown."""


class ArchiveError(GroundedSamError, ValueError):
    """An uploaded archive is unreadable, unsafe (a path leaving its folder) or over a size cap."""


class OutputFolderError(GroundedSamError, ValueError):
    """The output folder holds a run with other settings, files no manifest accounts for, or a run in progress."""


class EditError(GroundedSamError, ValueError):
    """An edit refers to an object, class or position that does not exist."""


class EngineError(GroundedSamError, RuntimeError):
    """A run engine cannot run: Ray is not installed, its cluster cannot be reached, or its workers cannot start."""


class DiskFullError(GroundedSamError, OSError):
    """The output folder's disk (or quota) is full: the run stopped, keeping what it finished; free space and resume."""
