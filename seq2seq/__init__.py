"""seq2seq: encoder-decoder RNN translation with a peeky LSTM decoder."""

import os

# Before torch loads: OpenMP threads that sleep when they wait instead of spinning, so that
# two threads do not collapse when another process holds a core (seq2seq/device.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
