"""Random legal schedules for the programs of `fuzz_programs`, as Python source.

`random_schedule(rng, ns, outputs)` writes `s = tex.create_schedule(...)` and
then one primitive per line, executing each line in the namespace `ns` (where
the program was declared) as soon as it is written: the lines are both the
record of what was done and a script that does it again. The choices read the
live schedule, so every call is legal by construction. Phases, in order:

1. dataflow: cache_read, cache_write, rfactor (mostly after a split of the
   reduction axis);
2. compute_inline of some elementwise stages that are not outputs;
3. loop structure of every stage: split (factor/nparts), reorder, fuse, tile;
4. compute_at of some stages at a random loop of a consumer, outside which
   no other consumer runs (a rare compute_root takes 2 or 4 back);
5. annotations: parallel (a data loop, seldom nested in another parallel
   loop), vectorize (the innermost loop, constant extent), unroll (a
   constant-extent loop), prefetch (of a tensor the stage reads plainly, at
   a loop that is not vectorized, 1, 2 or 5 iterations ahead).

With `gpu=True`, phase 5 binds instead of running in parallel: each root
stage's first loop (a data loop; data loops are first reordered outside the
reduction loops if need be) goes to blockIdx.x and its second, when a
data loop of constant extent up to 1024, to threadIdx.x, and sometimes a
third data loop to threadIdx.y, blockIdx.y or a virtual thread; sometimes a
reduction loop of constant extent up to 1024 goes to the free threadIdx axis
with a random strategy ("shared", or "warp" where it may apply), and
sometimes (sums, minima and maxima) the outer reduction loop goes to
blockIdx.y with the "atomic" strategy. Stages computed inside a kernel keep
their loops (per thread, or per block, where every thread computes the same
values), except that a stage computed at a block-level loop sometimes gives a
data loop to threadIdx.x, to be computed by the block's threads together, and
is sometimes double-buffered when that loop is serial.
"""
from __future__ import annotations

import tex
from tex.expr import Const, TensorRead
from tex.schedule.relations import Split
from tex.visitor import collect

MAX_VECTOR = 64
MAX_UNROLL = 16
ATOMIC_REDUCERS = ("sum", "min", "max")  # what reduce_strategy "atomic" combines


def random_schedule(rng, ns, outputs, lines: list[str], gpu: bool = False) -> None:
    """Append to `lines` a schedule of the tensors named `outputs`, executing it in `ns`.

    Each line is executed as it is appended, so on an error `lines` ends
    with the line that raised it.
    """
    _ScheduleWriter(rng, ns, outputs, lines, gpu).write()


