"""What every layer shares: its settings declared once, as data.

A layer class lists its settings (`Setting`: a name, a check, a default) and its array state
(`arrays`). Everything that needs to know a layer's settings goes through that declaration:
the constructor (`_set_settings` runs each check in order), `repr`, `get_settings` /
`get_arrays` / `from_state` (model files, round trips), explain and the torch import. A
setting cannot be reassigned after construction (the layer's packed weights and cached
epilogues were built from it), so a layer never runs with stale constants.
"""
from __future__ import annotations

import numbers

import numpy as np

from .. import _kernels
from .._checks import as_array, check_scale, check_zero_point, qrange
from ..qgemm import check_no_overflow
from ..qtensor import QTensor
from ._spec import Spec

FLOAT, QUANT, ANY = "float", "quantized", "any"
_OP_DATA_CACHE = 16          # input quantizations whose op data a layer remembers

CAPABILITIES = {"infer": "infer its output's shape and quantization",
                "export": "be exported to C", "explain": "explain an output element",
                "summary": "describe itself in a summary row"}


class UnsupportedOp(NotImplementedError):
    """An op asked for a capability it lacks (names the op, the capability and the node)."""

    def __init__(self, op, capability, node=None, why=None):
        self.op, self.capability, self.node = op, capability, node
        where = "node %r (%s)" % (node, op) if node is not None else op
        text = "%s cannot %s" % (where, CAPABILITIES.get(capability, capability))
        super().__init__(text + ("" if why is None else ": " + why) + " [capability %r]" % capability)

LAYER_TYPES = {}
"""type name -> layer class, for every layer a model file can hold (filled by @register)."""

_REQUIRED = object()


def register(cls):
    """Class decorator: makes the layer known to model files under its class name."""
    LAYER_TYPES[cls.__name__] = cls
    return cls


class Setting:
    """One declared setting of a layer.

    check(value, prior) -> the canonical (JSON-able) value, raising TypeError / ValueError that
    name the setting; `prior` holds the settings checked before this one (declaration order), for
    checks that depend on them (a zero point's range depends on the dtype). attr(canonical) gives
    the attribute the layer exposes (np.dtype for a dtype name); default is used when a setting is
    missing from a model file and decides what repr leaves out."""

    __slots__ = ("name", "check", "default", "attr", "doc", "init")

    def __init__(self, name, check, default=_REQUIRED, attr=None, doc="", init=True):
        self.name, self.check, self.default, self.attr, self.doc = name, check, default, attr, doc
        self.init = init        # False: derived from the arrays (per_channel), not a constructor argument

    @property
    def required(self):
        return self.default is _REQUIRED

    def __repr__(self):
        return "Setting(%r)" % self.name


# ----------------------------------------------------------------------------- the checks
def check_bool(name):
    def check(value, prior):
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError("%s: expected True or False, got %r" % (name, value))
        return bool(value)
    return check


def check_choice(name, choices):
    def check(value, prior):
        if not isinstance(value, str) or value not in choices:
            raise (TypeError if not isinstance(value, str) else ValueError)(
                "%s: expected one of %s, got %r" % (name, ", ".join(repr(c) for c in choices), value))
        return value
    return check


def check_dtype_name(name):
    def check(value, prior):
        qrange(value, name)
        return np.dtype(value).name
    return check


def check_scale_setting(name, optional=False):
    def check(value, prior):
        if value is None and optional:
            return None
        return check_scale(value, name)
    return check


def check_zero_point_in(name, dtype_setting=None, lo=None, hi=None, optional=False):
    """An int in the range of the dtype setting `dtype_setting` (or in [lo, hi])."""
    def check(value, prior):
        if value is None and optional:
            return None
        a, b = qrange(prior[dtype_setting]) if dtype_setting else (lo, hi)
        return check_zero_point(value, a, b, name)
    return check


def check_int(name, optional=False):
    def check(value, prior):
        if value is None and optional:
            return None
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
            raise TypeError("%s: expected an int, got %r" % (name, value))
        return int(value)
    return check


