"""Tracing with torch.fx: the tracer that records module paths and source lines, the traced
module, one run on the example input that records every node's shape, and how errors name a
node (its op and the user's source line)."""

import os
import re

import torch

from ._tables import SUPPORTED


class Tracer(torch.fx.Tracer):
    """Records the module path and the user's source line of every node."""

    def __init__(self):
        super().__init__()
        self.record_stack_traces = True
        self._paths = []

    def trace(self, root, concrete_args=None):
        """Traces with the tensor factories (torch.arange, ...) recorded as nodes when a size is
        traced (torch.arange(ids.shape[1])), which torch.fx alone cannot trace."""
        saved = {name: getattr(torch, name) for name in _FACTORIES}
        try:
            for name, fn in saved.items():
                setattr(torch, name, _proxy_aware(fn, self if name == "arange" else None))
            return super().trace(root, concrete_args)
        finally:
            for name, fn in saved.items():
                setattr(torch, name, fn)

    def call_module(self, m, forward, args, kwargs):
        self._paths.append(self.path_of_module(m))
        try:
            return super().call_module(m, forward, args, kwargs)
        finally:
            self._paths.pop()

    def create_node(self, *args, **kwargs):
        node = super().create_node(*args, **kwargs)
        node.meta["nino_module_path"] = self._paths[-1] if self._paths else ""
        return node


# Tensor factories whose sizes may be traced values.
_FACTORIES = ("arange", "ones", "zeros", "full")


def _proxy_aware(fn, tracer=None):
    """`fn`, recorded as a call_function node of `fn` when an argument is a torch.fx.Proxy, or
    always when `tracer` is given (torch.arange: position ids are then a node, not a
    constant)."""
    def call(*args, **kwargs):
        proxies = []
        torch.fx.node.map_aggregate((args, kwargs), lambda a: proxies.append(a) if isinstance(
            a, torch.fx.Proxy) else None)
        if not proxies and tracer is None:
            return fn(*args, **kwargs)
        owner = proxies[0].tracer if proxies else tracer
        return owner.create_proxy("call_function", fn, args, kwargs)
    return call


def source_line(node):
    """'file:line: code' of the user's code that created the node ('' if unknown): the first
    frame of the node's stack trace outside torch and this package."""
    skip = (os.path.dirname(torch.__file__), os.path.dirname(os.path.abspath(__file__)))
    for m in re.finditer(r'File "([^"]+)", line (\d+), in [^\n]*\n(?:    (.*)\n)?',
                         node.stack_trace or ""):
        if not m.group(1).startswith(skip):
            code = (m.group(3) or "").strip()
            return "%s:%s%s" % (m.group(1), m.group(2), (": " + code) if code else "")
    return ""


def op_label(node, gm):
    """How errors name the node's op: 'call_module Conv2d', 'call_function add', ..."""
    if node.op == "call_module":
        return "call_module %s" % type(gm.get_submodule(node.target)).__name__
    if node.op == "call_function":
        t = node.target
        return "call_function %s" % (getattr(t, "__qualname__", None) or getattr(t, "__name__", t))
    return "%s %s" % (node.op, node.target)


def named_parameters(module):
    """named_parameters() (tied parameters once), with NowcastOptimizer's rule: a common
    'module.' prefix is dropped."""
    named = list(module.named_parameters())
    if named and all(n.startswith("module.") for n, _ in named):
        named = [(n[len("module."):], p) for n, p in named]
    return named


def unwrap(model):
    """The module inside DistributedDataParallel / DataParallel wrappers."""
    wrappers = (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)
    while isinstance(model, wrappers):
        model = model.module
    return model


def trace(module):
    """The torch.fx GraphModule of `module` (ValueError when fx cannot trace it)."""
    tracer = Tracer()
    try:
        graph = tracer.trace(module)
    except Exception as e:  # noqa: BLE001  fx raises many types (TraceError, TypeError, ...)
        raise ValueError("describe_model: torch.fx cannot trace %s (%s: %s); control flow that "
                         "depends on tensor values cannot be traced. %s." %
                         (type(module).__name__, type(e).__name__, e, SUPPORTED)) from e
    return torch.fx.GraphModule(tracer.root, graph, type(module).__name__)


class ShapeRecorder(torch.fx.Interpreter):
    """Runs the traced model, recording every node's output shape and dtype (node.meta
    "nino_shape" and "nino_dtype" for tensors; "nino_shapes" for tuples) and naming the node
    where the model fails."""

    def run_node(self, n):
        try:
            result = super().run_node(n)
        except Exception as e:  # noqa: BLE001  the user's model failed on the example input
            raise ValueError("describe_model: running the model on the example input failed at "
                             "fx node '%s' (%s%s): %s: %s" %
                             (n.name, op_label(n, self.module),
                              (", at " + source_line(n)) if source_line(n) else "",
                              type(e).__name__, e)) from e
        if isinstance(result, torch.Tensor):
            n.meta["nino_shape"] = tuple(result.shape)
            n.meta["nino_dtype"] = result.dtype
        elif isinstance(result, tuple):  # nn.MultiheadAttention: (output, weights or None)
            n.meta["nino_shapes"] = tuple(tuple(r.shape) if isinstance(r, torch.Tensor) else None
                                          for r in result)
        return result


def propagate_shapes(gm, module, inputs):
    """Runs the traced model on clones of the inputs, in eval mode and without gradients: the
    model's parameters, buffers (BatchNorm statistics) and training flags are left as they
    were."""
    modes = [(m, m.training) for m in module.modules()]
    try:
        module.eval()
        with torch.no_grad():
            ShapeRecorder(gm).run(*[x.clone() for x in inputs])
    finally:
        for m, mode in modes:
            m.training = mode

