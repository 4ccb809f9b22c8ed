"""glibc malloc settings for CPU training, applied at run time (no re-exec, no environment).

By default glibc serves every allocation above a (dynamic) threshold with a fresh ``mmap`` and
returns it to the operating system on ``free``; freed memory at the top of the heap is trimmed
too.  A training step allocates and frees the same large activation buffers again and again, so
the kernel zero-fills and page-faults them back in every step: on this project's 2-core CPU the
reference Graph WaveNet spent 30-50% of its time in the kernel and ran twice as fast with
``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736`` (see
``experiments/results/BENCHMARKS.md`` for the measurements on every model).

:func:`tune_malloc` applies the same two settings through ``mallopt(3)``:

* ``M_MMAP_MAX = 0``: no allocation is served by ``mmap``; freed blocks stay in the heap and are
  reused by the next step.
* ``M_TRIM_THRESHOLD = -1``: never trim the heap (``mallopt`` takes an ``int``, so the
  environment variable's 64 GiB cannot be passed; ``-1`` is glibc's documented "disable
  trimming", the same behaviour).

Measured on the 2-core CPU (``experiments/results/BENCHMARKS.md``, batch 64 on METR-LA, 2
threads): training 1.48x faster for STGCN, 1.24x for Graph WaveNet, 1.04x for DCRNN; the
reference implementations gain 1.17-1.56x.  The cost is memory: freed blocks are kept for reuse
and never returned to the operating system while the process lives, so fragmentation can raise
the peak RSS (+0-6% for STGCN and DCRNN, +19-25% for Graph WaveNet at METR-LA size).  The ``stgnn``
command calls :func:`tune_malloc` first thing; set ``STGNN_MALLOC=default`` to keep glibc's
defaults (for a run that is short of memory rather than time).
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["tune_malloc"]

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4

#: other allocators that replace glibc's malloc when preloaded (mallopt would be pointless)
_PRELOADED_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")


def tune_malloc() -> bool:
    """Switch glibc's malloc to keep freed memory for reuse (``M_MMAP_MAX=0``, no trimming).

    A no-op returning ``False`` when: the platform is not Linux with glibc; the environment
    variable ``STGNN_MALLOC`` is ``default``; the user already configured malloc
    (any ``MALLOC_*`` variable, or ``glibc.malloc`` tunables in ``GLIBC_TUNABLES``); or another
    allocator is preloaded (``LD_PRELOAD`` naming jemalloc, tcmalloc or mimalloc).  Safe to call
    more than once.

    Returns:
        ``True`` if both settings were applied.

    Example:
        >>> isinstance(tune_malloc(), bool)
        True
    """
    if os.environ.get("STGNN_MALLOC", "").strip().lower() == "default":
        return False
    if any(key.startswith("MALLOC_") for key in os.environ):
        return False
    if "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    preload = os.environ.get("LD_PRELOAD", "").lower()
    if any(name in preload for name in _PRELOADED_ALLOCATORS):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)  # the symbols the process already uses
        libc.gnu_get_libc_version  # noqa: B018  (glibc only; musl has no such symbol)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, -1))
