/* cuda_bf16.h for the CPU simulator: `__nv_bfloat16` and its conversions are defined in
   tex_cuda_simulator.h, which every simulated kernel includes first. */
#pragma once
