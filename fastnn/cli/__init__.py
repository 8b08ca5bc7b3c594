"""The command line of fastnn (``python -m fastnn``): demo, chapter-6 experiments, and helpers they share."""

from __future__ import annotations


class CLIError(Exception):
    """A failure the user can fix (data could not be downloaded, a file is corrupt ...): printed without traceback."""
