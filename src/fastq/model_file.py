"""Model files: save(model, path) / load(path) -> Model. Files are untrusted input.

Format 3 (formats 1 and 2 were .npz files; `importers/fastq_npz` still reads them):

    offset 0   8 bytes   magic b"\\x89FASTQ\\r\\n"  (\\x89 and \\r\\n catch 7-bit and text-mode copies)
           8   uint32    format version (3), little-endian
          12   uint32    header length H in bytes
          16   32 bytes  sha256 of the header
          48   H bytes   header: UTF-8 JSON, one object (below)
               zeros     up to the next multiple of 64: the payload starts there
               payload   the arrays' raw little-endian bytes, each at a multiple of 64 from the
                         payload start, zeros between them; the file ends with the payload

    header = {"format": "fastq.Model",
              "inputs": [value, ...], "outputs": [value, ...],        # the model's value names
              "nodes": [{"name": str, "op": a fastq.layers.LAYER_TYPES name,
                         "inputs": [value, ...], "outputs": [value, ...],
                         "settings": {name: str | int | float | bool | null | [scalar, ...]},
                         "arrays": {array role: array name}}, ...],
              "arrays": [{"name": str, "dtype": "int8" | "uint8" | "int32" | "float32" | "float64",
                          "shape": [int, ...], "offset": int, "nbytes": int}, ...],
              "payload": {"nbytes": int, "sha256": hex}}

A chain is written as the graph it is (value "input" -> node 0 -> ... -> last node's output).
`load` checks everything before it builds anything: the magic, the version, the header's size,
hash and JSON types, every array (dtype from the list above, shape, offset and length inside the
file, no overlaps), the graph (unique names, every input produced once before it is used, no
cycles, the outputs produced), each node's op and setting names; then reads exactly the bytes
the header declares and checks the payload hash; then builds each layer through its own
validation (`from_state`) and checks the layer holds exactly the file's settings and arrays.
Any defect raises ValueError naming the file and the problem. Memory and time stay in
proportion to the file's real size: every declared byte must be in the file.

`save` writes a temporary file in the target's folder, fsyncs it, renames it over the target
and fsyncs the folder: a killed process or a full disk leaves the previous file intact.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import stat
import struct

import numpy as np

from . import _layer_state as _state

MAGIC = b"\x89FASTQ\r\n"
VERSION = 3
_PREFIX = struct.Struct("<8sII32s")
ALIGN = 64
# Readers of the older .npz formats by name; importers/fastq_npz adds its reader on import (it reads
# this module's checks, so importing it from here would be a cycle).
OLD_FORMATS = {}

MAX_HEADER_BYTES = 16 << 20
MAX_NDIM = 8
MAX_DIM = 2**31 - 1
MAX_NAME = 1024
DTYPES = {"int8": np.dtype("<i1"), "uint8": np.dtype("<u1"), "int32": np.dtype("<i4"),
          "float32": np.dtype("<f4"), "float64": np.dtype("<f8")}
_INT64 = 2**63


def _align(n):
    return -(-n // ALIGN) * ALIGN


def _path_name(path):
    try:
        return os.fspath(path)
    except TypeError:
        raise TypeError("path: expected a str or os.PathLike, got %s" % type(path).__name__) from None


class _Bad(Exception):
    """A defect in the file; load() turns it into ValueError('<file>: <problem>')."""


# =========================================================================== save
def save(model, path):
    """Writes `model` to `path` in format 3, atomically (see the module docstring)."""
    name = _path_name(path)
    header, blobs = _encode(model)
    _write_atomic(name, _file_chunks(header, blobs))


def _encode(model):
    """(header dict, [(offset, little-endian C-contiguous array), ...])."""
    inputs, outputs, nodes = _state.graph_of(model)
    registry = _state.layer_types()
    op_of = {cls: op for op, cls in registry.items()}
    table, blobs, node_docs, used = [], [], [], set()
    offset = 0
    for value in list(inputs) + list(outputs):
        _save_name(value, "model: value name")
    for node_name, layer, n_in, n_out in nodes:
        _save_name(node_name, "model: node name")
        for value in list(n_in) + list(n_out):
            _save_name(value, "model: node %r value name" % node_name)
        op = op_of.get(type(layer))
        if op is None:
            raise TypeError("model: node %r is a %s, which has no registered model-file op"
                            % (node_name, type(layer).__name__))
        settings = {}
        for k, v in _state.get_settings(layer).items():
            settings[k] = _json_setting(v, "model: node %r setting %r" % (node_name, k))
        roles = {}
        for role, a in _state.get_arrays(layer).items():
            a = np.asarray(a)
            dt = next((n for n, d in DTYPES.items()
                       if (a.dtype.kind, a.dtype.itemsize) == (d.kind, d.itemsize)), None)
            if dt is None:
                raise TypeError("model: node %r array %r has dtype %s; a model file holds %s"
                                % (node_name, role, a.dtype, ", ".join(DTYPES)))
            if a.ndim > MAX_NDIM or any(d > MAX_DIM for d in a.shape):
                raise ValueError("model: node %r array %r has shape %s; a model file holds at most "
                                 "%d dimensions of at most %d" % (node_name, role, a.shape, MAX_NDIM, MAX_DIM))
            aname = "%s.%s" % (node_name, role)
            while aname in used:                      # "a" + "b.c" vs "a.b" + "c"
                aname += "_"
            used.add(aname)
            a = np.ascontiguousarray(a, dtype=DTYPES[dt])
            table.append({"name": aname, "dtype": dt, "shape": [int(d) for d in a.shape],
                          "offset": offset, "nbytes": int(a.nbytes)})
            blobs.append((offset, a))
            offset = _align(offset + a.nbytes)
            roles[role] = aname
        node_docs.append({"name": node_name, "op": op, "inputs": list(n_in), "outputs": list(n_out),
                          "settings": settings, "arrays": roles})
    nbytes = table[-1]["offset"] + table[-1]["nbytes"] if table else 0
    digest = hashlib.sha256()
    for _ in _payload_chunks(blobs, nbytes, digest):
        pass
    header = {"format": "fastq.Model", "inputs": list(inputs), "outputs": list(outputs),
              "nodes": node_docs, "arrays": table,
              "payload": {"nbytes": nbytes, "sha256": digest.hexdigest()}}
    return header, blobs


MAX_LIST = 64          # a setting may be a flat list of scalars (a shape, a permutation)


def _save_name(v, where):
    if not isinstance(v, str) or not v or len(v) > MAX_NAME:
        raise ValueError("%s: expected a non-empty string of at most %d characters, got %r"
                         % (where, MAX_NAME, v if not isinstance(v, str) else v[:40] + "..."))


def _json_setting(v, where):
    if isinstance(v, (list, tuple)):
        if len(v) > MAX_LIST:
            raise ValueError("%s: a list of %d values, at most %d" % (where, len(v), MAX_LIST))
        return [_json_scalar(x, where) for x in v]
    return _json_scalar(v, where)


def _json_scalar(v, where):
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, str) and len(v) > MAX_NAME:
        raise ValueError("%s: a string of %d characters, at most %d" % (where, len(v), MAX_NAME))
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        if not -_INT64 <= v < _INT64:
            raise ValueError("%s: %d does not fit int64" % (where, v))
        return v
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError("%s: %r is not finite" % (where, v))
        return v
    raise TypeError("%s: expected str, int, float, bool, None or a list of them, got %s"
                    % (where, type(v).__name__))


def _payload_chunks(blobs, nbytes, digest):
    pos = 0
    for offset, a in blobs:
        if offset > pos:
            pad = bytes(offset - pos)
            digest.update(pad)
            yield pad
        view = memoryview(a).cast("B") if a.size else b""
        digest.update(view)
        yield view
        pos = offset + a.nbytes
    assert pos == nbytes


def _file_chunks(header, blobs):
    text = json.dumps(header, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")
    if len(text) > MAX_HEADER_BYTES:
        raise ValueError("model: its file header would be %d bytes, more than the %d a file may hold"
                         % (len(text), MAX_HEADER_BYTES))
    yield _PREFIX.pack(MAGIC, VERSION, len(text), hashlib.sha256(text).digest())
    yield text
    yield bytes(_align(_PREFIX.size + len(text)) - _PREFIX.size - len(text))
    yield from _payload_chunks(blobs, header["payload"]["nbytes"], hashlib.sha256())


def _write_atomic(path, chunks):
    """Writes the chunks to a new file beside `path`, then renames it over `path`. A symbolic
    link is followed (its target is replaced, the link stays); an existing file's permission
    bits are kept."""
    shown = path
    if os.path.islink(path):
        path = os.path.realpath(path)
    folder = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mode = None
    while True:
        tmp = os.path.join(folder, ".%s.%s.tmp" % (base, secrets.token_hex(6)))
        try:
            # 0o666 & ~umask, like open(path, "wb") would give the target
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            break
        except FileExistsError:
            continue
        except OSError as e:
            raise _os_error(e, shown) from e
    try:
        if mode is not None and hasattr(os, "fchmod"):
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise _os_error(e, shown) from e
        raise
    _fsync_folder(folder)


def _os_error(e, path):
    return OSError(e.errno, "%s: cannot write the model file (%s); any previous file there is unchanged"
                   % (path, e.strerror or e), path)


def _fsync_folder(folder):
    """Makes the rename durable. Folders cannot be opened on Windows: the rename is then as
    durable as the OS makes it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# =========================================================================== load
