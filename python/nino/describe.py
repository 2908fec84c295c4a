"""describe_model: the model description (docs/GRAPH_DESCRIPTION.md, version 1) of a PyTorch
model, derived by tracing it with torch.fx and running ShapeProp on an example input.

The description says how the parameters connect (which layer's output units feed which layer's
inputs, through which structural op), so that the nowcaster builds the right NiNo graph for
CNNs with pooling and flatten, residual blocks with BatchNorm and concatenations, not only for
strict chains of layers. Mapping (every parameter must appear in exactly one op):

  nn.Linear, nn.Conv2d (groups == 1), F.linear, F.conv2d          -> dense
  BatchNorm1d/2d, LayerNorm over the unit axis, GroupNorm (affine)  -> norm (alias without params)
  activations, dropout, identity, max/avg/adaptive pooling, mean over spatial axes -> alias
  torch.flatten / nn.Flatten / x.view(B, -1) / x.reshape(B, -1) (start_dim 1) -> flatten
                                               (positions from the traced shape; 1 -> alias)
  `+` / torch.add / add_ of two tensors of equal shape             -> add
  torch.cat along the unit axis                                    -> concat

A parameter-free flatten of a model input before any layer uses it (an MLP that flattens the
image) folds into the input group: its units are the flattened size. Anything else raises
ValueError naming the fx node, the op and the module path.

`description_to_proto` fills a nino.v1.ModelDescription; `check_description` validates a
description (structure, unit counts and, given the parameter shapes, that every parameter
appears exactly once with a consistent shape).
"""

import copy
import json
import math
import operator
import os
import re

import torch

DESCRIPTION_VERSION = 1

OPS = ("input", "dense", "norm", "alias", "flatten", "add", "concat")

SUPPORTED = ("Supported in model description version 1 (docs/GRAPH_DESCRIPTION.md): nn.Linear, "
             "nn.Conv2d with groups=1 (and F.linear / F.conv2d), BatchNorm1d/2d, LayerNorm over "
             "the last (unit) axis, GroupNorm, activations, dropout, identity, max/avg/adaptive "
             "pooling, mean over spatial axes, flatten from dim 1 (torch.flatten, nn.Flatten, "
             "x.view(B, -1), x.reshape(B, -1)), addition of two tensors of equal shape, "
             "torch.cat along the channel axis; every parameter used exactly once")

_F = torch.nn.functional
_nn = torch.nn

# Parameter-free modules that keep the shape: alias kind.
_ELEMENTWISE_MODULES = {
    _nn.ReLU: "relu", _nn.ReLU6: "relu6", _nn.LeakyReLU: "leaky_relu", _nn.GELU: "gelu",
    _nn.SiLU: "silu", _nn.Sigmoid: "sigmoid", _nn.Tanh: "tanh", _nn.ELU: "elu", _nn.SELU: "selu",
    _nn.CELU: "celu", _nn.Softplus: "softplus", _nn.Mish: "mish", _nn.Hardswish: "hardswish",
    _nn.Hardsigmoid: "hardsigmoid", _nn.Hardtanh: "hardtanh", _nn.Softmax: "softmax",
    _nn.LogSoftmax: "log_softmax", _nn.Dropout: "dropout", _nn.Dropout2d: "dropout2d",
    _nn.Dropout3d: "dropout3d", _nn.AlphaDropout: "alpha_dropout", _nn.Identity: "identity",
}
# Pooling modules: units on axis 1, spatial axes shrink.
_POOL_MODULES = {
    _nn.MaxPool1d: "max_pool1d", _nn.MaxPool2d: "max_pool2d", _nn.AvgPool1d: "avg_pool1d",
    _nn.AvgPool2d: "avg_pool2d", _nn.AdaptiveAvgPool1d: "adaptive_avg_pool1d",
    _nn.AdaptiveAvgPool2d: "adaptive_avg_pool2d", _nn.AdaptiveMaxPool1d: "adaptive_max_pool1d",
    _nn.AdaptiveMaxPool2d: "adaptive_max_pool2d",
}
# Functions and tensor methods (by name) that keep the shape.
_ELEMENTWISE_NAMES = {
    "relu", "relu_", "relu6", "leaky_relu", "leaky_relu_", "gelu", "silu", "sigmoid", "sigmoid_",
    "tanh", "tanh_", "elu", "elu_", "selu", "celu", "softplus", "mish", "hardswish",
    "hardsigmoid", "hardtanh", "hardtanh_", "softmax", "log_softmax", "dropout", "dropout2d",
    "dropout3d", "alpha_dropout", "feature_alpha_dropout", "contiguous", "clone", "identity",
}
_POOL_NAMES = {"max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d", "adaptive_avg_pool1d",
               "adaptive_avg_pool2d", "adaptive_max_pool1d", "adaptive_max_pool2d"}