def check_weight(weight, name="weight"):
    """An int8 QTensor [N, K], per tensor or per output channel (axis 0)."""
    if not isinstance(weight, QTensor):
        raise TypeError("%s: expected a fastq.QTensor of int8 values, got %s" % (name, type(weight).__name__))
    if weight.values.dtype != np.int8:
        raise TypeError("%s: expected int8 values, got %s" % (name, weight.values.dtype))
    if weight.values.ndim != 2:
        raise ValueError("%s: expected shape [N, K], got %s" % (name, weight.values.shape,))
    if weight.axis not in (None, 0):
        raise ValueError("%s: per-channel quantization must be along axis 0 (output channels)" % name)
    return weight


def padded(values, n_padded, dtype):
    """values (one per output column) followed by zeros up to the packed width n_padded."""
    out = np.zeros(max(n_padded, 1), dtype=dtype)
    v = np.asarray(values, dtype=dtype).reshape(-1)
    out[: v.shape[0]] = v
    return out


# ----------------------------------------------------------------------------- weight state
def weight_arrays(weight):
    """An int8 weight QTensor as arrays: values, scale (float64 [1] or [N]), zero point (int32)."""
    return {
        "weight": np.ascontiguousarray(weight.values),
        "weight_scale": np.atleast_1d(np.asarray(weight.scale, np.float64)).copy(),
        "weight_zero_point": np.atleast_1d(np.asarray(weight.zero_point, np.int32)).copy(),
    }


def weight_from_arrays(arrays, per_channel):
    """The inverse of weight_arrays; per_channel says whether scale / zero point are per row."""
    for key in ("weight", "weight_scale", "weight_zero_point"):
        if key not in arrays:
            raise ValueError("arrays: %r is missing" % key)
    values, scale, zp = arrays["weight"], arrays["weight_scale"], arrays["weight_zero_point"]
    if per_channel:
        return QTensor(values, scale, zp, axis=0)
    for key, a in (("weight_scale", scale), ("weight_zero_point", zp)):
        if np.size(a) != 1:
            raise ValueError("arrays: %r of a per-tensor weight holds %d values, expected 1" % (key, np.size(a)))
    return QTensor(values, float(np.asarray(scale).reshape(-1)[0]), int(np.asarray(zp).reshape(-1)[0]))


