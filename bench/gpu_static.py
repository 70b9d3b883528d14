"""Static facts of tex's GPU kernels, read from the compiled code: no GPU needed.

    python -m bench.gpu_static [--arch sm_90] [--json FILE] [--only NAME ...]

Every kernel of bench/gpu_schedules.py, built at the benchmark's sizes (matmul
4096³, reductions and softmax over 8192 x 8192, ...) for `cuda -arch=<arch>` and
compiled by NVRTC. Per kernel function it prints:

* registers, spill bytes (stores + loads) and shared memory bytes, as ptxas
  reports them (`tex.codegen.nvrtc.resource_usage`), plus the dynamic shared
  memory a launch asks for (`CudaLaunch.shared_bytes`, past 48 KB);
* counts of the SASS instructions that matter (`FAMILIES`: FFMA, HMMA, global
  and shared loads and stores by width, LDGSTS, LDSM, BAR, SHFL, MUFU, ...) in the
  main loop and in the whole kernel, from `nvdisasm` (the nvidia-cuda-nvdisasm
  wheel) run on the cubin;
* flops per byte of global traffic of one block (`GpuCase.block_work`).

**The main loop** is found from the SASS control flow: every backward branch
(a `BRA` to a label at a lower address) closes a loop whose body runs from the
label to the branch, both included. Of the innermost loops (those whose body
holds no other loop's), the main loop is the one with the most instructions;
its counts are those of one iteration. A kernel whose loops were all unrolled
has no main loop (its row shows "-", its JSON counts are empty).

**Flops per byte** are the case's own arithmetic (from its tile sizes): the
flops one block does (each add, multiply, max, exp, ... of the computation's
definition counts one) over the bytes its tile reads from and writes to
global memory, each element once (perfect reuse inside the block).

`--json FILE` writes {kernel: {"registers", "spills", "shared_bytes", "sass" (main
loop), "sass_kernel" (whole kernel), "loop_instructions", "kernel_instructions"
(labels and NOP padding left out), "flops_per_byte"}}.
A case with several kernel functions gives one entry per function,
"<case>.kernelN".
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import re
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench import gpu_schedules as cases
from tex.codegen import nvrtc

#: The instruction families counted, in table order. A family is an opcode's first word;
#: memory families carry the access width in bits ("LDG.128").
FAMILIES = ("FFMA", "FMUL", "FADD", "HMMA", "HGMMA", "LDG", "LDGSTS", "UTMALDG", "LDSM", "LDS",
            "STS", "STG", "ATOMG", "ATOMS", "REDG", "BAR", "DEPBAR", "SHFL", "MUFU", "CALL")
_WIDTHS = {"U8": 8, "S8": 8, "U16": 16, "S16": 16, "64": 64, "128": 128}
_SIZED = ("LDG", "LDS", "STS", "STG")
_WHEEL = "nvidia-cuda-nvdisasm"


@dataclass(frozen=True)
class Instruction:
    """One SASS instruction of nvdisasm's listing, or a label (opcode "LABEL")."""

    address: int
    opcode: str                     # with its modifiers: "LDG.E.128.CONSTANT"
    target: str | None = None       # the label a branch goes to


def benchmark_cases() -> list[cases.GpuCase]:
    """Every schedule of bench/gpu_schedules.py at the sizes bench/gpu.py times."""
    n, rows = 4096, 8192
    found = [cases.elementwise(2**26), cases.elementwise(2**26, threads=256, vector=4),
             cases.matmul(n, n, n, tile=128, per_thread=8, step=8, min_blocks=2),
             cases.matmul(n, n, n, tile=128, per_thread=8, step=8, double_buffer=True,
                          min_blocks=2),
             cases.matmul(n, n, n, tile=128, per_thread=8, step=8, pipelined=True,
                          min_blocks=2),
             cases.matmul_wmma(n, n, n), cases.matmul_mma(n, n, n, "float16"),
             cases.matmul_mma(n, n, n, "bfloat16"), cases.conv2d(32, 64, 64, 56),
             cases.column_sum(rows, rows), cases.softmax(rows, rows, threads=512),
             cases.layernorm(rows, rows, threads=512)]
    found += [cases.row_reduce(rows, rows, strategy, threads=512)
              for strategy in ("shared", "warp", "atomic")]
    found += [cases.full_sum(2**26, strategy) for strategy in ("shared", "warp", "atomic")]
    found += [cases.row_sum_rfactor(rows, rows, "warp", threads=256),
              cases.row_argmax(rows, rows, "warp", threads=256)]
    return found


