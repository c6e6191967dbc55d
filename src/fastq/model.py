"""A model: a list of layers run in order, float32 in, float32 out; save / load as .npz.

    model = fastq.from_torch(converted_torch_model)    # eager-mode torch.ao model, whole
    y = model(x)                                       # float32 [..., N], = torch's output
    model.save("mlp.npz"); model = fastq.load("mlp.npz")

Layers: Quantize (QuantStub after convert), Dequantize, QuantizedLinear (static), DynamicQuantizedLinear,
ReLU, ReLU6, Identity (also Dropout in eval mode), Flatten. Values flow as float32 arrays or
as QTensors; each layer says which it takes. The output is always float32 (a quantized result
is dequantized, exactly as torch's dequantize does).

The file is an ordinary numpy .npz: one JSON string describing the layers plus plain int8 /
int32 / float arrays; it is read with allow_pickle=False, so loading never runs code.
"""
from __future__ import annotations

import json

import numpy as np

from ._checks import as_array
from .layers.dynamic import DynamicQuantizedLinear
from .layers.elementwise import Quantize, Dequantize, Identity, ReLU, ReLU6, Flatten  # noqa: F401
from .layers.elementwise import FLOAT as _FLOAT, QUANT as _QUANT, ANY as _ANY
from .layers.linear import QuantizedLinear
from .layers._base import LAYER_TYPES
from .qtensor import QTensor, dequantize

FORMAT_VERSION = 2          # 1: settings listed by hand (lost dtype, effective_scale, input qparams)


def _takes(layer):
    if isinstance(layer, QuantizedLinear):
        return _QUANT
    if isinstance(layer, DynamicQuantizedLinear):
        return _FLOAT
    return getattr(layer, "takes", None)