_RESHAPE_NAMES = {"flatten", "view", "reshape", "squeeze"}
_REDUCE_NAMES = {"mean", "amax"}
_ADD_NAMES = {"add", "add_", "iadd", "__add__", "__iadd__", "__radd__"}
_CAT_NAMES = {"cat", "concat"}
# Calls that return shapes or metadata, not tensors: skipped.
_QUERY_NAMES = {"size", "dim", "numel", "getattr", "getitem", "ndimension"}

# Specific refusals: what the op is, so that the message says why.
_REFUSED_MODULES = (
    (_nn.MultiheadAttention, "attention is not in description version 1 (the 'gpt2' and "
                             "'llama' graph kinds cover those layouts)"),
    (_nn.TransformerEncoderLayer, "attention is not in description version 1"),
    (_nn.TransformerDecoderLayer, "attention is not in description version 1"),
    (_nn.Transformer, "attention is not in description version 1"),
    (_nn.TransformerEncoder, "attention is not in description version 1"),
    (_nn.TransformerDecoder, "attention is not in description version 1"),
    (_nn.Embedding, "embeddings are not in description version 1"),
    (_nn.EmbeddingBag, "embeddings are not in description version 1"),
)


def _function_names():
    """call_function targets -> canonical names."""
    names = {operator.add: "add", operator.iadd: "add", torch.add: "add", torch.cat: "cat",
             operator.getitem: "getitem", getattr: "getattr", torch.flatten: "flatten",
             torch.reshape: "reshape", torch.squeeze: "squeeze", torch.mean: "mean",
             torch.amax: "amax", _F.linear: "linear", _F.conv2d: "conv2d"}
    if hasattr(torch, "concat"):
        names[torch.concat] = "cat"
    for name in _ELEMENTWISE_NAMES | _POOL_NAMES:
        for ns in (_F, torch):
            fn = getattr(ns, name, None)
            if callable(fn):
                names.setdefault(fn, name)
    return names


_FUNCTION_NAMES = _function_names()


class _Value:
    """A traced tensor that carries neurons: its group, the axis of its units, its shape."""

    def __init__(self, group, axis, shape):
        self.group, self.axis, self.shape = group, axis, tuple(shape)


class _Param:
    """A traced parameter (get_attr of a parameter)."""

    def __init__(self, name):
        self.name = name


class _Const:
    """A traced constant tensor (a buffer or an attribute that is not a parameter)."""

    def __init__(self, target):
        self.target = target


class _Group:
    def __init__(self, units, root, op):
        self.units = units  # number of units (neurons)
        self.root = root    # the group whose nodes it stands for (itself for input/dense/flatten)
        self.op = op        # the op dict that created it
        self.foldable = op["op"] == "input"  # an input no layer has read yet


class _Tracer(torch.fx.Tracer):
    """Records the module path and the user's source line of every node."""

    def __init__(self):
        super().__init__()
        self.record_stack_traces = True
        self._paths = []

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


def _source_line(node):
    """'file:line: code' of the user's code that created the node ('' if unknown): the first
    frame of the node's stack trace outside torch and this file."""
    skip = (os.path.dirname(torch.__file__), os.path.abspath(__file__))
    for m in re.finditer(r'File "([^"]+)", line (\d+), in [^\n]*\n(?:    (.*)\n)?',
                         node.stack_trace or ""):
        if not m.group(1).startswith(skip):
            code = (m.group(3) or "").strip()
            return "%s:%s%s" % (m.group(1), m.group(2), (": " + code) if code else "")
    return ""


def _op_label(node, gm):
    if node.op == "call_module":
        return "call_module %s" % type(gm.get_submodule(node.target)).__name__
    if node.op == "call_function":
        t = node.target
        return "call_function %s" % (getattr(t, "__qualname__", None) or getattr(t, "__name__", t))
    return "%s %s" % (node.op, node.target)


