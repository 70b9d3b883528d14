"""Lowering: a schedule to a loop program (`tex.lower.pipeline` lists the steps).

In the order they run: `stages` (inlining, compute_at checks), `bound`
(bound inference, frozen per-stage plans), `buffers`, `nest` (loop nests),
`gpu_reduction`, `tile` and `tile_match` (tensorized tiles), `scan` (scans),
`extern` (the statements of extern stages), `loop_marks` (prefetch and
double-buffer marks for the passes). `introspect` shows TE's view of the
same steps: `InferBound` (the ranges bound inference found) and `ScheduleOps`.
"""
from tex.lower.pipeline import kernel_interface, schedule_to_func

__all__ = ["kernel_interface", "schedule_to_func"]
