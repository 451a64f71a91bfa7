"""UMAP and pynndescent with their numba functions cached on disk, so a new process does not
compile them again.

umap-learn compiles `smooth_knn_dist`, `compute_membership_strengths` and its layout epochs
(and pynndescent half of its kernels) without numba's `cache=True`: every new process paid about
8 s of compilation before its first fit, on a 2-core machine, whatever the collection's size.
`enable_caching` is numba's public method behind `cache=True`; turned on before the first call,
the compiled code is written next to the package (or to numba's user cache folder when that is
read-only) and loaded by later processes. A function numba cannot cache is compiled as before.
"""

from __future__ import annotations

import sys
import warnings
from types import ModuleType

#: Packages whose numba functions get a disk cache (their own modules already imported).
PACKAGES = ("umap", "pynndescent")
_done: set[str] = set()


def enable_disk_cache(packages: tuple[str, ...] = PACKAGES) -> int:
    """Turn on numba's disk cache for every uncached jitted function of `packages`' imported
    modules; returns how many were turned on (0 on later calls)."""
    from numba.core.registry import CPUDispatcher

    turned = 0
    for name, module in list(sys.modules.items()):
        if name in _done or not isinstance(module, ModuleType) or name.split(".")[0] not in packages:
            continue
        _done.add(name)
        for value in list(vars(module).values()):
            if isinstance(value, CPUDispatcher) and value.py_func.__module__ == name:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    value.enable_caching()
                turned += 1
    return turned


def import_umap() -> ModuleType:
    """`import umap`, its numba functions (and pynndescent's) cached on disk."""
    import umap

    enable_disk_cache()
    return umap
