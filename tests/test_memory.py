"""diffmst_lite.dsp.memory: glibc told to keep freed memory, in a running process (train() calls it)."""

import os
import subprocess
import sys

import pytest

from diffmst_lite.dsp.memory import ALLOCATOR_SETTINGS, OPT_OUT

# Allocate and touch 200 MB, free it; print whether glibc took the settings and how much
# of it the process still holds (MB of resident memory above the start): kept memory is
# reused by the next allocation without faulting in and zeroing its pages again.
KEEPS = """
import os
from diffmst_lite.dsp.memory import keep_freed_memory
took = keep_freed_memory()
import numpy as np
def resident_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
start = resident_mb()
x = np.ones(25_000_000)
del x
print(took, resident_mb() - start)
"""


def _kept(env: dict) -> tuple[bool, float]:
    out = subprocess.run([sys.executable, "-c", KEEPS], env=env, capture_output=True, text=True, check=True)
    took, held = out.stdout.split()
    return took == "True", float(held)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_freed_memory_reuses_large_blocks_and_can_be_turned_off():
    env = {k: v for k, v in os.environ.items() if k not in ALLOCATOR_SETTINGS and k != OPT_OUT}
    took, held = _kept(env)
    assert took and held > 150  # the 200 MB stay in the heap for the next allocation
    took, held = _kept({**env, OPT_OUT: "0"})
    assert not took and held < 50  # glibc's default: a block this large is unmapped when freed
    took, _ = _kept({**env, "MALLOC_ARENA_MAX": "2"})
    assert not took  # a setting the user gave is left to glibc
