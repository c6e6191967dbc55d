"""Generates tests/data/tflite_fc_vectors.npz (LiteRT) and tests/data/tflite214_fc_vectors.npz
(tflite-runtime 2.14.0): quantized FULLY_CONNECTED layers run by a real TensorFlow Lite
interpreter, replayed through fastq by tests/test_tflite_linear.py.

Needs a separate environment per runtime (each pins its own numpy; fastq is NOT imported here,
so the vectors are an independent oracle):
    python3 -m venv /tmp/tflite-venv
    /tmp/tflite-venv/bin/pip install ai-edge-litert tflite flatbuffers
    /tmp/tflite-venv/bin/python tests/data/make_tflite_vectors.py
    python3.11 -m venv /tmp/tfl214-venv          # tflite-runtime 2.14.0 has no wheel past cp311
    /tmp/tfl214-venv/bin/pip install tflite-runtime==2.14.0 "numpy<2" tflite flatbuffers
    /tmp/tfl214-venv/bin/python tests/data/make_tflite_vectors.py --runtime tflite_runtime
(used: tflite 2.18.0, flatbuffers 25.12.19; numpy 1.26.4 with tflite-runtime 2.14.0)

Each case is one .tflite model built by hand with the flatbuffer schema (package `tflite`):
input [M, K] -> FULLY_CONNECTED(weights [N, K], int32 bias [N] or none, NONE / RELU) -> [M, N],
int8 (per-tensor or per-channel weights) or uint8 (per-tensor, uint8 weights). It runs under
two op resolvers, BUILTIN_REF (the reference kernels) and BUILTIN_WITHOUT_DEFAULT_DELEGATES
(the optimized kernels, no XNNPACK), and both outputs are stored. A third of the cases have
multipliers that are exact powers of two and small values, so many accumulators land on exact
ties, where the fixed-point roundings disagree. No case leaves the range where TFLite defines
the result (a requantized value outside int32, or acc + bias overflowing int32). Both runtimes
get the same 120 cases (same seed).

Found with LiteRT 2.3.0 (x86-64 wheel), see README: the optimized kernels are fixed point,
rounding="double_up" with per-tensor multipliers from the float32 product (tested, y_opt).
The reference kernels are not fixed point at all: reference_integer_ops::FullyConnected now
computes round((double)acc * ((double)s_in * (double)s_w / (double)s_out)) (ties away from
zero; an out-of-range result converts to INT32_MIN on x86). y_ref is kept for that record.

Found with tflite-runtime 2.14.0 (x86-64 cp311 wheel): the reference kernels are fixed point,
MultiplyByQuantizedMultiplier without TFLITE_SINGLE_ROUNDING = fastq's rounding="double",
per-tensor multipliers from the float32 product (effective_scale="float32"): all outputs
(y_ref). The optimized kernels are rounding="double_up" for int8 and rounding="double" for
uint8 (y_opt). Both tested.
"""
import argparse
import importlib

import flatbuffers
import numpy as np
import tflite

# --runtime picks the interpreter package; both expose the same Interpreter / OpResolverType API
RUNTIMES = {"litert": ("ai_edge_litert", "tests/data/tflite_fc_vectors.npz"),
            "tflite_runtime": ("tflite_runtime", "tests/data/tflite214_fc_vectors.npz")}
litert = None       # the interpreter module, imported in main()
f32 = np.float32


def _vector(b, start, values, add):
    start(b, len(values))
    for v in reversed(values):
        add(v)
    return b.EndVector()


def _quant(b, scales, zero_points, axis=0):
    sc = _vector(b, tflite.QuantizationParametersStartScaleVector, [float(s) for s in scales], b.PrependFloat32)
    zp = _vector(b, tflite.QuantizationParametersStartZeroPointVector, [int(z) for z in zero_points], b.PrependInt64)
    tflite.QuantizationParametersStart(b)
    tflite.QuantizationParametersAddScale(b, sc)
    tflite.QuantizationParametersAddZeroPoint(b, zp)
    tflite.QuantizationParametersAddQuantizedDimension(b, axis)
    return tflite.QuantizationParametersEnd(b)


def _tensor(b, name, shape, ttype, buffer, quant):
    nm = b.CreateString(name)
    sh = _vector(b, tflite.TensorStartShapeVector, list(shape), b.PrependInt32)
    tflite.TensorStart(b)
    tflite.TensorAddShape(b, sh)
    tflite.TensorAddType(b, ttype)
    tflite.TensorAddBuffer(b, buffer)
    tflite.TensorAddName(b, nm)
    tflite.TensorAddQuantization(b, quant)
    return tflite.TensorEnd(b)


def _buffer(b, data=None):
    vec = None if data is None else b.CreateNumpyVector(np.frombuffer(data.tobytes(), np.uint8))
    tflite.BufferStart(b)
    if vec is not None:
        tflite.BufferAddData(b, vec)
    return tflite.BufferEnd(b)


