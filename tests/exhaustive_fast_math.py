"""Every float32 input through the 16-lane exp, tanh or sigmoid kernel of test_fast_math.

    python tests/exhaustive_fast_math.py exp      # about 5 minutes on 2 cores

Prints the largest error in ulps against NumPy's float64 result rounded to
float32, and the fraction of inputs not correctly rounded. Not part of the
test suite (too slow); test_fast_math checks samples and edges on every run.
"""
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from test_fast_math import REFERENCE, build, ulp_errors  # noqa: E402

CHUNK = 1 << 25


def main(name: str):
    kernel = build(name, "float32", 16)
    worst, inexact, start = 0.0, 0, time.time()
    for c in range((1 << 32) // CHUNK):
        x = np.arange(c * CHUNK, (c + 1) * CHUNK, dtype=np.uint64).astype(np.uint32)
        x = x.view(np.float32)
        with np.errstate(all="ignore"):
            want = REFERENCE[name](x.astype(np.float64)).astype(np.float32)
        errors = ulp_errors(kernel(x), want)
        worst, inexact = max(worst, float(errors.max())), inexact + int((errors > 0).sum())
    print(f"{name}: max {worst:.0f} ulp, {inexact / 2 ** 32:.4%} of inputs not correctly "
          f"rounded ({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main(sys.argv[1])
