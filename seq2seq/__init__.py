"""seq2seq: encoder-decoder RNN translation with a peeky LSTM decoder.

Importing the package, or any of its modules, changes nothing in the process: the commands
apply their process-wide settings where they start (:func:`seq2seq.runtime.tune`).

* :mod:`seq2seq.config`: the typed configuration;
* :mod:`seq2seq.data`: corpora, tokenizers, batches;
* :mod:`seq2seq.model`: the networks, loss, search, checkpoints;
* :mod:`seq2seq.training`: the training loop and its run directory;
* :mod:`seq2seq.translation`: translating and scoring with a checkpoint;
* :mod:`seq2seq.cli`, :mod:`seq2seq.serve`, :mod:`seq2seq.tools`: the commands;
* :mod:`seq2seq.runtime`: device, threads, allocator, distributed.
"""

__version__ = "0.1.0"
