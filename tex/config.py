"""Every environment variable tex reads, in one place.

| variable          | default | effect                                                  |
|-------------------|---------|---------------------------------------------------------|
| TEX_VERIFY        | 0       | 1: run the loop-IR verifier after every pass            |
| TEX_PRINT_AFTER   | (none)  | comma-separated pass names (or `all`): print the program |
|                   |         | after each of them to stderr                            |
| TEX_FUZZ_EXAMPLES | 40      | how many random programs the fuzzer test tries          |
| TEX_FUZZ_SEED     | 0       | the fuzzer's first seed                                 |
"""
from __future__ import annotations

import os


def verify_enabled() -> bool:
    return os.environ.get("TEX_VERIFY", "0") not in ("", "0")


def print_after() -> set[str]:
    value = os.environ.get("TEX_PRINT_AFTER", "")
    return {name.strip() for name in value.split(",") if name.strip()}


def fuzz_examples() -> int:
    return int(os.environ.get("TEX_FUZZ_EXAMPLES", "40"))


def fuzz_seed() -> int:
    return int(os.environ.get("TEX_FUZZ_SEED", "0"))
