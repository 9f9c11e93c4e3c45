"""Translate stdin to stdout: ``python translate.py --checkpoint DIR [--beam N] ...``."""

import sys

from seq2seq.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["translate", *sys.argv[1:]]))
