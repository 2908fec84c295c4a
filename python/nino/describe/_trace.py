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


class ConcreteProxy(torch.fx.Proxy):
    """A proxy of a ConcreteTracer: shape queries (x.shape, x.size(), x.dim(), len(x), unpacking
    a tuple result) give the values its node has on the example input (the tracer's record)
    instead of more proxies."""

    @property
    def shape(self):
        return self._concrete("shape").shape

    def size(self, dim=None):
        value = self._concrete("size()")
        return value.size() if dim is None else value.size(dim)

    def dim(self):
        return self._concrete("dim()").dim()

    @property
    def ndim(self):
        return self._concrete("ndim").dim()

    def numel(self):
        return self._concrete("numel()").numel()

    @property
    def dtype(self):
        return self._concrete("dtype").dtype

    @property
    def device(self):
        return self._concrete("device").device

    def __len__(self):
        return len(self._concrete("len()"))

    def __iter__(self):
        value = self._concrete("iteration")
        return iter([self[i] for i in range(len(value))])

    def _concrete(self, what):
        value = self.tracer.values.get(self.node)
        if not isinstance(value, (torch.Tensor, tuple, list)):
            raise torch.fx.proxy.TraceError("%s of fx node '%s', whose value on the example input "
                                            "is unknown" % (what, self.node.name))
        return value


class ConcreteTracer(Tracer):
    """Traces with the example input's values beside the proxies (ConcreteProxy): code that
    reads shapes (`n, c, h, w = x.shape`, torch._assert(x.dim() == 3)) traces, its sizes
    becoming constants of the graph. Control flow on shapes is specialised to the example
    input, which is all a model description needs (it depends on shapes, not on values)."""

    def __init__(self, inputs):
        super().__init__()
        self._inputs = list(inputs)
        self._placeholders = 0
        self._computing = 0  # > 0 while running a leaf module or op on real values
        self.values = {}  # fx node -> its value on the example input (None: unknown)

    def proxy(self, node):
        return ConcreteProxy(node, self)

    def create_proxy(self, kind, target, args, kwargs, name=None, type_expr=None,
                     proxy_factory_fn=None):
        rv = super().create_proxy(kind, target, args, kwargs, name, type_expr, proxy_factory_fn)
        try:
            self.values[rv.node] = self._value_of(kind, target, args, kwargs)
        except Exception:  # noqa: BLE001  no value: shape queries on it raise TraceError
            self.values[rv.node] = None
        return rv

    def _value_of(self, kind, target, args, kwargs):
        if kind == "placeholder":
            self._placeholders += 1
            return self._inputs[self._placeholders - 1]
        a, kw = torch.fx.node.map_aggregate((args, kwargs), self._value)
        self._computing += 1  # module attributes and calls are real, not traced, from here
        try:
            with torch.no_grad():
                if kind == "get_attr":
                    value = self.root
                    for atom in target.split("."):
                        value = getattr(value, atom)
                    return value
                if kind == "call_function":
                    return target(*a, **kw)
                if kind == "call_method":
                    return getattr(a[0], target)(*a[1:], **kw)
                if kind == "call_module":
                    return self.root.get_submodule(target)(*a, **kw)
        finally:
            self._computing -= 1
        return None

    def _value(self, a):
        """The example value of a proxy argument (ValueError if unknown); others as they are."""
        if not isinstance(a, torch.fx.Proxy):
            return a
        value = self.values.get(a.node)  # a.node creates an fx Attribute's getattr node
        if value is None:
            raise ValueError("the value of fx node '%s' is unknown" % a.node.name)
        return value

    def call_module(self, m, forward, args, kwargs):
        if self._computing:
            return forward(*args, **kwargs)  # inside a leaf module run on real values
        return super().call_module(m, forward, args, kwargs)

    def getattr(self, attr, attr_val, parameter_proxy_cache):
        if self._computing:
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)


def trace(module, inputs=None):
    """The torch.fx GraphModule of `module`. Plain symbolic tracing first; where that fails
    (code that reads shapes: `n, c, h, w = x.shape`) and example inputs are given, tracing
    again with their values (ConcreteTracer). ValueError when neither traces."""
    tracer = Tracer()
    try:
        graph = tracer.trace(module)
    except Exception as e:  # noqa: BLE001  fx raises many types (TraceError, TypeError, ...)
        if inputs is None:
            raise _untraceable(module, e) from e
        # Traced in the model's own mode, as plain tracing is (`if self.training` branches);
        # the buffers (BatchNorm statistics) and the random state are restored afterwards.
        buffers = [(b, b.clone()) for b in module.buffers()]
        tracer = ConcreteTracer([x.clone() for x in inputs])
        try:
            with torch.random.fork_rng(devices=[]):
                graph = tracer.trace(module)
        except Exception as e2:  # noqa: BLE001
            raise _untraceable(module, e, e2) from e2
        finally:
            with torch.no_grad():
                for b, saved in buffers:
                    b.copy_(saved)
    return torch.fx.GraphModule(tracer.root, graph, type(module).__name__)


def _untraceable(module, e, e2=None):
    again = ("; traced again with the example input's shapes: %s: %s" %
             (type(e2).__name__, e2)) if e2 is not None else ""
    return ValueError("describe_model: torch.fx cannot trace %s (%s: %s%s); control flow that "
                      "depends on tensor values cannot be traced. %s." %
                      (type(module).__name__, type(e).__name__, e, again, SUPPORTED))


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