# --------------------------------------------------------------------------- the model
class Model:
    """Layers run in order. model(x): x float [..., K] (numpy, CPU torch tensor) or a QTensor;
    returns a float32 ndarray. names: one label per layer (the torch module paths)."""

    def __init__(self, layers, names=None):
        layers = list(layers)
        for i, layer in enumerate(layers):
            if _takes(layer) is None:
                raise TypeError("layers: item %d (%s) is not a fastq layer" % (i, type(layer).__name__))
        if names is None:
            names = [str(i) for i in range(len(layers))]
        names = [str(n) for n in names]
        if len(names) != len(layers):
            raise ValueError("names: expected %d names, got %d" % (len(layers), len(names)))
        self.layers = layers
        self.names = names

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, i):
        return self.layers[i]

    def __iter__(self):
        return iter(self.layers)

    def __call__(self, x):
        if not isinstance(x, QTensor):
            x = as_array(x, "x")
            if x.dtype.kind not in "fiu" or x.dtype == np.bool_:
                raise TypeError("x: expected a float array, got dtype %s" % x.dtype)
            x = np.asarray(x, dtype=np.float32)
        for i, (name, layer) in enumerate(zip(self.names, self.layers)):
            takes = _takes(layer)
            is_q = isinstance(x, QTensor)
            if takes == _QUANT and not is_q:
                raise TypeError("x: layer %d (%s, %s) takes quantized values but receives floats; "
                                "the model needs a Quantize (QuantStub) before it" % (i, name, type(layer).__name__))
            if takes == _FLOAT and is_q:
                raise TypeError("x: layer %d (%s, %s) takes floats but receives quantized values; "
                                "the model needs a Dequantize (DeQuantStub) before it" % (i, name, type(layer).__name__))
            x = layer(x)
        if isinstance(x, QTensor):
            return dequantize(x)
        return np.asarray(x, dtype=np.float32)

    def __repr__(self):
        lines = ["fastq.Model("]
        lines += ["  (%s): %r" % (n, layer) for n, layer in zip(self.names, self.layers)]
        lines.append(")")
        return "\n".join(lines) if self.layers else "fastq.Model()"

    # ---------------------------------------------------------------- save / load
    def save(self, path):
        """Writes the model to `path` (a .npz file: JSON description + arrays, no pickle)."""
        meta, arrays = [], {}
        for i, layer in enumerate(self.layers):
            if type(layer).__name__ not in LAYER_TYPES:
                raise TypeError("layer %d (%s): cannot save %s" % (i, self.names[i], type(layer).__name__))
            meta.append({"type": type(layer).__name__, "name": self.names[i], "settings": layer.get_settings()})
            arrs = layer.get_arrays()
            for k, v in arrs.items():
                arrays["%d.%s" % (i, k)] = v
        arrays["__fastq__"] = np.array(json.dumps({"format": "fastq.Model", "version": FORMAT_VERSION,
                                                   "layers": meta}))
        with open(path, "wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path):
        """Reads a model written by Model.save."""
        with np.load(path, allow_pickle=False) as data:
            if "__fastq__" not in data.files:
                raise ValueError("path: %r is not a fastq model file" % (path,))
            meta = json.loads(str(data["__fastq__"]))
            version = meta.get("version")
            if meta.get("format") != "fastq.Model" or version not in (1, FORMAT_VERSION):
                raise ValueError("path: unsupported fastq model format %r version %r"
                                 % (meta.get("format"), meta.get("version")))
            layers, names = [], []
            for i, cfg in enumerate(meta["layers"]):
                arrs = {k.split(".", 1)[1]: data[k] for k in data.files if k.startswith("%d." % i)}
                if version == 1:
                    layers.append(_layer_from_state_v1(cfg, arrs))
                else:
                    layer_cls = LAYER_TYPES.get(cfg.get("type"))
                    if layer_cls is None:
                        raise ValueError("path: unknown layer type %r in model file" % (cfg.get("type"),))
                    layers.append(layer_cls.from_state(cfg["settings"], arrs))
                names.append(cfg.get("name", str(i)))
        return cls(layers, names)

    def explain(self, x, node, row=0, col=0):
        """Output element [row, col] of `node` (a name or an index) on model input x: a
        fastq.explain.Trace, the node's input computed by the model."""
        from .explain import explain_node
        return explain_node(self, x, node, row, col)


def load(path):
    """fastq.load(path): a Model written by Model.save."""
    return Model.load(path)


def from_torch(module, engine=None):
    """A whole eager-mode torch.ao quantized model (after convert or quantize_dynamic) as a Model.

    Leaf modules run in registration order (the order of named_children, recursively; QuantWrapper
    as quant -> module -> dequant): this is the forward order of nn.Sequential and of the usual
    `QuantStub -> layers -> DeQuantStub` models, but fastq cannot see a custom forward that calls
    its children in another order or adds functional ops (torch.flatten, +, cat) between them.
    Unknown module types raise TypeError naming the module. engine: the torch quantized engine
    whose numerics to reproduce (default: torch.backends.quantized.engine, which should be the
    engine the model was converted under)."""
    from .torch_compat import model_from_torch
    return model_from_torch(module, engine=engine)


# --------------------------------------------------------------------------- layer state
def _qtensor_state(prefix, q):
    cfg = {prefix + "_axis": q.axis}
    arrs = {prefix: np.ascontiguousarray(q.values)}
    if q.axis is None:
        cfg[prefix + "_scale"] = float(q.scale)
        cfg[prefix + "_zero_point"] = int(q.zero_point)
    else:
        arrs[prefix + "_scale"] = np.asarray(q.scale, dtype=np.float64)
        arrs[prefix + "_zero_point"] = np.asarray(q.zero_point, dtype=np.int32)
    return cfg, arrs


def _qtensor_from_state(prefix, cfg, arrs):
    axis = cfg[prefix + "_axis"]
    if axis is None:
        return QTensor(arrs[prefix], cfg[prefix + "_scale"], cfg[prefix + "_zero_point"])
    return QTensor(arrs[prefix], arrs[prefix + "_scale"], arrs[prefix + "_zero_point"], axis=axis)


_SIMPLE = {"Dequantize": Dequantize, "Identity": Identity, "ReLU": ReLU, "ReLU6": ReLU6}


def _layer_from_state_v1(cfg, arrs):
    """A layer of a version-1 file (which lists only the settings it knew)."""
    t = cfg.get("type")
    if t == "QuantizedLinear":
        bias = arrs.get("int_bias", arrs.get("bias"))
        return QuantizedLinear(_qtensor_from_state("weight", cfg, arrs), bias, cfg["scale"], cfg["zero_point"],
                               relu=cfg["relu"], requant=cfg["requant"], rounding=cfg["rounding"])
    if t == "DynamicQuantizedLinear":
        return DynamicQuantizedLinear(_qtensor_from_state("weight", cfg, arrs), arrs.get("bias"),
                                      relu=cfg["relu"], mode=cfg["mode"], reduce_range=cfg["reduce_range"])
    if t == "Quantize":
        return Quantize(cfg["scale"], cfg["zero_point"], cfg["dtype"])
    if t == "Flatten":
        return Flatten(cfg["start_dim"], cfg["end_dim"])
    if t in _SIMPLE:
        return _SIMPLE[t]()
    raise ValueError("path: unknown layer type %r in model file" % (t,))
