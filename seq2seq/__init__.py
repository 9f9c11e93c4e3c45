"""seq2seq: encoder-decoder RNN translation with a peeky LSTM decoder."""

__version__ = "0.1.0"
