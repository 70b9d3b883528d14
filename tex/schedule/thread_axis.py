"""GPU thread axes that a stage's loops are bound to (`Stage.bind`)."""
from __future__ import annotations

from dataclasses import dataclass, field

from tex.errors import ScheduleError
from tex.expr import Const
from tex.ir import THREAD_TAGS, ThreadIndex
from tex.tensor import Range


@dataclass(frozen=True, slots=True)
class ThreadAxis:
    """A GPU thread axis that loops are bound to: `tex.thread_axis("threadIdx.x")`.

    Axes are identified by their tag; `extent` (from a range `(0, n)`) and `name`
    are what the user declared, not part of the identity. `var` stands for the
    thread's index in a store predicate (`Stage.set_store_predicate(tx.var.equal(0))`)."""

    tag: str
    extent: int | None = field(default=None, compare=False)
    name: str = field(default="", compare=False)

    @property
    def var(self) -> ThreadIndex:
        """The index of the running thread along this axis, for expressions."""
        if self.tag == "vthread":
            raise ScheduleError(f"thread_axis {self.name}: a vthread has no thread index to "
                                "use in an expression")
        return ThreadIndex(self.tag)


def thread_axis(dom=None, tag: str = "", name: str = "") -> ThreadAxis:
    """The GPU thread axis `tag`: "blockIdx.x|y|z", "threadIdx.x|y|z" or "vthread".

    A loop bound to a blockIdx axis runs its iterations on different blocks,
    to a threadIdx axis on different threads of a block; "vthread" is a
    virtual thread, run serially in each thread but treated like a thread by
    bound inference (so a shared tile covers every virtual thread).
    As in TE, the tag may come first (`thread_axis("threadIdx.x", name="tx")`)
    or after a range (`thread_axis((0, 8), "threadIdx.x")`); a loop bound to
    an axis with a range must have that many iterations where `bind` can
    tell. TVM: `te.thread_axis`; Halide: `gpu_blocks` / `gpu_threads`.
    """
    if isinstance(dom, str):
        if tag:
            raise ScheduleError(f"thread_axis: got the tag twice ({dom!r} and {tag!r}); "
                                "pass thread_axis(tag) or thread_axis((0, n), tag)")
        dom, tag = None, dom
    if tag not in THREAD_TAGS:
        raise ScheduleError(f"thread_axis: unknown thread axis {tag!r}; expected one of "
                            f"{', '.join(THREAD_TAGS)}")
    return ThreadAxis(tag, _thread_extent(dom, tag), name or tag)


def _thread_extent(dom, tag: str) -> int | None:
    """The number of threads of a range `(0, n)` (or `Range`) given to `thread_axis`."""
    if dom is None:
        return None
    if isinstance(dom, Range):
        lo, hi = dom.min, dom.extent
    elif isinstance(dom, (tuple, list)) and len(dom) == 2:
        lo, hi = dom
    else:
        lo = hi = None
    lo, hi = (b.value if isinstance(b, Const) else b for b in (lo, hi))
    if lo != 0 or not isinstance(hi, int) or isinstance(hi, bool) or hi <= 0:
        raise ScheduleError(f"thread_axis {tag}: the range must be (0, n) with a positive "
                            f"constant n, got {dom!r}")
    return hi
