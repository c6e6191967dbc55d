"""Flash and RAM bytes of an exported model.

Exact: the static const weights and constants (flash) and the arena (RAM). Estimated: code
and stack, from per-step costs measured once with arm-none-eabi-gcc 12.2 -mcpu=cortex-m4
-mthumb -Os (arm-none-eabi-size, -fstack-usage); tests/test_export.py measures the real
figures on every firmware build and holds the estimates above them."""
from __future__ import annotations

from dataclasses import dataclass

# bytes of Thumb-2 code per step kind (the step's function and its call), and the shared
# helpers each kind pulls in once. The kind is the op's (Step.cost): "elementwise" is one loop
# of a clamp / copy per element, "binary" one loop over two inputs (add, mul, cat).
CODE_PER_STEP = {"conv": 700, "pool": 300, "linear": 360, "dynamic": 260, "quantize": 80, "dequantize": 50, "elementwise": 50,
                 "binary": 50}
CODE_SHARED = {"linear": 200, "dynamic": 900, "quantize": 120, "fixedpoint": 100}
CODE_BASE = 120          # net_run / net_run_quantized and their argument checks
STACK = {"conv": 160, "pool": 64, "linear": 96, "dynamic": 160, "quantize": 40, "dequantize": 24, "elementwise": 16, "binary": 16}
STACK_BASE = 64


@dataclass
class Footprint:
    weights: int          # flash, exact
    code: int             # flash, estimate
    arena: int            # RAM, exact
    stack: int            # RAM, estimate

    @property
    def flash(self):
        return self.weights + self.code

    @property
    def ram(self):
        return self.arena + self.stack

    def lines(self):
        return ["flash: %d bytes (weights and constants %d exact, code ~%d estimate)" % (self.flash, self.weights, self.code),
                "RAM:   %d bytes (arena %d exact, stack ~%d estimate)" % (self.ram, self.arena, self.stack)]


def estimate(steps, arena, region, input_size, output_size):
    kinds = [s.cost for s in steps]          # each op says what its step is (Step.cost)
    code = CODE_BASE + sum(CODE_PER_STEP[k] for k in kinds)
    shared = set(kinds) & set(CODE_SHARED)
    if any("fq_mbqm" in s.code for s in steps):
        shared.add("fixedpoint")
    if "dynamic" in shared:
        shared.add("quantize")
    code += sum(CODE_SHARED[k] for k in shared)
    stack = STACK_BASE + max((STACK[k] for k in kinds), default=0)
    weights = sum(s.flash for s in steps)
    return Footprint(weights, code, arena, stack)
