"""Errors the tree engine raises; each message names the path, the problem and the fix."""

from __future__ import annotations


class TreeError(Exception):
    """Base class for every refusal or failure of the tree engine."""


class RootNotAllowed(TreeError):
    """The path lies outside every allowed root."""


class InvalidPath(TreeError):
    """The path cannot be a filesystem path at all (for example it holds a NUL byte)."""


class RootNotFound(TreeError):
    """The path does not exist."""


class NotADirectory(TreeError):
    """A tree root was asked for but the path is not a directory."""


class NotAFile(TreeError):
    """A single file was asked for but the path is not a regular file."""


class TreeFileError(TreeError):
    """A .onextree file is unreadable or not in the expected shape."""


class InvalidQuery(TreeError):
    """A query's type or limit is not one the engine understands."""
