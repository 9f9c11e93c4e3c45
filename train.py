"""Train a translator or a language model: ``python train.py [--config PATH] [--out DIR] [section.key=value ...]``."""

import sys

from seq2seq.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())
