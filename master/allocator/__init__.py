"""The master's allocator: DRF ordering (``DRFSorter``, ``RoleTree``) and the offer decision
(``Allocator``): roles, weights, quota, reservations, filters.

Pure: no I/O, no clock reads. See README.md in this package for the vocabulary.
"""

from __future__ import annotations

from .allocator import MAX_REFUSE_SECONDS, Allocation, Allocator
from .quota import Quota
from .roles import RoleTree, check_role, is_subrole, role_error
from .sorter import DRFSorter
from .views import FrameworkSummary, RoleSummary

__all__ = [
    "MAX_REFUSE_SECONDS",
    "Allocation",
    "Allocator",
    "DRFSorter",
    "FrameworkSummary",
    "Quota",
    "RoleSummary",
    "RoleTree",
    "check_role",
    "is_subrole",
    "role_error",
]