def build_model(c):
    """A one-op .tflite flatbuffer for case c (a dict of numpy arrays)."""
    b = flatbuffers.Builder(4096)
    signed = c["dtype"] == "int8"
    ttype = tflite.TensorType.INT8 if signed else tflite.TensorType.UINT8
    m, k = c["x"].shape
    n = c["w"].shape[0]
    has_bias = c["bias"] is not None
    # buffers: 0 empty sentinel, 1 input, 2 weights, 3 bias, 4 output
    bufs = [_buffer(b), _buffer(b), _buffer(b, c["w"]),
            _buffer(b, c["bias"]) if has_bias else _buffer(b), _buffer(b)]
    q_in = _quant(b, [c["x_scale"]], [c["x_zero_point"]])
    q_w = _quant(b, c["w_scales"], c["w_zero_points"], 0)
    q_out = _quant(b, [c["y_scale"]], [c["y_zero_point"]])
    tensors = [_tensor(b, "input", (m, k), ttype, 1, q_in), _tensor(b, "weights", (n, k), ttype, 2, q_w)]
    if has_bias:
        bias_scales = (f32(c["x_scale"]) * c["w_scales"].astype(f32)).astype(f32)
        q_b = _quant(b, bias_scales, [0] * len(bias_scales), 0)
        tensors.append(_tensor(b, "bias", (n,), tflite.TensorType.INT32, 3, q_b))
    tensors.append(_tensor(b, "output", (m, n), ttype, 4, q_out))
    out_index = len(tensors) - 1
    tensor_vec = _vector(b, tflite.SubGraphStartTensorsVector, tensors, b.PrependUOffsetTRelative)

    tflite.FullyConnectedOptionsStart(b)
    tflite.FullyConnectedOptionsAddFusedActivationFunction(
        b, tflite.ActivationFunctionType.RELU if c["relu"] else tflite.ActivationFunctionType.NONE)
    opts = tflite.FullyConnectedOptionsEnd(b)
    op_inputs = _vector(b, tflite.OperatorStartInputsVector, [0, 1, 2 if has_bias else -1], b.PrependInt32)
    op_outputs = _vector(b, tflite.OperatorStartOutputsVector, [out_index], b.PrependInt32)
    tflite.OperatorStart(b)
    tflite.OperatorAddOpcodeIndex(b, 0)
    tflite.OperatorAddInputs(b, op_inputs)
    tflite.OperatorAddOutputs(b, op_outputs)
    tflite.OperatorAddBuiltinOptionsType(b, tflite.BuiltinOptions.FullyConnectedOptions)
    tflite.OperatorAddBuiltinOptions(b, opts)
    op = tflite.OperatorEnd(b)
    ops = _vector(b, tflite.SubGraphStartOperatorsVector, [op], b.PrependUOffsetTRelative)
    sg_in = _vector(b, tflite.SubGraphStartInputsVector, [0], b.PrependInt32)
    sg_out = _vector(b, tflite.SubGraphStartOutputsVector, [out_index], b.PrependInt32)
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, tensor_vec)
    tflite.SubGraphAddInputs(b, sg_in)
    tflite.SubGraphAddOutputs(b, sg_out)
    tflite.SubGraphAddOperators(b, ops)
    sg = tflite.SubGraphEnd(b)

    tflite.OperatorCodeStart(b)
    tflite.OperatorCodeAddDeprecatedBuiltinCode(b, tflite.BuiltinOperator.FULLY_CONNECTED)
    tflite.OperatorCodeAddBuiltinCode(b, tflite.BuiltinOperator.FULLY_CONNECTED)
    tflite.OperatorCodeAddVersion(b, 5 if c["per_channel"] else 4)
    opcode = tflite.OperatorCodeEnd(b)
    opcodes = _vector(b, tflite.ModelStartOperatorCodesVector, [opcode], b.PrependUOffsetTRelative)
    sgs = _vector(b, tflite.ModelStartSubgraphsVector, [sg], b.PrependUOffsetTRelative)
    buf_vec = _vector(b, tflite.ModelStartBuffersVector, bufs, b.PrependUOffsetTRelative)
    desc = b.CreateString("fastq test vector")
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, 3)
    tflite.ModelAddOperatorCodes(b, opcodes)
    tflite.ModelAddSubgraphs(b, sgs)
    tflite.ModelAddDescription(b, desc)
    tflite.ModelAddBuffers(b, buf_vec)
    b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def run(model, x, resolver):
    it = litert.Interpreter(model_content=model, experimental_op_resolver_type=resolver, num_threads=1)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).copy()