def nvdisasm() -> str:
    """The path of nvdisasm, from its pip wheel; RuntimeError naming the wheel without it."""
    try:
        files = importlib.metadata.files(_WHEEL) or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for file in files:
        if file.name == "nvdisasm" and file.parent.name == "bin":
            return str(file.locate())
    raise RuntimeError(f"bench.gpu_static disassembles with nvdisasm, which is missing: "
                       f"pip install {_WHEEL} (or tex's gpu-dev extra)")


def disassemble(cubin: bytes) -> dict[str, list[Instruction]]:
    """{function: its instructions} of a cubin, as `parse_sass` reads nvdisasm's text."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as file:
        file.write(cubin)
        file.flush()
        text = subprocess.run([nvdisasm(), "-c", file.name], check=True, capture_output=True,
                              text=True).stdout
    return parse_sass(text)


_FUNCTION = re.compile(r"^\.text\.(\w+):")
_LABEL = re.compile(r"^(\.L_\w+):")
_INSTRUCTION = re.compile(r"/\*([0-9a-f]+)\*/\s+(@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_.]*)([^;]*);")
_NEVER = re.compile(r"@!U?PT\s")  # predicated on "not true": padding that never runs
_TARGET = re.compile(r"`\((\.L_\w+)\)")


def parse_sass(text: str) -> dict[str, list[Instruction]]:
    """{function: instructions} of nvdisasm's text; a label is an Instruction "LABEL" (at
    address -1) whose target is its name, a branch's target the name of its label. An
    instruction predicated on `!PT` (padding ptxas puts after cp.async) never runs and is
    left out."""
    functions: dict[str, list[Instruction]] = {}
    current: list[Instruction] = []
    for line in text.splitlines():
        line = line.strip()
        if match := _FUNCTION.match(line):
            current = functions.setdefault(match[1], [])
        elif match := _LABEL.match(line):
            current.append(Instruction(-1, "LABEL", match[1]))
        elif (match := _INSTRUCTION.search(line)) and not _NEVER.match(match[2] or ""):
            target = _TARGET.search(match[4])
            current.append(Instruction(int(match[1], 16), match[3],
                                       target[1] if target else None))
    return functions


def loops(instructions: list[Instruction]) -> list[list[Instruction]]:
    """The body of every loop closed by a backward branch: from its label to the branch."""
    code = [i for i in instructions if i.opcode != "LABEL"]
    at: dict[str, int] = {}
    for position, instruction in enumerate(instructions):
        if instruction.opcode == "LABEL":
            following = next((i for i in instructions[position:] if i.opcode != "LABEL"), None)
            at[instruction.target] = following.address if following else -1
    found = []
    for instruction in code:
        start = at.get(instruction.target, -1) if family(instruction.opcode) == "BRA" else -1
        if 0 <= start < instruction.address:
            found.append([i for i in code if start <= i.address <= instruction.address])
    return found


def main_loop(instructions: list[Instruction]) -> list[Instruction] | None:
    """The longest innermost loop's body (see the module docstring); None without loops."""
    bodies = loops(instructions)
    spans = [(body[0].address, body[-1].address) for body in bodies]
    innermost = [body for body, (start, end) in zip(bodies, spans)
                 if not any(start <= s and e <= end and (s, e) != (start, end)
                            for s, e in spans)]
    return max(innermost, key=len) if innermost else None


def family(opcode: str) -> str:
    """An opcode's family: its first word, with the access width for memory families
    ("LDG.E.128.CONSTANT" -> "LDG.128", "LDS" -> "LDS.32")."""
    first, *modifiers = opcode.split(".")
    if first not in _SIZED:
        return first
    widths = [_WIDTHS[m] for m in modifiers if m in _WIDTHS]
    return f"{first}.{widths[0] if widths else 32}"