class _ScheduleWriter:
    def __init__(self, rng, ns, outputs, lines, gpu=False):
        self.rng, self.ns, self.lines, self.gpu = rng, ns, lines, gpu
        self.fetch_ahead = None   # how shared tiles are fetched ahead: one way per program
        self.used = set(ns)
        self.emit(f"s = tex.create_schedule([{', '.join(o + '.op' for o in outputs)}])")
        self.s = ns["s"]
        self.stage_names = {}     # Stage -> python name of a tensor it computes
        self.axis_names = {}      # IterVar -> python name
        self.tensor_names = {}    # Tensor -> python name
        for name, value in ns.items():
            if isinstance(value, tex.Tensor):
                self._name_tensor(value, name)
        self.parallel = {}        # Stage -> its parallel leaf
        self.outputs = [self.s[ns[name]] for name in outputs]

    def emit(self, line: str):
        self.lines.append(line)
        exec(line, self.ns)  # noqa: S102 - the line is the record of the step

    def fresh(self, hint: str) -> str:
        name, k = hint, 1
        while name in self.used:
            k += 1
            name = f"{hint}{k}"
        self.used.add(name)
        return name

    def _name_tensor(self, tensor, name):
        self.tensor_names[tensor] = name
        stage = self.s.stage_of(tensor)
        if stage is not None and stage not in self.stage_names:
            self.stage_names[stage] = name

    def st(self, stage) -> str:
        return f"s[{self.stage_names[stage]}]"

    def axis(self, stage, iv) -> str:
        """The python name of leaf `iv` of `stage`, binding it on first use."""
        name = self.axis_names.get(iv)
        if name is None:
            name = self.fresh(f"{self.stage_names[stage]}_{iv.name}")
            self.emit(f"{name} = {self.st(stage)}.leaf_iter_vars"
                      f"[{stage.leaf_iter_vars.index(iv)}]")
            self.axis_names[iv] = name
        return name

    def bind(self, names: list[str]):
        for name in names:
            self.axis_names[self.ns[name]] = name

    def write(self):
        """The five phases of the module docstring, in order."""
        for _ in range(self.rng.choice([0, 0, 1, 1, 2, 3])):
            self.rng.choice([self.cache_read, self.cache_write, self.rfactor, self.rfactor])()
        stages = [st for st in self.s.stages if st.op.num_outputs == 1]
        for stage in stages:
            if self.inlinable(stage) and self.rng.random() < 0.3:
                self.emit(f"{self.st(stage)}.compute_inline()")
                if self.rng.random() < 0.05:
                    self.emit(f"{self.st(stage)}.compute_root()")
        for stage in stages:
            if stage.attach.kind != "inline" or self.rng.random() < 0.1:
                for _ in range(self.rng.choice([0, 1, 1, 2, 3, 4])):
                    self.rng.choice([self.split, self.split, self.reorder, self.fuse,
                                     self.tile])(stage)
        for stage in reversed(stages):
            self.maybe_compute_at(stage)
        for stage in reversed(stages):  # consumers first: a parallel loop is known before
            if stage.attach.kind != "inline":  # the stages computed inside it
                if self.gpu and stage.attach.kind == "root":
                    self.bind_threads(stage)
                elif self.gpu and stage.attach.kind == "at":
                    self.share_threads(stage)
                self.annotate(stage)

    # --- dataflow ------------------------------------------------------------
    def cache_read(self):
        pairs = [(t, st) for st in self.s.stages for t in st.op.input_tensors
                 if t in self.tensor_names]
        if not pairs:
            return
        tensor, _ = self.rng.choice(pairs)
        readers = [st for t, st in pairs if t is tensor]
        readers = self.rng.sample(readers, self.rng.randint(1, len(readers)))
        name = self.fresh(f"{self.tensor_names[tensor]}_local")
        scope = self.rng.choice(["local", "global"])
        if self.gpu:  # inside a kernel "global" becomes local or shared; at the root it must be
            scope = "global"
        self.emit(f'{name} = s.cache_read({self.tensor_names[tensor]}, "{scope}", '
                  f'[{", ".join(self.st(r) for r in readers)}])')
        self._name_tensor(self.ns[name], name)

    def cache_write(self):
        stages = [st for st in self.s.stages if st.op.num_outputs == 1 and not st.relations
                  and not st.annotations and st.attach.kind == "root"]
        if stages:
            stage = self.rng.choice(stages)
            name = self.fresh(f"{self.stage_names[stage]}_cache")
            scope = "global" if self.gpu else "local"
            self.emit(f'{name} = s.cache_write({self.stage_names[stage]}, "{scope}")')
            self._name_tensor(self.ns[name], name)

    def rfactor(self):
        stages = [st for st in self.s.stages if st.op.reduce_axis and st.op.num_outputs == 1]
        if not stages:
            return
        stage = self.rng.choice(stages)
        reduce = [v for v in stage.leaf_iter_vars if v.kind == "reduce"]
        leaf = self.rng.choice(reduce)
        if self.rng.random() < 0.85:
            leaf = self.rng.choice(self.split(stage, leaf) or [leaf])
        fa = self.rng.randint(0, len(stage.op.axis))
        name = self.fresh(f"{self.stage_names[stage]}_rf")
        self.emit(f"{name} = s.rfactor({self.stage_names[stage]}, {self.axis(stage, leaf)}, "
                  f"factor_axis={fa})")
        self._name_tensor(self.ns[name], name)

    # --- where stages are computed ---------------------------------------------
    def inlinable(self, stage) -> bool:
        return stage not in self.outputs and not stage.op.reduce_axis

    def consumers(self, stage) -> list:
        """The stages that read `stage` and have loops (looking through inlined ones)."""
        found = []
        readers = [st for st in self.s.stages
                   if any(self.s.stage_of(t) is stage for t in st.op.input_tensors)]
        for reader in readers:
            more = self.consumers(reader) if reader.attach.kind == "inline" else [reader]
            found += [r for r in more if r not in found]
        return found

    def maybe_compute_at(self, stage):
        """compute_at a loop of a consumer, outside which no other consumer runs."""
        if stage.attach.kind == "inline" or stage in self.outputs or self.rng.random() > 0.45:
            return
        consumers, options = self.consumers(stage), []
        for target in consumers:
            inside = [attached_at(other, target) for other in consumers if other is not target]
            if None not in inside:
                options.append((target, min(inside, default=len(target.leaf_iter_vars) - 1)))
        if options:
            target, last = self.rng.choice(options)
            leaf = target.leaf_iter_vars[self.rng.randint(0, last)]
            self.emit(f"{self.st(stage)}.compute_at({self.st(target)}, "
                      f"{self.axis(target, leaf)})")
            if self.rng.random() < 0.05:
                self.emit(f"{self.st(stage)}.compute_root()")

    # --- loop structure ---------------------------------------------------------
    def amount(self, stage, leaf, choices=(2, 3, 4, 5, 7, 8, 16)) -> int | None:
        """A split factor (or part count), mostly below the axis' extent where it is known."""
        extent = constant_extents(stage).get(leaf)
        if extent is None or self.rng.random() < 0.1:
            return self.rng.choice(list(choices) + [1, 40])
        smaller = [c for c in choices if c < extent]
        return self.rng.choice(smaller) if smaller else None

    def split(self, stage, leaf=None) -> list | None:
        leaf = leaf or self.rng.choice(stage.leaf_iter_vars)
        amount = self.amount(stage, leaf)
        if amount is None:
            return None
        parent = self.axis(stage, leaf)
        outer, inner = self.fresh(f"{parent}_o"), self.fresh(f"{parent}_i")
        how = "nparts" if self.rng.random() < 0.25 else "factor"
        self.emit(f"{outer}, {inner} = {self.st(stage)}.split({parent}, {how}={amount})")
        self.bind([outer, inner])
        return [self.ns[outer], self.ns[inner]]

    def reorder(self, stage):
        leaves = list(stage.leaf_iter_vars)
        chosen = self.rng.sample(leaves, self.rng.randint(min(2, len(leaves)), len(leaves)))
        if len(chosen) >= 2:
            names = [self.axis(stage, v) for v in chosen]
            self.emit(f"{self.st(stage)}.reorder({', '.join(names)})")

    def fuse(self, stage):
        leaves = stage.leaf_iter_vars
        pairs = [(a, b) for a, b in zip(leaves, leaves[1:]) if a.kind == b.kind]
        if pairs:
            a, b = (self.axis(stage, v) for v in self.rng.choice(pairs))
            fused = self.fresh(f"{a}_{b.rsplit('_', 1)[-1]}_f")
            self.emit(f"{fused} = {self.st(stage)}.fuse({a}, {b})")
            self.bind([fused])

    def tile(self, stage):
        if len(stage.leaf_iter_vars) < 2:
            return
        leaves = self.rng.sample(stage.leaf_iter_vars, 2)
        fx, fy = (self.amount(stage, v, (2, 3, 4, 8, 16)) for v in leaves)
        if fx is None or fy is None:
            return
        x, y = (self.axis(stage, v) for v in leaves)
        names = [self.fresh(f"{x}_o"), self.fresh(f"{y}_o"), self.fresh(f"{x}_i"),
                 self.fresh(f"{y}_i")]
        self.emit(f"{', '.join(names)} = {self.st(stage)}.tile({x}, {y}, {fx}, {fy})")
        self.bind(names)

    # --- annotations --------------------------------------------------------------
    def annotate(self, stage):
        leaves, rng = stage.leaf_iter_vars, self.rng
        extents = constant_extents(stage)
        data = [v for v in leaves if v.kind == "data"]
        nested = self.inside_parallel(stage)  # legal, but rarely useful: seldom
        data = [v for v in data if v not in stage.bindings]
        if data and not self.gpu and rng.random() < (0.03 if nested else 0.3):
            leaf = data[0] if rng.random() < 0.7 else rng.choice(data)
            self.parallel[stage] = leaf
            self.emit(f"{self.st(stage)}.parallel({self.axis(stage, leaf)})")
        last = leaves[-1]
        lanes = extents.get(last)
        if last not in stage.annotations and last not in stage.bindings and lanes \
                and lanes <= MAX_VECTOR \
                and rng.random() < 0.35:
            self.emit(f"{self.st(stage)}.vectorize({self.axis(stage, last)})")
        small = [v for v in leaves if v not in stage.annotations and v not in stage.bindings
                 and 0 < (extents.get(v) or 0) <= MAX_UNROLL]
        if small and rng.random() < 0.25:
            self.emit(f"{self.st(stage)}.unroll({self.axis(stage, rng.choice(small))})")
        if not self.gpu and rng.random() < 0.15:
            self.prefetch(stage)

    def prefetch(self, stage):
        """Prefetch a tensor the stage reads plainly (not a gather; an input or computed at
        the root) at one of its serial, unrolled or parallel loops."""
        def plain(read):
            return not any(collect(i, lambda n: isinstance(n, TensorRead))
                           for i in read.indices)
        reads = [r for b in stage.op.body for r in collect(b, lambda n: isinstance(
            n, TensorRead)) if plain(r) and r.tensor in self.tensor_names]
        tensors = [r.tensor for r in reads if (self.s.stage_of(r.tensor) is None or
                                              self.s.stage_of(r.tensor).attach.kind == "root")]
        loops = [v for v in stage.leaf_iter_vars if stage.annotations.get(v) != "vectorize"
                 and v not in stage.bindings]
        if tensors and loops:
            tensor, leaf = self.rng.choice(tensors), self.rng.choice(loops)
            self.emit(f"{self.st(stage)}.prefetch({self.tensor_names[tensor]}, "
                      f"{self.axis(stage, leaf)}, {self.rng.choice([1, 2, 5])})")

    def bind_threads(self, stage):
        """Phase 5 on a GPU (see the module docstring)."""
        leaves, rng = stage.leaf_iter_vars, self.rng
        extents = constant_extents(stage)
        if leaves[0].kind != "data":  # blockIdx.x takes the first loop, a data loop
            order = [v for v in leaves if v.kind == "data"] + \
                [v for v in leaves if v.kind == "reduce"]
            if order[0].kind != "data":
                return
            self.emit(f"{self.st(stage)}.reorder({', '.join(self.axis(stage, v) for v in order)})")
        self.emit(f'{self.st(stage)}.bind({self.axis(stage, leaves[0])}, '
                  f'tex.thread_axis("blockIdx.x"))')
        free, threads = ["threadIdx.x", "threadIdx.y"], 1
        if len(leaves) > 1 and leaves[1].kind == "data" and 0 < (extents[leaves[1]] or 0) <= 1024:
            self.emit(f'{self.st(stage)}.bind({self.axis(stage, leaves[1])}, '
                      f'tex.thread_axis("threadIdx.x"))')
            free.remove("threadIdx.x")
            threads = extents[leaves[1]]
            self.bind_third_data_loop(stage, threads)
            if "threadIdx.y" in stage.bindings.values():
                free.remove("threadIdx.y")
                threads *= extents[leaves[2]]
        if not free:
            return
        reduce = [v for v in leaves if v.kind == "reduce"]
        first = leaves.index(reduce[0]) if reduce else None
        if not reduce or any(v.kind == "data" for v in leaves[first:]):
            return
        if rng.random() < 0.5:
            self.reduce_across_threads(stage, reduce[-1], free[0], 1024 // threads)
        if rng.random() < 0.25 and reduce[0] not in stage.bindings and \
                stage.op.num_outputs == 1 and stage.op.body[0].combiner.name in ATOMIC_REDUCERS:
            name = self.axis(stage, reduce[0])
            self.emit(f'{self.st(stage)}.bind({name}, tex.thread_axis("blockIdx.y"))')
            self.emit(f'{self.st(stage)}.reduce_strategy({name}, "atomic")')

    def bind_third_data_loop(self, stage, threads: int):
        """Sometimes give the stage's third loop, a data loop, to threadIdx.y (when its
        extent is constant and the block stays within 1024 threads), blockIdx.y or a
        virtual thread."""
        leaves, rng = stage.leaf_iter_vars, self.rng
        if len(leaves) < 3 or leaves[2].kind != "data" or rng.random() < 0.6:
            return
        extent = constant_extents(stage).get(leaves[2]) or 0
        tags = ["blockIdx.y"]
        if 0 < extent * threads <= 1024:
            tags.append("threadIdx.y")
        if 0 < extent <= 8:
            tags.append("vthread")
        self.emit(f'{self.st(stage)}.bind({self.axis(stage, leaves[2])}, '
                  f'tex.thread_axis("{rng.choice(tags)}"))')

    def reduce_across_threads(self, stage, leaf, tag: str, most: int):
        """Bind reduction loop `leaf` to thread axis `tag` if its extent is constant and at
        most `most`, with a random strategy."""
        extent = constant_extents(stage).get(leaf) or 0
        if not 0 < extent <= most:
            return
        strategies = ["shared"]
        if tag == "threadIdx.x" and ((extent <= 32 and extent & (extent - 1) == 0)
                                     or extent % 32 == 0):
            strategies.append("warp")
        self.emit(f'{self.st(stage)}.bind({self.axis(stage, leaf)}, tex.thread_axis("{tag}"))')
        self.emit(f'{self.st(stage)}.reduce_strategy({self.axis(stage, leaf)}, '
                  f'"{self.rng.choice(strategies)}")')

    def share_threads(self, stage):
        """On a GPU, sometimes spread a stage computed at a block-level loop of a kernel
        (so into shared memory) over the block's threads: a data loop before its reduction
        loops, of constant extent up to 256 (split off if need be), goes to threadIdx.x."""
        target, axis = stage.attach.stage, stage.attach.axis
        if axis not in target.leaf_iter_vars:  # split after compute_at: lowering refuses it
            return
        outer = target.leaf_iter_vars[:target.leaf_iter_vars.index(axis) + 1]
        tags = [target.bindings.get(v) or "" for v in outer]
        if target.attach.kind != "root" or not any(t.startswith("blockIdx") for t in tags) \
                or any(t.startswith("threadIdx") for t in tags) or self.rng.random() < 0.5:
            return
        data = []
        for v in stage.leaf_iter_vars:
            if v.kind != "data":
                break
            data.append(v)
        extents = constant_extents(stage)
        fitting = [v for v in data if 0 < (extents.get(v) or 0) <= 256]
        if not fitting and data:
            parent = self.axis(stage, data[0])
            outer_name, inner_name = self.fresh(f"{parent}_o"), self.fresh(f"{parent}_i")
            self.emit(f"{outer_name}, {inner_name} = {self.st(stage)}.split({parent}, "
                      f"factor={self.rng.choice([4, 8, 16, 32, 64])})")
            self.bind([outer_name, inner_name])
            fitting = [self.ns[inner_name]]
        if fitting:
            leaf = self.rng.choice(fitting)
            self.emit(f'{self.st(stage)}.bind({self.axis(stage, leaf)}, '
                      f'tex.thread_axis("threadIdx.x"))')
        if axis not in target.bindings and axis not in target.annotations and \
                self.rng.random() < 0.4:
            if self.fetch_ahead is None:  # drawn at first use: other programs keep their draws
                self.fetch_ahead = self.rng.choice(["double_buffer()", "pipeline(2)",
                                                    "pipeline(3)"])
            self.emit(f"{self.st(stage)}.{self.fetch_ahead}")

    def inside_parallel(self, stage) -> bool:
        """Whether `stage` is computed inside a parallel loop of some consumer."""
        attach = stage.attach
        while attach.kind == "at":
            target, leaves = attach.stage, attach.stage.leaf_iter_vars
            par = self.parallel.get(target)
            if par is not None and leaves.index(par) <= leaves.index(attach.axis):
                return True
            attach = target.attach
        return False


def attached_at(stage, target) -> int | None:
    """The position of the loop of `target` inside which `stage` runs, if it does."""
    attach = stage.attach
    while attach.kind == "at":
        if attach.stage is target:
            return target.leaf_iter_vars.index(attach.axis)
        attach = attach.stage.attach
    return None


def constant_extents(stage) -> dict:
    """IterVar -> its loop extent where it is a constant whatever bound inference finds.

    The data axes of a stage computed at another's loop get their extents from
    bound inference, so only what splits by a constant make of them is known.
    """
    extents = {}
    for iv in list(stage.op.axis) + list(stage.op.reduce_axis):
        e = iv.dom.extent
        fixed = iv.kind == "reduce" or stage.attach.kind == "root"
        extents[iv] = int(e.value) if isinstance(e, Const) and fixed else None
    for r in stage.relations:
        if isinstance(r, Split):
            parent = extents.get(r.parent)
            if r.factor is not None:
                extents[r.inner] = r.factor
                extents[r.outer] = None if parent is None else -(-parent // r.factor)
            else:
                extents[r.outer] = r.nparts
                extents[r.inner] = None if parent is None else -(-parent // r.nparts)
        else:
            a, b = extents.get(r.outer), extents.get(r.inner)
            extents[r.fused] = None if a is None or b is None else a * b
    return extents
