"""The importer of fastq's own retired formats 1 and 2 (like any foreign format, its table of type
names to layer constructors lives here, not in the model-file driver): the .npz files of fastq 0.1 and of the first settings-as-data main: a
zip of .npy members, one "__fastq__" JSON string ({"format": "fastq.Model", "version": 1 or 2,
"layers": [...]}) and the arrays "<layer index>.<name>". Version 1 lists each layer's settings
by hand; version 2 holds {"type", "name", "settings": layer.get_settings()}.

Read as untrusted input: the zip directory's sizes are checked before anything is decompressed
(a member may not claim more than the file could hold, so a zip bomb is refused unopened);
each .npy header is parsed and its shape checked against the member's size before its array
is made; dtypes come from the same allow-list as format 3; nothing is unpickled.

Version 1 did not store a QuantizedLinear's dtype, effective_scale, input_scale or
input_zero_point: its layers load with the defaults (uint8 output, "float32"), as fastq 0.1
loaded them, with a warning; re-export such a model from its source to get them back.
"""
from __future__ import annotations

import io
import json
import math
import warnings
import zipfile

import numpy as np

from .. import model_file
from .._layer_state import make_model
from ..layers import (QuantizedLinear, DynamicQuantizedLinear, Quantize, Dequantize, Identity,
                     ReLU, ReLU6, Flatten)
from ..qtensor import QTensor
from ..model_file import DTYPES, MAX_HEADER_BYTES

REEXPORT = ("re-export it with this fastq: build the model again from its source "
            "(fastq.from_torch(torch_model) or the layers) and call model.save(path)")
MAX_MEMBERS = 100_000
# np.savez stores members uncompressed, so a format-1 file holds no more than its own size;
# the margin admits a hand-recompressed file, not a zip bomb (those claim ~1000x)
INFLATE_FACTOR = 8
_V1_SETTINGS = {
    "QuantizedLinear": {"type", "name", "weight_axis", "weight_scale", "weight_zero_point", "scale",
                        "zero_point", "relu", "requant", "rounding"},
    "DynamicQuantizedLinear": {"type", "name", "weight_axis", "weight_scale", "weight_zero_point",
                               "relu", "mode", "reduce_range"},
    "Quantize": {"type", "name", "scale", "zero_point", "dtype"},
    "Flatten": {"type", "name", "start_dim", "end_dim"},
    "Dequantize": {"type", "name"}, "Identity": {"type", "name"}, "ReLU": {"type", "name"},
    "ReLU6": {"type", "name"},
}


class _Bad(Exception):
    pass


def load(path):
    try:
        meta, arrays, size = _read(path)
        version = _version(meta)
    except _Bad as e:
        raise ValueError("%s: %s (an .npz model file)" % (path, e)) from None
    if version == 2:
        return _load_v2(path, meta, arrays)
    try:
        nodes, lossy = _layers(meta, arrays)
    except _Bad as e:
        raise ValueError("%s: %s (a format-1 .npz model file)" % (path, e)) from None
    if lossy:
        warnings.warn("%s: a format-1 model file, which did not store dtype, effective_scale, "
                      "input_scale or input_zero_point; its QuantizedLinear layers load with the "
                      "defaults (uint8 output, 'float32'). If the model had others, %s"
                      % (path, REEXPORT), UserWarning, stacklevel=3)
    chain = _chain([n for n, _ in nodes])
    return make_model([(name, layer, ins, outs) for (name, layer), (_, ins, outs) in zip(nodes, chain[2])],
                      chain[0], chain[1])


def _chain(names):
    """(inputs, outputs, [(name, inputs, outputs)]) of a chain of nodes, as format 3 writes it."""
    value = "input"
    while value in names:
        value += "_"
    inputs, out = (value,), []
    for name in names:
        out.append((name, (value,), (name,)))
        value = name
    return inputs, (value,), out


def _version(meta):
    if not isinstance(meta, dict) or meta.get("format") != "fastq.Model":
        raise _Bad("its description is not a fastq.Model")
    v = meta.get("version")
    if v not in (1, 2) or isinstance(v, bool):
        raise _Bad("description version %r inside a .npz; this fastq reads versions 1 and 2 there" % (v,))
    return v


