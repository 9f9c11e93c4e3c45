"""Translate stdin to stdout: ``python translate.py --checkpoint DIR [--beam N] ...``."""

import sys

from seq2seq.cli import translate_main

if __name__ == "__main__":
    sys.exit(translate_main())
