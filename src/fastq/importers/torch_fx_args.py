"""What the torch fx importers share (torch_fx, torch_conv, torch_calibrate): the refusal naming
op, fx node and module path, the module path of an fx node, and the binding of an fx call's
arguments to parameter names. Imports nothing from torch."""
from __future__ import annotations


def _unsupported(what, node, path, hint=""):
    where = "fx node %r" % node.name + (", module %r" % path if path else "")
    return NotImplementedError("%s is not supported by fastq.from_torch (%s)%s" % (what, where, hint))


def _type_name(module):
    return "%s.%s" % (type(module).__module__, type(module).__name__)


def _path(node):
    stack = node.meta.get("nn_module_stack") or {}
    return list(stack)[-1] if stack else ""


def _bind(b, node, names, defaults=None, method_varargs=False):
    """fx args / kwargs -> dict by parameter name (names[0] is the tensor)."""
    args = list(node.args)
    out = dict(defaults or {})
    if method_varargs and len(args) > 2 or (method_varargs and len(args) == 2
                                           and not isinstance(args[1], (tuple, list))):
        out[names[0]], out[names[1]] = args[0], tuple(args[1:])      # x.view(a, b, c)
        args = []
    for n, a in zip(names, args):
        out[n] = a
    for k, v in node.kwargs.items():
        if k not in names:
            raise _unsupported("%s with argument %s=%r" % (b.op_name(node), k, v), node, _path(node))
        out[k] = v
    missing = [n for n in names if n not in out]
    if missing:
        raise _unsupported("%s without %s" % (b.op_name(node), ", ".join(missing)), node, _path(node))
    return out