class _Describer:
    def __init__(self, gm, param_names):
        self.gm = gm
        self.param_names = param_names  # id(parameter) -> name (named_parameters, tied once)
        self.ops = []
        self.values = {}  # fx node -> _Value / _Param / _Const / None (not a tensor)
        self.groups = {}  # group name -> _Group
        self.used = {}    # parameter name -> fx node name
        self.node = None

    # ----- errors -----

    def fail(self, why):
        node = self.node
        path = node.meta.get("nino_module_path", "") if node is not None else ""
        where = "fx node '%s' (%s, module '%s'%s)" % (
            node.name, _op_label(node, self.gm), path or "<root>",
            (", at " + _source_line(node)) if _source_line(node) else "")
        raise ValueError("describe_model: cannot describe %s: %s. %s." % (where, why, SUPPORTED))

    # ----- helpers -----

    def shape(self, node):
        """The traced shape of the node's output (None: not a single tensor)."""
        return node.meta.get("nino_shape")

    def tensor_args(self, node):
        """The fx nodes among the node's args and kwargs (flattened), with their values."""
        found = []
        torch.fx.node.map_arg((node.args, node.kwargs), lambda n: found.append(n))
        return [(n, self.values.get(n)) for n in found]

    def only_input(self, node, what):
        """The single neuron-carrying input of a unary op; refuses parameters and constants
        among the other arguments."""
        args = self.tensor_args(node)
        first = node.args[0] if node.args else None
        for n, v in args:
            if isinstance(v, _Param):
                self.fail("parameter '%s' is used by %s, which has no description op" %
                          (v.name, what))
            if isinstance(v, _Const):
                self.fail("%s reads the constant tensor '%s'" % (what, v.target))
            if isinstance(v, _Value) and n is not first:
                self.fail("%s takes a second tensor input ('%s')" % (what, n.name))
        v = self.values.get(first) if isinstance(first, torch.fx.Node) else None
        if not isinstance(v, _Value):
            self.fail("%s is not applied to a traced tensor" % what)
        return v

    def take_param(self, param, role):
        if param is None:
            return ""
        name = self.param_names.get(id(param))
        if name is None:
            self.fail("its %s is not a parameter of the model" % role)
        if name in self.used:
            self.fail("parameter '%s' is used twice (by fx nodes '%s' and '%s'); every parameter "
                      "must appear in exactly one op" % (name, self.used[name], self.node.name))
        self.used[name] = self.node.name
        return name

    def emit(self, op, units, root=None):
        name = self.node.name
        op = dict({"op": op["op"], "output": name}, **op)
        self.ops.append(op)
        group = _Group(units, root if root is not None else name, op)
        self.groups[name] = group
        return group

    def consume(self, value):
        """A layer reads `value`: its input group can no longer fold a flatten."""
        g = self.groups[value.group]
        self.groups[g.root].foldable = False

    def sole_path(self, root):
        """True when the input `root` and the aliases of it reach the rest of the model through
        one tensor use each (shape queries such as x.size(0) aside), so that folding a flatten
        into the input changes no other use of it."""
        names = {name for name, g in self.groups.items() if g.root == root}
        for n in self.gm.graph.nodes:
            if n.name in names:
                users = [u for u in n.users if not (self.shape(u) is None and
                                                    self.canonical_name(u) in _QUERY_NAMES)]
                if len(users) > 1:
                    return False
        return True

    def canonical_name(self, node):
        if node.op == "call_method":
            return node.target
        if node.op == "call_function":
            return _FUNCTION_NAMES.get(node.target, getattr(node.target, "__name__", "?"))
        return ""

    def alias(self, value, kind, out_shape, axis=None):
        src = self.groups[value.group]
        self.emit({"op": "alias", "inputs": [value.group], "kind": kind}, src.units, src.root)
        return _Value(self.node.name, value.axis if axis is None else axis, out_shape)

    # ----- ops -----

    def placeholder(self, node):
        shape = self.shape(node)
        if shape is None:
            self.fail("the example input for '%s' is not a tensor" % node.name)
        if len(shape) < 2:
            self.fail("input '%s' has shape %s; inputs need a batch axis and a unit axis" %
                      (node.name, list(shape)))
        axis = 1 if len(shape) != 3 else 2  # (B, F), (B, C, H, W); (B, T, D): features last
        g = self.emit({"op": "input", "units": shape[axis]}, shape[axis])
        g.foldable = True
        return _Value(node.name, axis, shape)

    def dense(self, value, weight, bias, conv):
        what = "a convolution" if conv else "a linear layer"
        nd = len(value.shape)
        if conv and (nd != 4 or value.axis != 1):
            self.fail("%s needs a (B, C, H, W) input with the units on axis 1, got shape %s" %
                      (what, list(value.shape)))
        if not conv and value.axis != nd - 1:
            self.fail("%s is applied over axis %d, but the units of its input are on axis %d" %
                      (what, nd - 1, value.axis))
        units = self.groups[value.group].units
        if weight.shape[1] != units:
            self.fail("%s takes %d inputs, its input group has %d units" %
                      (what, weight.shape[1], units))
        self.consume(value)
        op = {"op": "dense", "inputs": [value.group], "weight": self.take_param(weight, "weight")}
        b = self.take_param(bias, "bias")
        if b:
            op["bias"] = b
        out = self.shape(self.node)
        self.emit(op, weight.shape[0])
        return _Value(self.node.name, value.axis, out)

    def norm(self, value, module, kind, unit_axis):
        units = self.groups[value.group].units
        if value.axis != unit_axis:
            self.fail("%s normalises axis %d, but the units are on axis %d" %
                      (kind, unit_axis, value.axis))
        count = getattr(module, "num_features", None) or getattr(module, "num_channels", None)
        if count is None:  # LayerNorm
            shape = tuple(module.normalized_shape)
            if len(shape) != 1:
                self.fail("LayerNorm over %s is not over the unit axis alone" % list(shape))
            count = shape[0]
        if count != units:
            self.fail("%s has %d features, its input group has %d units" % (kind, count, units))
        weight = getattr(module, "weight", None)
        bias = getattr(module, "bias", None)
        if weight is None and bias is None:
            return self.alias(value, kind, self.shape(self.node))
        self.consume(value)
        op = {"op": "norm", "inputs": [value.group]}
        w = self.take_param(weight, "weight")
        b = self.take_param(bias, "bias")
        if w:
            op["weight"] = w
        if b:
            op["bias"] = b
        src = self.groups[value.group]
        self.emit(op, src.units, src.root)
        return _Value(self.node.name, value.axis, self.shape(self.node))

    def keep_units(self, value, kind, out):
        """Alias after checking the op kept the units' axis and count."""
        if len(out) != len(value.shape) or out[value.axis] != value.shape[value.axis]:
            self.fail("%s changes the unit axis (shape %s -> %s)" %
                      (kind, list(value.shape), list(out)))
        return self.alias(value, kind, out)

    def pool(self, value, kind, out):
        if value.axis != 1 or len(value.shape) < 3:
            self.fail("%s needs the units on axis 1 of a (B, C, ...) tensor, got shape %s with "
                      "units on axis %d" % (kind, list(value.shape), value.axis))
        return self.keep_units(value, kind, out)

    def reduce(self, node, value, kind, out):
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        keep = node.kwargs.get("keepdim", node.args[2] if len(node.args) > 2 else False)
        nd = len(value.shape)
        if dims is None:
            self.fail("%s over every axis mixes the units" % kind)
        dims = [dims] if isinstance(dims, int) else list(dims)
        dims = sorted(d % nd for d in dims)
        if value.axis != 1 or any(d < 2 for d in dims):
            self.fail("%s over axes %s is not a pooling over spatial axes (units on axis %d)" %
                      (kind, dims, value.axis))
        axis = value.axis if keep else value.axis - sum(1 for d in dims if d < value.axis)
        if out[axis] != value.shape[value.axis]:
            self.fail("%s changes the unit count" % kind)
        return self.alias(value, kind, out, axis)

    def reshape(self, value, kind, out):
        s = value.shape
        if out == s:
            return self.alias(value, kind, out)
        if len(out) != 2 or out[0] != s[0] or out[1] != math.prod(s[1:]):
            self.fail("%s from %s to %s is not a flatten from dim 1 (B, -1); other reshapes are "
                      "not in description version 1" % (kind, list(s), list(out)))
        src = self.groups[value.group]
        root = self.groups[src.root]
        if root.foldable and self.sole_path(src.root):
            # A flatten of a model input before any layer reads it: fold into the input.
            root.op["units"] = out[1]
            root.units = out[1]
            for g in self.groups.values():
                if g.root == src.root:
                    g.units = out[1]
            return _Value(value.group, 1, out)
        if value.axis != 1:
            self.fail("%s of a tensor whose units are on axis %d (shape %s); a flatten must "
                      "keep the units on axis 1 (channel-major)" % (kind, value.axis, list(s)))
        positions = math.prod(s[2:])
        if positions == 1:
            return self.alias(value, "flatten", out, 1)
        self.consume(value)
        self.emit({"op": "flatten", "inputs": [value.group], "positions": positions},
                  src.units * positions)
        return _Value(self.node.name, 1, out)

    def add(self, node, out):
        if node.kwargs.get("alpha", 1) != 1:
            self.fail("an addition with alpha != 1")
        operands = [a for a in list(node.args) + [node.kwargs.get("other")] if a is not None]
        values = [self.values.get(a) if isinstance(a, torch.fx.Node) else None for a in operands]
        for v in values:
            if isinstance(v, _Param):
                self.fail("parameter '%s' is added to a tensor (only tensor + tensor of equal "
                          "shape is an 'add' op)" % v.name)
        if len(values) != 2 or not all(isinstance(v, _Value) for v in values):
            self.fail("an addition that is not tensor + tensor (a constant or a scalar)")
        a, b = values
        if a.shape != b.shape or a.shape != out or a.axis != b.axis:
            self.fail("an addition of shapes %s and %s (broadcasting additions are not in "
                      "description version 1)" % (list(a.shape), list(b.shape)))
        ga, gb = self.groups[a.group], self.groups[b.group]
        if ga.root == gb.root:
            self.fail("adds a tensor to itself or to a parameter-free function of itself")
        self.consume(a)
        self.consume(b)
        # The result stands for the nodes of the operand allocated later (the builder's rule).
        later = max((ga.root, gb.root), key=lambda r: self.ops.index(self.groups[r].op))
        self.emit({"op": "add", "inputs": [a.group, b.group]}, ga.units, later)
        return _Value(self.node.name, a.axis, out)

    def cat(self, node, out):
        tensors = node.args[0] if node.args else node.kwargs.get("tensors")
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        if not isinstance(tensors, (list, tuple)) or len(tensors) < 2:
            self.fail("torch.cat of fewer than two tensors")
        values = [self.values.get(t) if isinstance(t, torch.fx.Node) else None for t in tensors]
        if not all(isinstance(v, _Value) for v in values):
            self.fail("torch.cat of something that is not a traced tensor (a parameter or a "
                      "constant)")
        nd = len(values[0].shape)
        axis = values[0].axis
        if any(len(v.shape) != nd or v.axis != axis for v in values) or dim % nd != axis:
            self.fail("torch.cat along dim %d, but the units are on axis %d" % (dim, axis))
        for v in values:
            self.consume(v)
        units = sum(self.groups[v.group].units for v in values)
        self.emit({"op": "concat", "inputs": [v.group for v in values]}, units)
        return _Value(self.node.name, axis, out)

    # ----- dispatch -----

    def call_module(self, node):
        m = self.gm.get_submodule(node.target)
        out = self.shape(node)
        for cls, why in _REFUSED_MODULES:
            if isinstance(m, cls):
                self.fail(why)
        if isinstance(m, (_nn.Linear, _nn.Conv2d)):
            conv = isinstance(m, _nn.Conv2d)
            if conv and m.groups != 1:
                self.fail("a grouped or depthwise convolution (groups=%d) is not in description "
                          "version 1" % m.groups)
            value = self.only_input(node, type(m).__name__)
            return self.dense(value, m.weight, m.bias, conv)
        if out is None:
            self.fail("the module does not return a single tensor")
        if isinstance(m, (_nn.BatchNorm1d, _nn.BatchNorm2d, _nn.GroupNorm)):
            value = self.only_input(node, type(m).__name__)
            return self.norm(value, m, type(m).__name__.lower(), 1)
        if isinstance(m, _nn.LayerNorm):
            value = self.only_input(node, "LayerNorm")
            return self.norm(value, m, "layer_norm", len(value.shape) - 1)
        if any(True for _ in m.parameters()):
            self.fail("module type %s holds parameters and has no description op" %
                      type(m).__name__)
        for table, handler in ((_ELEMENTWISE_MODULES, self.keep_units),
                               (_POOL_MODULES, self.pool)):
            kind = table.get(type(m))
            if kind:
                return handler(self.only_input(node, type(m).__name__), kind, out)
        if isinstance(m, _nn.Flatten):
            return self.reshape(self.only_input(node, "Flatten"), "flatten", out)
        self.fail("module type %s is not supported" % type(m).__name__)

    def call_function(self, node, name):
        out = self.shape(node)
        if name in _QUERY_NAMES and out is None:
            return None
        if name in ("linear", "conv2d"):
            return self.functional_dense(node, name)
        if out is None:
            self.fail("the op does not return a single tensor")
        if name in _ADD_NAMES:
            return self.add(node, out)
        if name in _CAT_NAMES:
            return self.cat(node, out)
        if name in _ELEMENTWISE_NAMES:
            return self.keep_units(self.only_input(node, name), name.rstrip("_"), out)
        if name in _POOL_NAMES:
            return self.pool(self.only_input(node, name), name, out)
        if name in _RESHAPE_NAMES:
            return self.reshape(self.only_input(node, name), name, out)
        if name in _REDUCE_NAMES:
            return self.reduce(node, self.only_input(node, name), name, out)
        for n, v in self.tensor_args(node):
            if isinstance(v, _Param):
                self.fail("parameter '%s' is used by '%s', which has no description op" %
                          (v.name, name))
        if name == "getitem":
            self.fail("indexing or slicing a tensor has no description op")
        self.fail("'%s' has no description op" % name)

    def functional_dense(self, node, name):
        conv = name == "conv2d"
        args = list(node.args) + [None] * 7
        weight = node.kwargs.get("weight", args[1])
        bias = node.kwargs.get("bias", args[2])
        groups = node.kwargs.get("groups", args[6] if conv else 1)
        if conv and groups not in (None, 1):
            self.fail("a grouped or depthwise convolution (groups=%s) is not in description "
                      "version 1" % (groups,))
        params = []
        for role, a in (("weight", weight), ("bias", bias)):
            v = self.values.get(a) if isinstance(a, torch.fx.Node) else None
            if a is not None and not isinstance(v, _Param):
                self.fail("the %s of F.%s is not a parameter of the model" % (role, name))
            params.append(self.gm.get_parameter(a.target) if a is not None else None)
        value = self.values.get(node.args[0]) if node.args else None
        if not isinstance(value, _Value):
            self.fail("F.%s is not applied to a traced tensor" % name)
        return self.dense(value, params[0], params[1], conv)

    def get_attr(self, node):
        try:
            obj = self.gm.get_parameter(node.target)
        except AttributeError:
            return _Const(node.target)
        return _Param(self.param_names.get(id(obj), node.target))

    def run(self):
        for node in self.gm.graph.nodes:
            self.node = node
            if node.op == "placeholder":
                self.values[node] = self.placeholder(node)
            elif node.op == "get_attr":
                self.values[node] = self.get_attr(node)
            elif node.op == "call_module":
                self.values[node] = self.call_module(node)
            elif node.op in ("call_function", "call_method"):
                self.values[node] = self.call_function(node, self.canonical_name(node))
            elif node.op == "output":
                for n, v in self.tensor_args(node):
                    if isinstance(v, _Param):
                        self.fail("the model returns parameter '%s'" % v.name)
        self.node = None
        return self.ops


