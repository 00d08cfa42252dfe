"""The master's allocator: DRF ordering (``DRFSorter``) and the offer decision (``Allocator``).

Pure: no I/O, no clock reads. See README.md in this package for the vocabulary.
"""

from __future__ import annotations

from .allocator import MAX_REFUSE_SECONDS, Allocation, Allocator
from .sorter import DRFSorter

__all__ = ["MAX_REFUSE_SECONDS", "Allocation", "Allocator", "DRFSorter"]
