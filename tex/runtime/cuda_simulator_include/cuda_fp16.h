/* cuda_fp16.h for the CPU simulator: `half` and its conversions are defined in
   tex_cuda_simulator.h, which every simulated kernel includes first. */
#pragma once
