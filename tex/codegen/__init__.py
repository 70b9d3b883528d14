"""Code generation: lowered loop IR to machine code.

`tex.codegen.llvm` emits LLVM IR for CPUs and compiles it in-process
(`tex.codegen.llvm_jit`). Codegen reads the machine only from `tex.target`
and never imports the runtime.
"""
