"""seq2seq/runtime/malloc.py: glibc's allocator keeps large blocks in the heap after ``seq2seq.runtime.tune()``
(which the commands call where they start; importing the package alone leaves it as it is)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from seq2seq.runtime import malloc

pytestmark = pytest.mark.smoke

# In a fresh process: seq2seq.runtime.tune() (unless argv says no), then malloc 16 MiB and say
# whether glibc served it with mmap
# (mallinfo2's hblks: blocks that mmap serves), and what seq2seq.runtime.malloc applied.
PROBE = """
import ctypes, sys, seq2seq.runtime, seq2seq.runtime.malloc as m
if sys.argv[1:] != ['import only']:
    seq2seq.runtime.tune()
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks "
                                                "fordblks keepcost").split()]
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
libc.mallinfo2.restype = Info
before = libc.mallinfo2().hblks
block = libc.malloc(16 * 2**20)
print(libc.mallinfo2().hblks - before, sorted(m.applied or ()))
libc.free(block)
"""


TUNED = "0 ['MALLOC_MMAP_THRESHOLD_', 'MALLOC_TOP_PAD_', 'MALLOC_TRIM_THRESHOLD_']"  # no mmap; what was set


def probe(*args: str, **extra: str) -> str:
    env = {k: v for k, v in os.environ.items()
           if k not in (*malloc.ENV_VARS, "SEQ2SEQ_MALLOC", "GLIBC_TUNABLES")}
    done = subprocess.run([sys.executable, "-c", PROBE, *args], env={**env, **extra}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return (done.stdout + done.stderr).strip()


@pytest.mark.skipif(not malloc.glibc(), reason="glibc's malloc only")
def test_tune_keeps_a_16_mib_block_out_of_mmap() -> None:
    assert probe() == TUNED  # from the heap: its pages are reused after free
    assert probe(SEQ2SEQ_MALLOC="0") == "1 []"  # glibc's default: a fresh mmap, faulted in page by page
    assert probe(SEQ2SEQ_MALLOC="1") == TUNED
    assert probe("import only") == "1 []"  # importing the package leaves glibc as it is


@pytest.mark.skipif(not malloc.glibc(), reason="glibc's malloc only")
def test_a_bad_seq2seq_malloc_is_one_line_on_stderr_and_leaves_malloc_alone() -> None:
    assert probe(SEQ2SEQ_MALLOC="off") == ("1 []\nseq2seq: SEQ2SEQ_MALLOC must be 0 or 1, got 'off': "
                                           "glibc's malloc left as it is")


@pytest.mark.skipif(not malloc.glibc(), reason="glibc's malloc only")
def test_an_environment_that_tunes_malloc_is_left_as_it_is() -> None:
    assert probe(MALLOC_TOP_PAD_="0").endswith(" []")
    assert probe(GLIBC_TUNABLES="glibc.malloc.trim_threshold=0").endswith(" []")
    assert probe(GLIBC_TUNABLES="glibc.rtld.nns=4") == TUNED  # tunables, but none of malloc's


def test_environment_tunes_malloc() -> None:
    assert not malloc.environment_tunes_malloc({})
    assert not malloc.environment_tunes_malloc({"SEQ2SEQ_MALLOC": "1", "GLIBC_TUNABLES": "glibc.rtld.nns=4"})
    assert malloc.environment_tunes_malloc({"SEQ2SEQ_MALLOC": "0"})
    assert malloc.environment_tunes_malloc({"SEQ2SEQ_MALLOC": "off"})
    assert malloc.environment_tunes_malloc({"MALLOC_MMAP_MAX_": "0"})
    assert malloc.environment_tunes_malloc({"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=1"})