def count(instructions) -> dict[str, int]:
    """{family: count} of the families in FAMILIES, in their order."""
    counted = Counter(family(i.opcode) for i in instructions if i.opcode != "LABEL")
    return {name: counted[name] for name in sorted(counted, key=_order)
            if name.split(".")[0] in FAMILIES}


def _order(name: str):
    first, _, width = name.partition(".")
    return (FAMILIES.index(first) if first in FAMILIES else len(FAMILIES), int(width or 0))


def kernel_facts(case: cases.GpuCase, arch: str) -> dict[str, dict]:
    """{kernel: facts} (the JSON entries) of one case built for `arch`."""
    kernel = case.build(f"cuda -arch={arch}")
    source = kernel.get_source("cuda")
    usage = nvrtc.resource_usage(source, arch)
    sass = disassemble(nvrtc.compile_source(source, arch))
    launches = kernel.imported_modules[0].launches
    dynamic = {launch.name: launch.shared_bytes for launch in launches}
    facts = {}
    for function in sorted(usage):
        instructions = sass.get(function, [])
        loop = main_loop(instructions)
        name = case.name if len(usage) == 1 else f"{case.name}.{function.rsplit('_', 1)[-1]}"
        facts[name] = {
            "registers": usage[function]["registers"],
            "spills": usage[function]["spill_bytes"],
            "shared_bytes": usage[function]["shared_bytes"] + dynamic.get(function, 0),
            "sass": count(loop) if loop else {},
            "sass_kernel": count(instructions),
            "loop_instructions": _executable(loop or []),
            "kernel_instructions": _executable(instructions),
            "flops_per_byte": flops_per_byte(case)}
    return facts


def _executable(instructions) -> int:
    """How many instructions there are, labels and NOP padding left out."""
    return sum(i.opcode not in ("LABEL", "NOP") for i in instructions)


def flops_per_byte(case: cases.GpuCase) -> float | None:
    """The case's flops per byte of one block's global traffic, if it says."""
    if case.block_work is None:
        return None
    flops, moved = case.block_work
    return round(flops / moved, 3)


def table(facts: dict[str, dict], key: str, title: str) -> str:
    """One text table: resources, the `key` counts ("sass" or "sass_kernel"), flops/byte."""
    columns = sorted({name for f in facts.values() for name in f[key]}, key=_order)
    head = f"{'kernel':28s} {'regs':>4s} {'spill':>5s} {'smem':>6s} {'instr':>5s}"
    lines = [title, head + "".join(f" {c:>{max(4, len(c))}s}" for c in columns) + "  flop/B"]
    for name, f in facts.items():
        instructions = f["loop_instructions" if key == "sass" else "kernel_instructions"]
        loop_missing = key == "sass" and not f["loop_instructions"]
        cells = "".join(f" {'-' if loop_missing else f[key].get(c, 0):>{max(4, len(c))}}"
                        for c in columns)
        intensity = "-" if f["flops_per_byte"] is None else f"{f['flops_per_byte']:.3f}"
        lines.append(f"{name:28s} {f['registers']:4d} {f['spills']:5d} {f['shared_bytes']:6d}"
                     f" {'-' if loop_missing else instructions:>5}{cells}  {intensity:>6s}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="sm_90", help="the GPU architecture (sm_NN)")
    parser.add_argument("--json", help="write the facts to this file")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="only these cases")
    options = parser.parse_args(argv)
    try:
        nvdisasm()
    except RuntimeError as err:
        print(err, file=sys.stderr)
        return 1
    chosen = benchmark_cases()
    if options.only:
        unknown = set(options.only) - {case.name for case in chosen}
        if unknown:
            parser.error(f"--only: no case named {', '.join(sorted(unknown))}; the cases are "
                         f"{', '.join(case.name for case in chosen)}")
        chosen = [case for case in chosen if case.name in options.only]
    facts: dict[str, dict] = {}
    for case in chosen:
        facts.update(kernel_facts(case, options.arch))
    print(f"tex kernels for cuda -arch={options.arch}, compiled by {nvrtc.nvrtc_version()}")
    print(table(facts, "sass", "\nmain loop (one iteration; counts of SASS instructions)"))
    print(table(facts, "sass_kernel", "\nwhole kernel (instructions in the code, not executed)"))
    if options.json:
        Path(options.json).write_text(json.dumps(facts, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
