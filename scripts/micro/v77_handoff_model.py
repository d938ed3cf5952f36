#!/usr/bin/env python3
"""A model of v77's hand-offs, not of its code: the steps of compact_producer.cuh's TileProducer::run and of
the slice warps' loop in kernel_compact_producers.cuh (scripts/micro/v77_mma99_producer_warps.patch),
written again by hand, run under random interleavings. Run it after changing that protocol (it is not a
test of the kernel: it cannot see the code drift from it).

The model: P producer 'threads' and C slice 'threads', two mbarriers (full: P arrivals, free: C arrivals), one K tile,
one header. Checks: no deadlock; a slice thread reads tile u's K and header only after every producer
stored tile u; a producer overwrites the K tile / header only after every slice thread read the previous
contents (Q for the first tile). Each producer's part of the K tile is tracked apart (since 2026-12-05,
twenty-third session; before, one version for the whole tile let a read pass once any producer had stored).
It then checks itself: a full or free barrier initialised one arrival short must fail some interleaving."""
import random

class MBarrier:
    def __init__(self, count):
        self.count = count; self.pending = count; self.phase = 0
    def arrive(self):
        self.pending -= 1
        assert self.pending >= 0
        if self.pending == 0:
            self.phase += 1; self.pending = self.count
    def done(self, parity):  # try_wait.parity: phase with this parity has completed
        return (self.phase & 1) != parity

def run(tiles, P, C, seed, full_count=None, free_count=None):
    """One interleaving. full_count / free_count other than P / C model a wrong init count (the self-test)."""
    rng = random.Random(seed)
    full = MBarrier(P if full_count is None else full_count)
    free = MBarrier(C if free_count is None else free_count)
    # Each producer stores its own part of the K tile: the version of each part, 'Q' before the first tile.
    state = {"ktile": {p: "Q" for p in range(P)}, "header": None}
    read_of = {c: set() for c in range(C)}  # which versions consumer c has read
    def producer(p):
        # mirrors TileProducer::run
        if tiles == 0:
            phase = 0
            while not free.done(phase & 1): yield
            # everybody must have read Q before the header is (re)written? header separate; K untouched
            if p == 0: state["header"] = ("none",)
            full.arrive(); yield
            return
        for phase in range(tiles):
            last = phase == tiles - 1
            while not free.done(phase & 1): yield
            # write K tile (version = phase); every consumer must have read the previous version
            prev = "Q" if phase == 0 else phase - 1
            for c in range(C):
                assert prev in read_of[c], f"producer {p} overwrites {prev} before consumer {c} read it"
            state["ktile"][p] = phase
            if p == 0: state["header"] = ("tile", phase, last)
            yield
            full.arrive(); yield
            if last: return
    def consumer(c):
        read_of[c].add("Q"); yield
        free.arrive(); yield
        phase = 0
        while True:
            while not full.done(phase & 1): yield
            h = state["header"]
            if h[0] == "none":
                return
            assert h[1] == phase, f"consumer {c} sees header {h} in phase {phase}"
            assert all(v == phase for v in state["ktile"].values()), \
                f"consumer {c} reads K parts {state['ktile']} in phase {phase}"
            read_of[c].add(phase)
            last = h[2]
            if not last:
                free.arrive()
            yield
            # S, barriers A/B among consumers (not modelled: they do not touch the K tile or header)
            yield
            if last: return
            phase += 1
    threads = [producer(p) for p in range(P)] + [consumer(c) for c in range(C)]
    alive = list(range(len(threads)))
    steps = 0
    while alive:
        steps += 1
        if steps > 100000: raise AssertionError(f"deadlock: tiles={tiles}")
        i = rng.choice(alive)
        try:
            next(threads[i])
        except StopIteration:
            alive.remove(i)
    return steps

def expect_hazard(what, **counts):
    """The model must catch a broken protocol: a wrong init count fails some interleaving."""
    for seed in range(200):
        try:
            run(3, P=4, C=6, seed=seed, **counts)
        except AssertionError:
            return
    raise SystemExit(f"the model did not catch {what}")

for tiles in [0, 1, 2, 3, 7, 40]:
    for seed in range(200):
        run(tiles, P=4, C=6, seed=seed)
expect_hazard("a full barrier that completes before every producer stored", full_count=3)
expect_hazard("a free barrier that completes before every slice thread read", free_count=5)
print("ok: no deadlock or hazard over 6 tile counts x 200 interleavings; both broken init counts caught")
