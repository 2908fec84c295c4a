"""The describer: walks the traced graph in execution order and dispatches every fx node to
the op that maps it (_layers, _tokens), by module type or canonical function / method name."""

import torch

from . import _tables as t
from ._layers import LayerOps
from ._tokens import TokenOps
from ._values import AttentionResult, Const, Param, Pending, Value


# Values that carry neurons or parameters (a call without them computes ids or a constant).
_CARRIERS = (Value, Param, Pending, AttentionResult)


class Describer(LayerOps, TokenOps):
    """describe_model's walk over one traced GraphModule: run() returns the ops."""

    def call_module(self, node):
        m = self.gm.get_submodule(node.target)
        out = self.shape(node)
        for cls, why in t.REFUSED_MODULES:
            if isinstance(m, cls):
                self.fail(why)
        if isinstance(m, torch.nn.MultiheadAttention):
            return self.attention_module(node, m)
        if isinstance(m, torch.nn.Embedding):
            return self.embedding_module(node, m, out)
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
            conv = isinstance(m, torch.nn.Conv2d)
            value = self.only_input(node, type(m).__name__)
            return self.dense(value, m.weight, m.bias, conv, m.groups if conv else 1)
        if out is None:
            self.fail("the module does not return a single tensor")
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.GroupNorm)):
            value = self.only_input(node, type(m).__name__)
            return self.norm(value, m, type(m).__name__.lower(), 1)
        if isinstance(m, torch.nn.LayerNorm):
            value = self.only_input(node, "LayerNorm")
            return self.norm(value, m, "layer_norm", len(value.shape) - 1)
        if any(True for _ in m.parameters()):
            self.fail("module type %s holds parameters and has no description op" %
                      type(m).__name__)
        for table, handler in ((t.ELEMENTWISE_MODULES, self.keep_units),
                               (t.POOL_MODULES, self.pool)):
            kind = table.get(type(m))
            if kind:
                return handler(self.only_input(node, type(m).__name__), kind, out)
        if isinstance(m, torch.nn.Flatten):
            return self.reshape(self.only_input(node, "Flatten"), "flatten", out)
        self.fail("module type %s is not supported" % type(m).__name__)

    def call_function(self, node, name):
        out = self.shape(node)
        if name in t.QUERY_NAMES and out is None:
            return None
        if name in ("linear", "conv2d"):
            return self.functional_dense(node, name)
        args = [v for _, v in self.tensor_args(node)]
        first = self.values.get(node.args[0]) if node.args and isinstance(
            node.args[0], torch.fx.Node) else None
        if out is not None and not any(isinstance(v, _CARRIERS) for v in args):
            return self.no_neurons(node, name, args)
        if out is None:
            self.fail("the op does not return a single tensor")
        if name == "getitem" and isinstance(first, AttentionResult):
            return self.attention_item(node, first, out)
        if name == "getitem" and isinstance(first, Value):
            return self.select(node, first, out)
        if name in t.PARAM_VIEW_NAMES and isinstance(first, Param):
            return self.param_view(node, name, first, out)
        if name in t.MATMUL_NAMES and sum(isinstance(v, Value) for v in args) >= 2:
            self.matmul(name)
        return self.by_name(node, name, out)

    def by_name(self, node, name, out):
        """The ops that the canonical name alone selects."""
        if name in t.TRANSPOSE_NAMES:
            return self.transpose(node, self.only_input(node, name), name, out)
        if name in t.ADD_NAMES:
            return self.add(node, out)
        if name in t.MUL_NAMES:
            return self.mul(node, out)
        if name in t.CAT_NAMES:
            return self.cat(node, out)
        if name in t.ELEMENTWISE_NAMES:
            return self.keep_units(self.only_input(node, name), name.rstrip("_"), out)
        if name in t.POOL_NAMES:
            return self.pool(self.only_input(node, name), name, out)
        if name in t.RESHAPE_NAMES:
            return self.reshape(self.only_input(node, name), name, out)
        if name in t.REDUCE_NAMES:
            return self.reduce(node, self.only_input(node, name), name, out)
        for n, v in self.tensor_args(node):
            if isinstance(v, Param):
                self.fail("parameter '%s' is used by '%s', which has no description op" %
                          (v.name, name))
        if name == "getitem":
            self.fail("indexing or slicing a tensor has no description op")
        self.fail("'%s' has no description op" % name)

    def get_attr(self, node):
        try:
            obj = self.gm.get_parameter(node.target)
        except AttributeError:
            return Const(node.target)
        return Param(self.param_names.get(id(obj), node.target), obj)

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
                    if isinstance(v, Param):
                        self.fail("the model returns parameter '%s'" % v.name)
        self.node = None
        return self.ops