def _load_v2(path, meta, arrays):
    """Format 2 held every setting (and, from the graph branch, each node's inputs and outputs):
    checked and built exactly as format 3 is."""
    layers = meta.get("layers")
    try:
        if not isinstance(layers, list) or set(meta) - {"format", "version", "layers", "inputs", "outputs"}:
            raise model_file._Bad("'layers' is not a list, or the description has unknown keys")
        graph = "inputs" in meta or "outputs" in meta
        names = []
        for i, cfg in enumerate(layers):
            keys = {"type", "name", "settings"} | ({"inputs", "outputs"} if graph else set())
            if not isinstance(cfg, dict) or set(cfg) != keys:
                raise model_file._Bad("layer %d: expected an object with %s" % (i, ", ".join(sorted(keys))))
            names.append(model_file._name(cfg["name"], "layer %d name" % i))
        if graph:
            inputs, outputs = meta.get("inputs"), meta.get("outputs")
            chain = [(c["name"], c["inputs"], c["outputs"]) for c in layers]
        else:
            inputs, outputs, chain = _chain(names)
        nodes = []
        for i, (cfg, (name, ins, outs)) in enumerate(zip(layers, chain)):
            prefix = "%d." % i
            roles = {k[len(prefix):]: k for k in arrays if k.startswith(prefix)}
            nodes.append({"name": name, "op": cfg["type"], "inputs": ins if graph else list(ins),
                          "outputs": outs if graph else list(outs), "settings": cfg["settings"], "arrays": roles})
        header = {"inputs": list(inputs) if not graph else inputs,
                  "outputs": list(outputs) if not graph else outputs, "nodes": nodes}
        model_file._check_graph(header)
        model_file._check_nodes(nodes, arrays)
    except model_file._Bad as e:
        raise ValueError("%s: %s (a format-2 .npz model file)" % (path, e)) from None
    return model_file._build(header, arrays, "%s (a format-2 .npz model file)" % path)