def random_case(rng, i):
    signed = i % 3 != 2                   # two int8 cases for each uint8 one
    per_channel = signed and i % 2 == 0
    dt = np.int8 if signed else np.uint8
    lo, hi = (-128, 127) if signed else (0, 255)
    m = int(rng.integers(1, 6))
    k = int(rng.choice([1, 3, 8, 17, 64, 100, 200]))
    n = int(rng.choice([1, 5, 16, 33, 64, 70]))
    x = rng.integers(lo, hi, (m, k), endpoint=True).astype(dt)
    if i % 5 == 0:                        # extremes only: the largest accumulators
        x = rng.choice([lo, hi], (m, k)).astype(dt)
    w = rng.integers(lo, hi, (n, k), endpoint=True).astype(dt)
    x_scale = f32(2.0 ** rng.uniform(-8, 0))
    w_scales = (2.0 ** rng.uniform(-9, -3, n if per_channel else 1)).astype(f32)
    # output scale from the accumulator spread, sometimes far off so results saturate, and
    # sometimes small enough for a multiplier >= 1 (a left shift)
    spread = float(np.sqrt(k)) * 64.0 * float(x_scale) * float(w_scales.max())
    y_scale = f32(spread / 128.0 * 2.0 ** rng.uniform(-2, 2))
    if i % 7 == 3:
        y_scale = f32(float(x_scale) * float(w_scales.min()) / 2.0 ** rng.uniform(0.1, 3))
    ties = i % 6 in (1, 4, 5)          # per-tensor int8, per-channel int8, uint8
    if ties and per_channel:
        # power-of-two input scale and channel scales 2^-j apart: every multiplier is exactly
        # a power of two, whether computed from float32 or float64 products
        x_scale = f32(2.0 ** -int(rng.integers(1, 8)))
        w_scales = (w_scales[0] * 2.0 ** -rng.integers(0, 3, n)).astype(f32)
        y_scale = f32(float(x_scale) * float(w_scales[0]) * 2.0 ** int(rng.integers(2, 6)))
    elif ties:
        # multiplier exactly 2^-e: the accumulators land on exact ties, where the two
        # fixed-point roundings (double: away from zero, single: up) disagree
        y_scale = f32(float(f32(x_scale * w_scales[0])) * 2.0 ** int(rng.integers(2, 6)))
    x_zero_point = int(rng.integers(lo, hi, endpoint=True))
    if ties:
        # small values around the zero points keep acc / 2^e inside the output range
        x = np.clip(x_zero_point + rng.integers(-6, 6, (m, k), endpoint=True), lo, hi).astype(dt)
        w = rng.integers(-6, 6, (n, k), endpoint=True).astype(dt) + (0 if signed else np.uint8(128))
    y_zero_point = int(rng.integers(lo, hi, endpoint=True))
    w_zero_points = np.zeros(w_scales.size, np.int64) if signed else \
        rng.integers(0, 255, 1, endpoint=True)   # TFLite int8 weights are symmetric
    if ties and not signed:
        w_zero_points[:] = 128
    bias = None
    if i % 4 != 1:
        bias = rng.integers(-(2**20), 2**20, n).astype(np.int32)
        if ties:
            bias = rng.integers(-64, 64, n).astype(np.int32)
        if i % 8 == 0 and not ties and float(x_scale) * float(w_scales.max()) / float(y_scale) < 0.5:
            # large biases, kept where the multiplier is < 1: TFLite leaves a requantized value
            # outside int32 undefined (a DCHECK), and acc + bias must not overflow int32 either
            bias[: n // 2] = rng.integers(-(2**30), 2**30, n // 2)
    return dict(dtype="int8" if signed else "uint8", per_channel=per_channel, x=x, w=w, bias=bias,
                x_scale=x_scale, x_zero_point=x_zero_point, w_scales=w_scales,
                w_zero_points=w_zero_points, y_scale=y_scale, y_zero_point=y_zero_point,
                relu=bool(i % 4 == 1))


def main():
    global litert
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runtime", choices=sorted(RUNTIMES), default="litert")
    ap.add_argument("out", nargs="?", help="the .npz to write (default: per runtime)")
    args = ap.parse_args()
    package, default_out = RUNTIMES[args.runtime]
    top = importlib.import_module(package)
    litert = importlib.import_module(package + ".interpreter")
    out = args.out or default_out
    rng = np.random.default_rng(20261127)
    arrays = {}
    n_cases = 0
    for i in range(120):
        c = random_case(rng, i)
        model = build_model(c)
        try:
            y_ref = run(model, c["x"], litert.OpResolverType.BUILTIN_REF)
            y_opt = run(model, c["x"], litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        except (RuntimeError, ValueError) as e:
            print("case %d skipped: %s" % (i, str(e).splitlines()[0]))
            continue
        p = "c%03d_" % n_cases
        for key in ("x", "w", "w_scales", "w_zero_points"):
            arrays[p + key] = c[key]
        if c["bias"] is not None:
            arrays[p + "bias"] = c["bias"]
        arrays[p + "scalars"] = np.array([c["x_scale"], c["x_zero_point"], c["y_scale"], c["y_zero_point"],
                                          c["relu"], c["per_channel"], c["dtype"] == "int8"], np.float64)
        arrays[p + "y_ref"] = y_ref
        arrays[p + "y_opt"] = y_opt
        n_cases += 1
    arrays["n_cases"] = np.array(n_cases)
    arrays["litert_version"] = np.array(getattr(top, "__version__", "unknown"))
    arrays["runtime"] = np.array(package)
    np.savez_compressed(out, **arrays)
    print("wrote %d cases to %s" % (n_cases, out))


if __name__ == "__main__":
    main()
