"""What the agent offers: its resources (given, or detected from the machine) and attributes.

``detect_resources`` is used when ``--resources`` is absent: all CPUs; total memory minus
min(1 GiB, half); free disk of the work dir minus min(5 GiB, half); ports 31000-32000 (the
Mesos defaults). Attributes are parsed by ``mensa.proto.attributes``.
"""

from __future__ import annotations

import os
import shutil

from mensa.proto.resources import Resources

DEFAULT_PORTS = "[31000-32000]"


def total_memory_mb() -> float:
    """Returns the machine's physical memory in MB."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1024 * 1024)


def detect_resources(work_dir: str) -> Resources:
    """Returns the resources this machine can offer (see the module docstring)."""
    cpus = os.cpu_count() or 1
    mem = total_memory_mb()
    mem -= min(1024.0, mem / 2)
    os.makedirs(work_dir, exist_ok=True)
    disk = shutil.disk_usage(work_dir).free / (1024 * 1024)
    disk -= min(5120.0, disk / 2)
    return Resources.parse(f"cpus:{cpus};mem:{int(mem)};disk:{int(disk)};ports:{DEFAULT_PORTS}")
