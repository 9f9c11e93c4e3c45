"""Where the code runs: the device, OpenMP threads, glibc's allocator, and distributed training.

Nothing here changes the process when imported. :func:`tune` applies the process-wide
settings, once, where a run starts (``python -m seq2seq``, ``train.py``, ``translate.py``).
"""

from .tuning import tune

__all__ = ["tune"]