def _named_parameters(module):
    """named_parameters() (tied parameters once), with NowcastOptimizer's rule: a common
    'module.' prefix is dropped."""
    named = list(module.named_parameters())
    if named and all(n.startswith("module.") for n, _ in named):
        named = [(n[len("module."):], p) for n, p in named]
    return named


def _unwrap(model):
    wrappers = (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)
    while isinstance(model, wrappers):
        model = model.module
    return model


def _trace(module):
    tracer = _Tracer()
    try:
        graph = tracer.trace(module)
    except Exception as e:  # noqa: BLE001  fx raises many types (TraceError, TypeError, ...)
        raise ValueError("describe_model: torch.fx cannot trace %s (%s: %s); control flow that "
                         "depends on tensor values cannot be traced. %s." %
                         (type(module).__name__, type(e).__name__, e, SUPPORTED)) from e
    return torch.fx.GraphModule(tracer.root, graph, type(module).__name__)


class _ShapeRecorder(torch.fx.Interpreter):
    """Runs the traced model, recording every node's output shape (node.meta["nino_shape"],
    for tensors) and naming the node where the model fails."""

    def run_node(self, n):
        try:
            result = super().run_node(n)
        except Exception as e:  # noqa: BLE001  the user's model failed on the example input
            raise ValueError("describe_model: running the model on the example input failed at "
                             "fx node '%s' (%s%s): %s: %s" %
                             (n.name, _op_label(n, self.module),
                              (", at " + _source_line(n)) if _source_line(n) else "",
                              type(e).__name__, e)) from e
        if isinstance(result, torch.Tensor):
            n.meta["nino_shape"] = tuple(result.shape)
        return result


