"""Train a translator or a language model: ``python train.py [--config PATH] [--out DIR] [section.key=value ...]``."""

import sys

from seq2seq.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