def _read(path):
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        f.seek(0)
        try:
            zf = zipfile.ZipFile(f)
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - BadZipFile, EOFError, struct / value errors
            raise _Bad("damaged or truncated: %s; %s" % (e, REEXPORT)) from None
        with zf:
            infos = zf.infolist()
            if len(infos) > MAX_MEMBERS:
                raise _Bad("%d members" % len(infos))
            limit = INFLATE_FACTOR * size + (1 << 20)
            total = 0
            for info in infos:
                total += info.file_size
                if info.file_size > limit or total > limit:
                    raise _Bad("member %r claims %d bytes uncompressed, more than a %d-byte file "
                               "may hold (a zip bomb?); refused without decompressing it"
                               % (info.filename[:60], info.file_size, size))
            arrays, meta = {}, None
            for info in infos:
                if not info.filename.endswith(".npy"):
                    raise _Bad("unexpected member %r" % info.filename[:60])
                key = info.filename[:-4]
                if key in arrays or (key == "__fastq__" and meta is not None):
                    raise _Bad("member %r appears twice" % info.filename[:60])
                a = _member(zf, info, key == "__fastq__")
                if key == "__fastq__":
                    meta = a
                else:
                    arrays[key] = a
    if meta is None:
        raise _Bad("no '__fastq__' member: not a fastq model file")
    try:
        meta = json.loads(str(meta), parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:
        raise _Bad("its '__fastq__' description is not valid JSON (%s)" % e) from None
    return meta, arrays, size


def _no_constant(c):
    raise ValueError("%s is not a JSON number" % c)


def _member(zf, info, is_meta):
    try:
        with zf.open(info) as fp:
            data = fp.read(info.file_size + 1)      # zipfile stops at the directory's size
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - BadZipFile (CRC), zlib.error, encrypted, unknown method
        raise _Bad("member %r is damaged: %s" % (info.filename[:60], e)) from None
    if len(data) != info.file_size:
        raise _Bad("member %r is %d bytes, the zip directory says %d" % (info.filename[:60], len(data), info.file_size))
    bio = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(bio)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(bio, max_header_size=10000)
        elif version in ((2, 0), (3, 0)):
            reader = np.lib.format.read_array_header_2_0
            shape, fortran, dtype = reader(bio, max_header_size=10000)
        else:
            raise ValueError("npy version %s" % (version,))
    except Exception as e:  # noqa: BLE001 - numpy raises ValueError, SyntaxError, ...
        raise _Bad("member %r has a damaged .npy header: %s" % (info.filename[:60], e)) from None
    if is_meta:
        ok = dtype.kind == "U" and shape == () and dtype.itemsize <= 4 * MAX_HEADER_BYTES
    else:
        ok = any(dtype == d or dtype == d.newbyteorder(">") for d in DTYPES.values())
    if not ok or dtype.hasobject:
        raise _Bad("member %r has dtype %s shape %s, not a model array" % (info.filename[:60], dtype, shape))
    if len(shape) > 8 or any(not isinstance(d, int) or d < 0 for d in shape):
        raise _Bad("member %r has shape %s" % (info.filename[:60], shape))
    offset = bio.tell()
    n = math.prod(shape)
    if n * dtype.itemsize != len(data) - offset:
        raise _Bad("member %r: shape %s of %s needs %d bytes, it holds %d"
                   % (info.filename[:60], shape, dtype, n * dtype.itemsize, len(data) - offset))
    a = np.frombuffer(data, dtype=dtype, count=n, offset=offset)
    a = a.reshape(shape[::-1]).T if fortran else a.reshape(shape)
    return np.array(a, dtype=dtype.newbyteorder("="), order="C")


# --------------------------------------------------------------------------- layers
def _layers(meta, arrays):
    layers = meta.get("layers")
    if not isinstance(layers, list):
        raise _Bad("'layers' is not a list")
    used, out, lossy, names = set(), [], False, set()
    for i, cfg in enumerate(layers):
        if not isinstance(cfg, dict):
            raise _Bad("layer %d is not an object" % i)
        t = cfg.get("type")
        if not isinstance(t, str) or t not in _V1_SETTINGS:
            raise _Bad("layer %d: unknown type %r" % (i, t if not isinstance(t, str) else t[:60]))
        extra = set(cfg) - _V1_SETTINGS[t]
        if extra:
            raise _Bad("layer %d (%s): unknown key(s) %s" % (i, t, ", ".join(sorted(map(repr, extra)))))
        name = cfg.get("name", str(i))
        if not isinstance(name, str) or not name or len(name) > 1024 or name in names:
            raise _Bad("layer %d: bad or repeated name %r" % (i, name))
        names.add(name)
        prefix = "%d." % i
        arrs = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
        used.update(prefix + k for k in arrs)
        try:
            layer = _layer(t, cfg, arrs)
        except (_Bad, MemoryError):
            raise
        except Exception as e:  # noqa: BLE001 - the layer's own validation refused the data
            raise _Bad("layer %d (%r, %s): %s; %s" % (i, name, t, e, REEXPORT)) from None
        lossy = lossy or t == "QuantizedLinear"
        out.append((name, layer))
    unused = sorted(set(arrays) - used)
    if unused:
        raise _Bad("member %r belongs to no layer" % unused[0])
    return out, lossy


def _layer(t, cfg, arrs):

    def need(key, types):
        if key not in cfg:
            raise _Bad("%s: %r is missing" % (t, key))
        v = cfg[key]
        if not isinstance(v, types) or (isinstance(v, bool) and bool not in types):
            raise _Bad("%s: %r has the wrong type %s" % (t, key, type(v).__name__))
        return v

    def weight():
        allowed = {"weight", "weight_scale", "weight_zero_point", "bias", "int_bias"}
        if set(arrs) - allowed:
            raise _Bad("%s: unexpected array(s) %s" % (t, sorted(set(arrs) - allowed)))
        if "weight" not in arrs:
            raise _Bad("%s: the weight array is missing" % t)
        axis = need("weight_axis", (int, type(None)))
        if axis is None:
            if "weight_scale" in arrs or "weight_zero_point" in arrs:
                raise _Bad("%s: per-tensor weight with per-channel scale arrays" % t)
            return QTensor(arrs["weight"], need("weight_scale", (float, int)), need("weight_zero_point", (int,)))
        return QTensor(arrs["weight"], arrs.get("weight_scale"), arrs.get("weight_zero_point"), axis=axis)

    if t == "QuantizedLinear":
        w = weight()
        if "bias" in arrs and "int_bias" in arrs:
            raise _Bad("QuantizedLinear: both bias and int_bias")
        return QuantizedLinear(w, arrs.get("int_bias", arrs.get("bias")), need("scale", (float, int)),
                               need("zero_point", (int,)), relu=need("relu", (bool,)),
                               requant=need("requant", (str,)), rounding=need("rounding", (str,)))
    if t == "DynamicQuantizedLinear":
        w = weight()
        if "int_bias" in arrs:
            raise _Bad("DynamicQuantizedLinear: an int32 bias")
        return DynamicQuantizedLinear(w, arrs.get("bias"), relu=need("relu", (bool,)), mode=need("mode", (str,)),
                                      reduce_range=need("reduce_range", (bool,)))
    if arrs:
        raise _Bad("%s: unexpected array(s) %s" % (t, sorted(arrs)))
    if t == "Quantize":
        return Quantize(need("scale", (float, int)), need("zero_point", (int,)), need("dtype", (str,)))
    if t == "Flatten":
        return Flatten(need("start_dim", (int,)), need("end_dim", (int,)))
    return {"Dequantize": Dequantize, "Identity": Identity, "ReLU": ReLU, "ReLU6": ReLU6}[t]()

model_file.OLD_FORMATS["npz"] = load