def _propagate_shapes(gm, module, inputs):
    """Runs the traced model on clones of the inputs, in eval mode and without gradients: the
    model's parameters, buffers (BatchNorm statistics) and training flags are left as they
    were."""
    modes = [(m, m.training) for m in module.modules()]
    try:
        module.eval()
        with torch.no_grad():
            _ShapeRecorder(gm).run(*[x.clone() for x in inputs])
    finally:
        for m, mode in modes:
            m.training = mode


def describe_model(model, example_input):
    """The model description (JSON form, a dict: {"version": 1, "ops": [...]}) of `model`,
    traced with torch.fx and shaped by running it once on `example_input` (a tensor, or a tuple
    of tensors for a forward with several inputs; e.g. one batch). The model is left unchanged
    (run in eval mode under no_grad, on clones of the inputs).

    Raises ValueError, naming the fx node, its op and module path, for what description
    version 1 cannot express (attention, embeddings, grouped convolutions, reshapes other than
    flatten, broadcasting additions, parameters used twice or by other ops, control flow fx
    cannot trace)."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError("model must be a torch.nn.Module, got %s" % type(model).__name__)
    inputs = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
    if not inputs or not all(isinstance(x, torch.Tensor) for x in inputs):
        raise TypeError("example_input must be a tensor or a tuple of tensors, got %s" %
                        type(example_input).__name__)
    module = _unwrap(model)
    named = _named_parameters(module)
    if not named:
        raise ValueError("describe_model: the model has no parameters")
    gm = _trace(module)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != len(inputs):
        raise ValueError("describe_model: forward takes %d inputs (%s), example_input has %d" %
                         (len(placeholders), ", ".join(n.name for n in placeholders),
                          len(inputs)))
    _propagate_shapes(gm, module, inputs)
    describer = _Describer(gm, {id(p): n for n, p in named})
    ops = describer.run()
    missing = [n for n, _ in named if n not in describer.used]
    if missing:
        raise ValueError("describe_model: parameter(s) %s are not used by the traced forward "
                         "(every parameter must appear in exactly one op). %s." %
                         (", ".join("'%s'" % n for n in missing), SUPPORTED))
    description = {"version": DESCRIPTION_VERSION, "ops": ops}
    check_description(description, [(n, tuple(p.shape)) for n, p in named])
    return description


# ----- validation and the protocol message -----

_FIELDS = {
    "input": ({"units"}, set()),
    "dense": ({"inputs", "weight"}, {"bias"}),
    "norm": ({"inputs"}, {"weight", "bias"}),
    "alias": ({"inputs"}, {"kind"}),
    "flatten": ({"inputs", "positions"}, set()),
    "add": ({"inputs"}, set()),
    "concat": ({"inputs"}, set()),
}


def _bad(i, op, why):
    name = op.get("output") if isinstance(op, dict) else None
    raise ValueError("model description: op %d%s: %s" %
                     (i, " ('%s')" % name if isinstance(name, str) else "", why))


def _check_op_fields(i, op):
    if not isinstance(op, dict) or op.get("op") not in OPS:
        _bad(i, op if isinstance(op, dict) else {}, "'op' must be one of %s, got %r" %
             (", ".join(OPS), op.get("op") if isinstance(op, dict) else op))
    required, optional = _FIELDS[op["op"]]
    extra = set(op) - required - optional - {"op", "output"}
    if extra:
        _bad(i, op, "unknown or misplaced field(s) %s for a '%s' op" % (sorted(extra), op["op"]))
    for f in sorted(required | {"output"}):
        if f not in op:
            _bad(i, op, "missing field '%s'" % f)
    for f in ("output", "weight", "bias", "kind"):
        if f in op and not isinstance(op[f], str):
            _bad(i, op, "'%s' must be a string" % f)
    for f in ("units", "positions"):
        if f in op and (isinstance(op[f], bool) or not isinstance(op[f], int) or op[f] < 1):
            _bad(i, op, "'%s' must be an integer >= 1, got %r" % (f, op[f]))
    if "inputs" in op and (not isinstance(op["inputs"], list) or
                           not all(isinstance(x, str) for x in op["inputs"])):
        _bad(i, op, "'inputs' must be a list of group names")


def check_description(description, params=None):
    """Raises ValueError (naming the op) unless `description` is a valid version-1 description
    (JSON form). With `params` ([(name, shape)] in named_parameters order): every parameter
    appears exactly once, as the weight or bias of an op whose unit counts fit its shape."""
    if not isinstance(description, dict) or set(description) != {"version", "ops"}:
        raise ValueError("model description: expected an object with exactly 'version' and "
                         "'ops', got %r" % (sorted(description) if isinstance(description, dict)
                                            else type(description).__name__))
    if description["version"] != DESCRIPTION_VERSION:
        raise ValueError("model description: version %r is not supported (this client writes "
                         "version %d)" % (description["version"], DESCRIPTION_VERSION))
    ops = description["ops"]
    if not isinstance(ops, list) or not ops:
        raise ValueError("model description: 'ops' must be a non-empty list")
    shapes = dict(params) if params is not None else None
    units = {}
    seen = {}
    for i, op in enumerate(ops):
        _check_op_fields(i, op)
        kind, ins = op["op"], op.get("inputs", [])
        if not op["output"] or op["output"] in units:
            _bad(i, op, "'output' must be a new, non-empty group name")
        for x in ins:
            if x not in units:
                _bad(i, op, "input group '%s' is not created by an earlier op" % x)
        arity = {"input": 0, "add": 2}.get(kind, 1)
        if (len(ins) < 2) if kind == "concat" else (len(ins) != arity):
            _bad(i, op, "a '%s' op takes %s input group(s), got %d" %
                 (kind, "at least 2" if kind == "concat" else arity, len(ins)))
        if kind == "norm" and not op.get("weight") and not op.get("bias"):
            _bad(i, op, "a 'norm' op needs a weight or a bias")
        for role in ("weight", "bias"):
            name = op.get(role)
            if not name:
                continue
            if name in seen:
                _bad(i, op, "parameter '%s' appears twice (also in op %d)" % (name, seen[name]))
            seen[name] = i
            if shapes is not None and name not in shapes:
                _bad(i, op, "'%s' is not a parameter of the model" % name)
        units[op["output"]] = _units(i, op, units, shapes)
    if shapes is not None:
        missing = [n for n, _ in params if n not in seen]
        if missing:
            raise ValueError("model description: parameter(s) %s appear in no op (every "
                             "parameter must appear exactly once)" % ", ".join(missing))


def _units(i, op, units, shapes):
    """Units of the op's output group (None when unknown: a dense op without the parameter
    shapes); checks the shapes of its parameters when known."""
    kind, ins = op["op"], op.get("inputs", [])
    if kind == "input":
        return op["units"]
    n = units[ins[0]] if ins else None
    if kind == "flatten":
        return None if n is None else n * op["positions"]
    if kind == "concat":
        counts = [units[x] for x in ins]
        return None if None in counts else sum(counts)
    if kind == "add":
        m = units[ins[1]]
        if n is not None and m is not None and n != m:
            _bad(i, op, "adds groups of %d and %d units" % (n, m))
        return n if n is not None else m
    if kind == "alias":
        return n
    if kind == "norm":
        for role in ("weight", "bias"):
            if shapes is not None and op.get(role) and n is not None and \
                    tuple(shapes[op[role]]) != (n,):
                _bad(i, op, "%s '%s' has shape %s, its group has %d units" %
                     (role, op[role], list(shapes[op[role]]), n))
        return n
    if shapes is None:  # dense
        return None
    w = tuple(shapes[op["weight"]])
    if len(w) not in (2, 4) or (n is not None and w[1] != n):
        _bad(i, op, "weight '%s' of shape %s does not take the %s units of group '%s'" %
             (op["weight"], list(w), n, ins[0]))
    if op.get("bias") and tuple(shapes[op["bias"]]) != (w[0],):
        _bad(i, op, "bias '%s' has shape %s, the layer has %d outputs" %
             (op["bias"], list(shapes[op["bias"]]), w[0]))
    return w[0]


def normalize_description(description):
    """A description given as a dict or as JSON text, as a fresh dict (the caller's object is
    never modified)."""
    if isinstance(description, (str, bytes)):
        try:
            return json.loads(description)
        except ValueError as e:
            raise ValueError("model description: not valid JSON (%s)" % e) from None
    if isinstance(description, dict):
        return copy.deepcopy(description)
    raise TypeError("model_description must be a dict (the JSON form) or JSON text, got %s" %
                    type(description).__name__)


def description_to_proto(description, message=None):
    """Fills `message` (a nino.v1.ModelDescription; a new one when None) from the JSON form and
    returns it."""
    if message is None:
        from . import _client
        pb2, _ = _client.load_stubs()
        message = pb2.ModelDescription()
    message.Clear()
    message.version = description["version"]
    for op in description["ops"]:
        m = message.ops.add(op=op["op"], output=op["output"])
        m.inputs.extend(op.get("inputs", []))
        m.weight = op.get("weight", "")
        m.bias = op.get("bias", "")
        m.units = op.get("units", 0)
        m.positions = op.get("positions", 0)
        m.kind = op.get("kind", "")
    return message