# ----------------------------------------------------------------------------- the base class
class Layer:
    """Base of every fastq layer: settings declared once in `settings`, array state in `arrays`.

    Subclasses call self._set_settings(name=value, ...) first thing in __init__, implement
    get_arrays() and from_state() when they hold arrays, and are registered with @register."""

    settings = ()
    arrays = ()
    takes = ANY
    _settings = _attrs = {}         # a layer without settings never fills them

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        for s in cls.__dict__.get("settings", ()):
            if not isinstance(getattr(cls, s.name, None), property):
                setattr(cls, s.name, property(lambda self, n=s.name: self._attrs[n],
                                              doc=s.doc or "setting %r (read-only)" % s.name))

    def _set_settings(self, **values):
        """Runs every declared check in order; unknown names are a bug of the subclass."""
        unknown = set(values) - {s.name for s in self.settings}
        if unknown:  # pragma: no cover - programming error
            raise AssertionError("undeclared settings %s" % sorted(unknown))
        canon, attrs = {}, {}
        for s in self.settings:
            if s.name in values:
                v = values[s.name]
            elif not s.required:
                v = s.default
            else:
                raise TypeError("%s: missing required setting %r" % (type(self).__name__, s.name))
            canon[s.name] = s.check(v, canon)
            attrs[s.name] = s.attr(canon[s.name]) if s.attr else canon[s.name]
        object.__setattr__(self, "_settings", canon)
        object.__setattr__(self, "_attrs", attrs)

    def get_settings(self):
        """Every setting as a JSON-able value (str, int, float, bool or None)."""
        return dict(self._settings)

    def get_arrays(self):
        """The layer's array state by name (absent entries, e.g. no bias, are left out)."""
        return {}

    @classmethod
    def from_state(cls, settings, arrays):
        """A layer equal to the one whose get_settings() / get_arrays() these are."""
        if arrays:
            raise ValueError("arrays: %s holds no arrays, got %s" % (cls.__name__, sorted(arrays)))
        return cls(**_known(cls, settings))

    def __repr__(self):
        shown = ["%s=%r" % (s.name, self._settings[s.name]) for s in self.settings
                 if s.required or self._settings[s.name] != s.default]
        return "%s(%s)" % (type(self).__name__, ", ".join(self._repr_head() + shown))

    def _repr_head(self):
        return []

    # ------------------------------------------------------------------ the op protocol
    # PROTOCOL.md names these; the drivers (summary, explain, export, model files, the graph
    # runner) call them and never name an op class.
    def infer(self, *specs):
        """The output Spec (or a tuple of them) for inputs of these Specs, without running."""
        self.unsupported("infer")

    def prepare(self, *specs):
        """The op's constants for inputs of these Specs (TFLite Micro's OpData), read by the
        runtime call, emit_c, explain and summary_row alike. None: an op without constants."""
        return None

    def emit_c(self, ctx, node, inputs, output, op_data):
        """The C of this node: a Step from ctx.step(...), or None when `output` aliases an input
        or holds no buffer (ctx: the exporter's library, see export/cgen.py EmitContext)."""
        self.unsupported("export", node)

    def explain(self, *inputs, **where):
        """A fastq.explain.Trace of one output element of self(*inputs)."""
        self.unsupported("explain", where.get("node"))

    def summary_row(self, specs, op_data):
        """dict(qparams=str, constants=str, arithmetic=str) for model.summary(); specs: the
        input Specs (None where not known), op_data: prepare(*specs) when they are known."""
        self.unsupported("summary")

    def unsupported(self, capability, node=None, why=None):
        """Raises the one NotImplementedError for a capability this op lacks."""
        raise UnsupportedOp(type(self).__name__, capability, node, why)

    def _op_data(self, key, build):
        """prepare's result for one input quantization `key`, built once by build()."""
        cache = self.__dict__.get("_op_data_cache")
        if cache is None:
            cache = {}
            object.__setattr__(self, "_op_data_cache", cache)
        data = cache.get(key)
        if data is None:
            data = build()
            if len(cache) >= _OP_DATA_CACHE:
                cache.clear()
            cache[key] = data
        return data

    def settings_row(self, arithmetic):
        """The summary row of an op whose constants are its settings."""
        text = ", ".join("%s=%r" % kv for kv in self.get_settings().items()) or "-"
        return dict(qparams="-", constants=text, arithmetic=arithmetic)


def same_spec(spec, **changes):
    """Spec of an op's output that keeps its input's kind, shape and quantization."""
    return spec.like(**changes) if changes else spec


def check_kind(spec, kinds, op, name="x"):
    """TypeError when an input Spec is of another kind than the op takes."""
    if spec.kind not in kinds:
        raise TypeError("%s: %s takes %s values, got %s ones" % (name, op, " or ".join(kinds), spec.kind))
    return spec


def _known(cls, settings):
    """settings restricted to the declared ones; an undeclared name is refused."""
    if not isinstance(settings, dict):
        raise TypeError("settings: expected a dict, got %s" % type(settings).__name__)
    names = {s.name for s in cls.settings}
    extra = set(settings) - names
    if extra:
        raise ValueError("settings: %s has no setting(s) %s" % (cls.__name__, ", ".join(sorted(extra))))
    init = {s.name for s in cls.settings if s.init}
    return {k: v for k, v in settings.items() if k in init}


