"""seq2seq: encoder-decoder RNN translation with a peeky LSTM decoder."""

import os

# Before torch loads: waiting OpenMP threads (libgomp) spin briefly, then sleep, unless the
# environment already says how they wait. Fast on an idle machine; on a busy one the training
# loops use fewer threads (seq2seq/threads.py).
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "20000"

from . import malloc as _malloc

_malloc.tune()  # large blocks reused instead of faulted in again every step (seq2seq/malloc.py)

__version__ = "0.1.0"
