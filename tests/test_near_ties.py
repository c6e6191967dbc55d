"""Near-tie sweep: constructed inputs next to every rounding of every requantization step
(tests/near_tie_cases.py), fastq and fastq.reference against real torch with the engine
pinned, and the fixed-point steps against fastq.reference. `decisive` > 0 checks that each
construction can tell the right rounding from its nearest wrong one."""
import os
import subprocess
import sys

import numpy as np

import fastq
import pytest

pytest.importorskip("torch")
import near_tie_cases as ntc  # noqa: E402

def check(batches, decisive=True, what=("fastq", "reference")):
    assert batches
    if decisive:
        assert sum(b.decisive for b in batches) > 0, "construction too blunt to see a rounding difference"
    for b in batches:
        for w in what:
            bad = b.mismatches(w)
            assert bad == 0, "%s %s: %s differs from %s in %d of %d cases" % (b.mode, b.step, w, b.oracle, bad,
                                                                            b.cases)


@pytest.mark.parametrize("eng", ntc.ENGINES_FBGEMM)
@pytest.mark.parametrize("relu", [False, True])
def test_fbgemm_bias_per_tensor_is_one_fused_rounding(eng, relu):
    """What torch computes: y = rne(fmaf(bias, f32(1/(double)atws), (float)acc) * mult)."""
    batches = ntc.fbgemm_cases(np.random.default_rng([1, relu]), eng, False, relu, layers=2, m=3)
    assert sum(b.decisive for b in batches) > 0
    assert [b.info["formula_mismatches"] for b in batches] == [0] * len(batches)


@pytest.mark.parametrize("eng", ntc.ENGINES_FBGEMM)
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("m", [1, 5])
def test_fbgemm_bias_per_tensor(backend, eng, relu, m):
    check(ntc.fbgemm_cases(np.random.default_rng([2, relu, m]), eng, False, relu, layers=2, m=m))


@pytest.mark.parametrize("eng", ntc.ENGINES_FBGEMM)
@pytest.mark.parametrize("relu", [False, True])
def test_fbgemm_bias_per_channel(backend, eng, relu):
    """Per channel torch divides: y = rne(f32(f32((float)acc + f32(bias / atws[n])) * mult[n]))."""
    batches = ntc.fbgemm_cases(np.random.default_rng([3, relu]), eng, True, relu, layers=2, m=3)
    assert [b.info["formula_mismatches"] for b in batches] == [0] * len(batches)
    check(batches, decisive=False)


@pytest.mark.parametrize("eng", ntc.ENGINES_FBGEMM)
@pytest.mark.parametrize("per_channel", [False, True])
def test_fbgemm_no_bias_ties(backend, eng, per_channel):
    check(ntc.fbgemm_nobias_cases(np.random.default_rng([4, per_channel]), eng, per_channel,
                                  layers=2 if per_channel else 8))


@pytest.mark.parametrize("per_channel", [False, True])
def test_qnnpack_int32_bias_ties(backend, per_channel):
    check(ntc.qnnpack_bias_cases(np.random.default_rng([5, per_channel]), per_channel, layers=2))


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("relu", [False, True])
def test_qnnpack_requant_ties(backend, per_channel, relu):
    check(ntc.qnnpack_requant_cases(np.random.default_rng([6, per_channel, relu]), per_channel, relu,
                                    layers=2 if per_channel else 8))


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_quantize_ties(backend, dtype):
    rng = np.random.default_rng([7, dtype == "int8"])
    check(ntc.quantize_cases(rng, dtype, batches=2))
    check(ntc.quantize_per_channel_cases(rng, dtype, batches=1))


@pytest.mark.parametrize("per_channel", [False, True])
def test_dequantize_rounding(backend, per_channel):
    check(ntc.dequantize_cases(np.random.default_rng([8, per_channel]), per_channel))


@pytest.mark.parametrize("eng", ["x86", "fbgemm", "qnnpack"])
@pytest.mark.parametrize("per_channel,relu", [(False, False), (True, False), (False, True)])
def test_dynamic_float_output(backend, eng, per_channel, relu):
    check(ntc.dynamic_cases(np.random.default_rng([9, per_channel, relu]), eng, per_channel, relu, layers=1, m=2))


@pytest.mark.parametrize("rounding", ["double", "single", "double_up"])
def test_fixed_point_ties(backend, rounding):
    rng = np.random.default_rng([10, len(rounding)])
    check(ntc.fixedpoint_cases(rng, rounding, n=600), what=("fastq",))
    check(ntc.tflite_layer_cases(rng, rounding, False, layers=1) + ntc.tflite_layer_cases(rng, rounding, True, layers=1),
          what=("fastq",))


SCRIPT = r"""
import sys, numpy as np
sys.path.insert(0, %r)
import near_tie_cases as ntc
bad = dec = 0
for eng in ("x86", "fbgemm"):
    for b in ntc.fbgemm_cases(np.random.default_rng(11), eng, False, False, layers=2):
        bad += b.info["formula_mismatches"]; dec += b.decisive
print(bad, dec)
"""


@pytest.mark.parametrize("isa", ["AVX2", "AVX512"])
def test_torch_fused_bias_does_not_depend_on_fbgemm_isa(isa):
    """FBGEMM_ENABLE_INSTRUCTIONS picks fbgemm's GEMM kernels; the output processing is the one
    AVX2 function on every x86 CPU (ExecuteKernelU8S8.cc), so the rounding stays the same."""
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, FBGEMM_ENABLE_INSTRUCTIONS=isa)
    # the fastq this test imports (installed, or a build in place on PYTHONPATH), plus tests/
    fastq_dir = os.path.dirname(os.path.dirname(os.path.abspath(fastq.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([fastq_dir, here])
    r = subprocess.run([sys.executable, "-c", SCRIPT % here], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    bad, dec = map(int, r.stdout.split())
    assert dec > 0 and bad == 0