class WeightState(Layer):
    """The array state of a layer holding an int8 weight QTensor and a float or int32 bias (the
    linear and convolution families): get_arrays / from_state written once."""

    def get_arrays(self):
        arrays = weight_arrays(self.weight)
        if self.bias is not None:
            arrays["bias"] = self.bias
        if self.int_bias is not None:
            arrays["int_bias"] = self.int_bias
        return arrays

    @classmethod
    def from_state(cls, settings, arrays):
        settings = _known_all(cls, settings)
        if not isinstance(arrays, dict):
            raise TypeError("arrays: expected a dict, got %s" % type(arrays).__name__)
        extra = set(arrays) - set(cls.arrays)
        if extra:
            raise ValueError("arrays: %s has no array(s) %s" % (cls.__name__, ", ".join(sorted(extra))))
        if "bias" in arrays and "int_bias" in arrays:
            raise ValueError("arrays: both 'bias' and 'int_bias' given")
        weight = weight_from_arrays(arrays, bool(settings.get("per_channel", False)))
        bias = arrays.get("int_bias", arrays.get("bias"))
        return cls(weight, bias, **_known(cls, settings))


class WeightLayer(WeightState):
    """A layer with int8 weights [N, K]: owns the packing, the overflow bound, the bias checks,
    the epilogue cache and the weight / bias array state."""

    arrays = ("weight", "weight_scale", "weight_zero_point", "bias")
    _EPILOGUE_CACHE = 16            # input quantizations remembered per layer

    def _set_weight(self, weight, bias, int_bias_ok=False):
        """Packs the weights once; checks the bias: float [N] (must fit float32), or with
        int_bias_ok an integer [N] array that must fit int32 (used as is)."""
        check_weight(weight)
        self.weight = weight
        self.out_features, self.in_features = weight.values.shape
        self.bias, self.int_bias = None, None
        if bias is not None:
            b = as_array(bias, "bias")
            if b.ndim != 1 or b.shape[0] != self.out_features:
                raise ValueError("bias: expected shape (%d,), got %s" % (self.out_features, b.shape))
            if b.dtype.kind in "iu" and int_bias_ok:
                if b.size and (b.min() < -(2**31) or b.max() > 2**31 - 1):
                    raise ValueError("bias: an integer bias must fit int32, got range [%d, %d]"
                                     % (b.min(), b.max()))
                self.int_bias = b.astype(np.int32)
            elif b.dtype.kind == "f":
                if not np.all(np.isfinite(b)):
                    raise ValueError("bias: must be finite")
                with np.errstate(over="ignore"):
                    b32 = np.ascontiguousarray(b, dtype=np.float32)
                if not np.all(np.isfinite(b32)):
                    raise ValueError("bias: values must fit float32 (largest magnitude %r)"
                                     % float(np.max(np.abs(b))))
                self.bias = b32
            elif b.dtype.kind in "iu":
                raise TypeError("bias: an integer bias is only taken by requant='tflite'; pass floats")
            else:
                raise TypeError("bias: expected floats, got dtype %s" % b.dtype)
        zw = np.atleast_1d(np.asarray(weight.zero_point, np.int32))
        self._packed = _kernels.PackedWeights(np.ascontiguousarray(weight.values), zw)
        self._epilogues = {}

    def _check_no_overflow(self, a, a_zero_point, name="x"):
        """Refuses inputs for which sum_k (a - za)(w - zw) could leave int32."""
        check_no_overflow(self._packed, a, a_zero_point, name)

    def _cached_epilogue(self, key, build):
        """The epilogue for one input quantization, built once by build()."""
        ep = self._epilogues.get(key)
        if ep is None:
            ep = build()
            if len(self._epilogues) >= self._EPILOGUE_CACHE:
                self._epilogues.clear()
            self._epilogues[key] = ep
        return ep

    def _repr_head(self):
        return ["in_features=%d" % self.in_features, "out_features=%d" % self.out_features]

def _known_all(cls, settings):
    """settings checked against the declaration (all of them, derived ones included)."""
    _known(cls, settings)
    return dict(settings)