def load(path):
    """Reads a model file (format 3, or a format 1 / 2 .npz); ValueError naming the file on any defect."""
    name = _path_name(path)
    with open(name, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(_PREFIX.size)
        if head[:2] == b"PK":
            f.close()
            if "npz" not in OLD_FORMATS:      # fastq/__init__ imports importers.fastq_npz, which registers it
                raise ValueError("%s: a format 1 / 2 .npz model file, and no reader for it is loaded" % name)
            return OLD_FORMATS["npz"](name)
        try:
            header, arrays = _read(f, size, head)
        except _Bad as e:
            raise ValueError("%s: %s" % (name, e)) from None
    return _build(header, arrays, name)


def _read(f, size, head):
    if size == 0:
        raise _Bad("empty file (0 bytes), not a fastq model file")
    if len(head) < 8 or head[:8] != MAGIC:
        if MAGIC.startswith(head[:8]):
            raise _Bad("truncated: %d bytes, a fastq model file starts with %d" % (size, _PREFIX.size))
        raise _Bad("not a fastq model file (it starts with %r)" % head[:8])
    if len(head) < _PREFIX.size:
        raise _Bad("truncated: %d bytes, a fastq model file starts with %d" % (size, _PREFIX.size))
    _, version, n_header, header_hash = _PREFIX.unpack(head)
    if version != VERSION:
        raise _Bad("model file format version %d; this fastq reads version %d (and the .npz "
                   "files of versions 1 and 2): a newer fastq wrote it, or it is damaged" % (version, VERSION))
    if n_header > MAX_HEADER_BYTES:
        raise _Bad("header length %d is over the limit of %d bytes" % (n_header, MAX_HEADER_BYTES))
    start = _align(_PREFIX.size + n_header)
    if size < start:
        raise _Bad("truncated: %d bytes, but its header alone needs %d" % (size, start))
    text = f.read(n_header)
    if hashlib.sha256(text).digest() != header_hash:
        raise _Bad("header checksum mismatch: the header is damaged")
    if any(f.read(start - _PREFIX.size - n_header)):
        raise _Bad("non-zero bytes between the header and the payload")
    header = _check_header(_parse_json(text), size - start)
    return header, _read_payload(f, header)


def _parse_json(text):
    def pairs(items):
        d = {}
        for k, v in items:
            if k in d:
                raise _Bad("header: key %r appears twice in one object" % k)
            d[k] = v
        return d

    def constant(c):
        raise _Bad("header: %s is not a JSON number" % c)

    try:
        return json.loads(text.decode("utf-8"), object_pairs_hook=pairs, parse_constant=constant)
    except UnicodeDecodeError as e:
        raise _Bad("header is not UTF-8 text (%s)" % e) from None
    except (ValueError, RecursionError) as e:
        raise _Bad("header is not valid JSON (%s)" % e) from None


# --------------------------------------------------------------------------- header checks
def _get(d, key, types, where):
    if key not in d:
        raise _Bad("%s: %r is missing" % (where, key))
    v = d[key]
    if not isinstance(v, types) or (isinstance(v, bool) and bool not in _as_tuple(types)):
        raise _Bad("%s: %r must be %s, got %s" % (where, key, _type_words(types), type(v).__name__))
    return v


def _as_tuple(t):
    return t if isinstance(t, tuple) else (t,)


def _type_words(types):
    words = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number"}
    return " or ".join(words.get(t, t.__name__) for t in _as_tuple(types))


def _keys(d, allowed, where):
    extra = sorted(set(d) - set(allowed))
    if extra:
        raise _Bad("%s: unknown key(s) %s" % (where, ", ".join(map(repr, extra))))


def _name(v, where):
    if not isinstance(v, str) or not v or len(v) > MAX_NAME:
        raise _Bad("%s: expected a non-empty string of at most %d characters, got %r"
                   % (where, MAX_NAME, v if not isinstance(v, str) else v[:40]))
    return v


def _names(v, where):
    if not isinstance(v, list):
        raise _Bad("%s: expected a list of names, got %s" % (where, type(v).__name__))
    return [_name(x, "%s[%d]" % (where, i)) for i, x in enumerate(v)]


def _int(v, where, lo, hi):
    if isinstance(v, bool) or not isinstance(v, int):
        raise _Bad("%s: expected an integer, got %r" % (where, v))
    if not lo <= v <= hi:
        raise _Bad("%s: %d is outside [%d, %d]" % (where, v, lo, hi))
    return v


def _check_header(h, payload_size):
    if not isinstance(h, dict):
        raise _Bad("header: expected a JSON object, got %s" % type(h).__name__)
    _keys(h, ("format", "inputs", "outputs", "nodes", "arrays", "payload"), "header")
    if _get(h, "format", str, "header") != "fastq.Model":
        raise _Bad("header: format %r is not 'fastq.Model'" % h["format"][:40])
    payload = _get(h, "payload", dict, "header")
    _keys(payload, ("nbytes", "sha256"), "header payload")
    nbytes = _int(_get(payload, "nbytes", int, "header payload"), "header payload nbytes", 0, 2**62)
    sha = _get(payload, "sha256", str, "header payload")
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise _Bad("header payload sha256: expected 64 hex digits")
    if nbytes > payload_size:
        raise _Bad("truncated: the payload needs %d bytes, the file holds %d" % (nbytes, payload_size))
    if nbytes < payload_size:
        raise _Bad("%d unexpected bytes after the payload" % (payload_size - nbytes))
    arrays = _check_arrays(_get(h, "arrays", list, "header"), nbytes)
    nodes = _check_graph(h)
    _check_nodes(nodes, arrays)
    return h


def _check_arrays(table, nbytes):
    arrays = {}
    for i, a in enumerate(table):
        where = "array %d" % i
        if not isinstance(a, dict):
            raise _Bad("%s: expected an object, got %s" % (where, type(a).__name__))
        _keys(a, ("name", "dtype", "shape", "offset", "nbytes"), where)
        name = _name(a.get("name"), where + " name")
        where = "array %r" % name
        if name in arrays:
            raise _Bad("%s is declared twice" % where)
        dt = _get(a, "dtype", str, where)
        if dt not in DTYPES:
            raise _Bad("%s: dtype %r is not one of %s" % (where, dt[:40], ", ".join(DTYPES)))
        shape = _get(a, "shape", list, where)
        if len(shape) > MAX_NDIM:
            raise _Bad("%s: %d dimensions, at most %d" % (where, len(shape), MAX_NDIM))
        for d in shape:
            _int(d, where + " shape", 0, MAX_DIM)
        offset = _int(_get(a, "offset", int, where), where + " offset", 0, 2**62)
        length = _int(_get(a, "nbytes", int, where), where + " nbytes", 0, 2**62)
        expect = math.prod(shape) * DTYPES[dt].itemsize
        if length != expect:
            raise _Bad("%s: nbytes %d, but shape %s of %s is %d bytes" % (where, length, shape, dt, expect))
        if offset % ALIGN:
            raise _Bad("%s: offset %d is not a multiple of %d" % (where, offset, ALIGN))
        if offset + length > nbytes:
            raise _Bad("%s: bytes %d..%d lie outside the %d-byte payload" % (where, offset, offset + length, nbytes))
        arrays[name] = a
    last_end, last = 0, None
    for a in sorted(arrays.values(), key=lambda a: (a["offset"], a["nbytes"])):
        if a["offset"] < last_end:
            raise _Bad("arrays %r and %r overlap" % (last, a["name"]))
        last_end, last = max(last_end, a["offset"] + a["nbytes"]), a["name"]
    return arrays


def _check_graph(h):
    """Names unique; every value produced once, before it is used; outputs produced; no cycle.
    Returns the nodes (dicts) in the file's order, which save writes topologically."""
    inputs = _names(_get(h, "inputs", list, "header"), "header inputs")
    outputs = _names(_get(h, "outputs", list, "header"), "header outputs")
    nodes = _get(h, "nodes", list, "header")
    producer = {}
    for v in inputs:
        if v in producer:
            raise _Bad("model input %r is listed twice" % v)
        producer[v] = None
    seen = set()
    for i, n in enumerate(nodes):
        if not isinstance(n, dict):
            raise _Bad("node %d: expected an object, got %s" % (i, type(n).__name__))
        _keys(n, ("name", "op", "inputs", "outputs", "settings", "arrays"), "node %d" % i)
        name = _name(n.get("name"), "node %d name" % i)
        if name in seen:
            raise _Bad("node name %r is used twice" % name)
        seen.add(name)
        _names(_get(n, "inputs", list, "node %r" % name), "node %r inputs" % name)
        for v in _names(_get(n, "outputs", list, "node %r" % name), "node %r outputs" % name):
            if v in producer:
                what = "a model input" if producer[v] is None else "node %r" % producer[v]
                raise _Bad("node %r: value %r is already produced by %s" % (name, v, what))
            producer[v] = name
        if not n["outputs"]:
            raise _Bad("node %r produces no value" % name)
    for n in nodes:
        for v in n["inputs"]:
            if v not in producer:
                raise _Bad("node %r: input %r is produced by no node and is not a model input"
                           % (n["name"], v))
    for v in outputs:
        if v not in producer:
            raise _Bad("model output %r is produced by no node and is not a model input" % v)
    # Kahn, O(nodes + edges): a node is ready once all its inputs are; what never gets ready
    # lies on a cycle (or downstream of one)
    waiting = [len(set(n["inputs"])) for n in nodes]
    users = {}
    for i, n in enumerate(nodes):
        for v in set(n["inputs"]):
            users.setdefault(v, []).append(i)
    ready = list(inputs)
    for i, n in enumerate(nodes):
        if not waiting[i]:
            ready.extend(n["outputs"])
    while ready:
        v = ready.pop()
        for i in users.get(v, ()):
            waiting[i] -= 1
            if waiting[i] == 0:
                ready.extend(nodes[i]["outputs"])
    stuck = [n["name"] for i, n in enumerate(nodes) if waiting[i]]
    if stuck:
        raise _Bad("the graph has a cycle through node(s) %s" % ", ".join(map(repr, stuck[:8])))
    return nodes


def _check_nodes(nodes, arrays):
    registry = _state.layer_types()
    owner = {}
    for n in nodes:
        where = "node %r" % n["name"]
        op = _get(n, "op", str, where)
        cls = registry.get(op)
        if cls is None:
            raise _Bad("%s: unknown op %r (this fastq knows %s)" % (where, op[:60], ", ".join(sorted(registry))))
        settings = _get(n, "settings", dict, where)
        allowed = _state.setting_names(cls)
        for k, v in settings.items():
            if allowed is not None and k not in allowed:
                raise _Bad("%s (%s): unknown setting %r" % (where, op, k[:60]))
            if isinstance(v, list) and len(v) > MAX_LIST:
                raise _Bad("%s (%s): setting %r is a list of %d values, at most %d"
                           % (where, op, k, len(v), MAX_LIST))
            for x in (v if isinstance(v, list) else (v,)):
                if x is not None and not isinstance(x, (bool, int, float, str)):
                    raise _Bad("%s (%s): setting %r must be a string, number, bool, null or a flat "
                               "list of them, got %s" % (where, op, k, type(x).__name__))
                if isinstance(x, int) and not -_INT64 <= x < _INT64:
                    raise _Bad("%s (%s): setting %r is out of the int64 range" % (where, op, k))
                if isinstance(x, str) and len(x) > MAX_NAME:
                    raise _Bad("%s (%s): setting %r is a string of %d characters" % (where, op, k, len(x)))
        roles = _get(n, "arrays", dict, where)
        allowed = _state.array_names(cls)
        for role, aname in roles.items():
            if role not in allowed:
                raise _Bad("%s (%s): unknown array %r (it holds %s)" % (where, op, role[:60], ", ".join(allowed)))
            if not isinstance(aname, str) or aname not in arrays:
                raise _Bad("%s (%s): array %r refers to %r, which the header does not declare"
                           % (where, op, role, aname if not isinstance(aname, str) else aname[:60]))
            # one owner per array: a small file cannot make many layers out of one big array
            if aname in owner:
                raise _Bad("%s: array %r is already used by node %r" % (where, aname, owner[aname]))
            owner[aname] = n["name"]
        n_in, n_out = _state.arity(cls)
        if n_in is not None and not (n_in[0] <= len(n["inputs"]) and (n_in[1] is None or len(n["inputs"]) <= n_in[1])):
            raise _Bad("%s (%s): takes %s input(s), the file gives it %d"
                       % (where, op, n_in[0] if n_in[0] == n_in[1] else "%d to %s" % (n_in[0], n_in[1] or "any"),
                          len(n["inputs"])))
        if n_out is not None and len(n["outputs"]) != n_out:
            raise _Bad("%s (%s): gives %d output(s), the file names %d" % (where, op, n_out, len(n["outputs"])))
    unused = sorted(set(arrays) - set(owner))
    if unused:
        raise _Bad("array %r is declared but used by no node" % unused[0])


# --------------------------------------------------------------------------- payload
def _read_payload(f, header):
    """Reads exactly the declared bytes (the file size was checked against them), checks the
    zero padding and the payload's sha256. Returns name -> ndarray (native byte order, owned)."""
    digest = hashlib.sha256()
    out, pos = {}, 0
    for a in sorted(header["arrays"], key=lambda a: a["offset"]):
        _skip_zeros(f, a["offset"] - pos, digest)
        buf = np.empty(a["nbytes"], np.uint8)
        if f.readinto(memoryview(buf)) != a["nbytes"]:
            raise _Bad("truncated while reading array %r" % a["name"])
        digest.update(buf)
        dt = DTYPES[a["dtype"]]
        out[a["name"]] = buf.view(dt).reshape(a["shape"]).astype(dt.newbyteorder("="), copy=False)
        pos = a["offset"] + a["nbytes"]
    _skip_zeros(f, header["payload"]["nbytes"] - pos, digest)
    if digest.hexdigest() != header["payload"]["sha256"]:
        raise _Bad("payload checksum mismatch: the array data is damaged")
    return out


def _skip_zeros(f, n, digest):
    while n > 0:
        chunk = f.read(min(n, 1 << 20))
        if not chunk:
            raise _Bad("truncated payload")
        digest.update(chunk)
        if any(chunk):
            raise _Bad("non-zero bytes between arrays")
        n -= len(chunk)


# --------------------------------------------------------------------------- build
def _build(header, arrays, name):
    registry = _state.layer_types()
    built = []
    for n in header["nodes"]:
        cls = registry[n["op"]]
        settings = n["settings"]
        node_arrays = {role: arrays[a] for role, a in n["arrays"].items()}
        where = "%s: node %r (%s)" % (name, n["name"], n["op"])
        try:
            layer = _state.from_state(cls, dict(settings), dict(node_arrays))
        except MemoryError:
            raise
        except Exception as e:   # noqa: BLE001 - any refusal of untrusted data is the file's defect
            raise ValueError("%s: %s" % (where, e)) from e
        _check_same(layer, settings, node_arrays, where)
        built.append((n["name"], layer, tuple(n["inputs"]), tuple(n["outputs"])))
    try:
        return _state.make_model(built, tuple(header["inputs"]), tuple(header["outputs"]))
    except (TypeError, ValueError) as e:
        raise ValueError("%s: %s" % (name, e)) from e


def _check_same(layer, settings, arrays, where):
    """The built layer must hold what the file says, no more and no less: a file whose arrays
    disagree with its settings (a per-tensor layer given per-channel scales, say) is refused."""
    got = _state.get_settings(layer)
    for k, v in settings.items():
        g = got.get(k)
        if isinstance(g, np.generic):
            g = g.item()
        if isinstance(g, tuple):
            g = list(g)
        if type(g) is not type(v) and not (isinstance(g, (int, float)) and isinstance(v, (int, float))
                                           and not isinstance(g, bool) and not isinstance(v, bool)):
            raise ValueError("%s: setting %r is %r in the file but %r in the layer" % (where, k, v, g))
        if g != v:
            raise ValueError("%s: setting %r is %r in the file but %r in the layer" % (where, k, v, g))
    got = _state.get_arrays(layer)
    if set(got) != set(arrays):
        raise ValueError("%s: the file gives array(s) %s; with these settings the layer holds %s"
                         % (where, sorted(arrays), sorted(got)))
    for role, a in arrays.items():
        g = np.asarray(got[role])
        if g.dtype != a.dtype or g.shape != a.shape or g.tobytes() != a.tobytes():
            raise ValueError("%s: array %r (%s %s) is not what the layer holds (%s %s)"
                             % (where, role, a.dtype, a.shape, g.dtype, g.shape))
