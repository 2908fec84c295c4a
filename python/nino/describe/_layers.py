"""The ops of images, flat features and (for the ops that act on the unit axis alone) token
sequences: input, dense (linear / conv), norm, parameter-free aliases (activations, pooling,
spatial means), flatten, add and concat. Token-specific ops are in _tokens."""

import math

import torch

from ._base import DescriberBase
from ._tables import HAND_ATTENTION
from ._values import Ids, Param, Pending, Value


class LayerOps(DescriberBase):
    """Maps one fx node each; returns the node's Value (or fails naming it)."""

    def placeholder(self, node):
        shape = self.shape(node)
        if shape is None:
            self.fail("the example input for '%s' is not a tensor" % node.name)
        dtype = node.meta.get("nino_dtype")
        if dtype is not None and not dtype.is_floating_point:
            return Ids(node.name, arange=False)  # token ids (or a mask): no neurons
        if len(shape) < 2:
            self.fail("input '%s' has shape %s; inputs need a batch axis and a unit axis" %
                      (node.name, list(shape)))
        # (B, F), (B, C, H, W); (B, T, d): features last, tokens on axis 1.
        axis, tokens = (2, 1) if len(shape) == 3 else (1, None)
        g = self.emit({"op": "input", "units": shape[axis]}, shape[axis])
        g.foldable = True
        return Value(node.name, axis, shape, tokens)

    def dense(self, value, weight, bias, conv, groups=1):
        """A linear layer or convolution; `groups` > 1: a grouped or depthwise convolution
        (description version 3), weight (out, in / groups, kh, kw)."""
        what = "a convolution" if conv else "a linear layer"
        nd = len(value.shape)
        if conv and (nd != 4 or value.axis != 1):
            self.fail("%s needs a (B, C, H, W) input with the units on axis 1, got shape %s" %
                      (what, list(value.shape)))
        if not conv and value.axis != nd - 1:
            self.fail("%s is applied over axis %d, but the units of its input are on axis %d" %
                      (what, nd - 1, value.axis))
        units = self.groups[value.group].units
        if weight.shape[1] * groups != units:
            self.fail("%s takes %d inputs%s, its input group has %d units" %
                      (what, weight.shape[1] * groups,
                       " (%d groups of %d)" % (groups, weight.shape[1]) if groups > 1 else "",
                       units))
        self.consume(value)
        op = {"op": "dense", "inputs": [value.group], "weight": self.take_param(weight, "weight")}
        b = self.take_param(bias, "bias")
        if b:
            op["bias"] = b
        if groups > 1:
            op["groups"] = groups
        out = self.shape(self.node)
        self.emit(op, weight.shape[0])
        return Value(self.node.name, value.axis, out, value.tokens)

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
        return Value(self.node.name, value.axis, self.shape(self.node), value.tokens)

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
        if value.tokens is not None and dims == [value.tokens]:
            return self.token_mean(value, kind, keep, out)
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
        if value.axis == 1 and len(s) > 3 and out == s[:2] + (math.prod(s[2:]),):
            # (B, C, H, W) -> (B, C, H * W): the units stay on axis 1, no op; a transpose to
            # (B, H * W, C) makes tokens of them (_tokens.to_tokens).
            self.consume(value)
            return Value(value.group, 1, out)
        if len(out) != 2 or out[0] != s[0] or out[1] != math.prod(s[1:]):
            self.fail("%s from %s to %s is neither a flatten from dim 1 (B, -1) nor from dim 2 "
                      "of a (B, C, ...) tensor; other reshapes are not in the description%s" %
                      (kind, list(s), list(out),
                       "; " + HAND_ATTENTION if value.tokens is not None else ""))
        src = self.groups[value.group]
        root = self.groups[src.root]
        if root.foldable and self.sole_path(src.root):
            # A flatten of a model input before any layer reads it: fold into the input.
            root.op["units"] = out[1]
            root.units = out[1]
            for g in self.groups.values():
                if g.root == src.root:
                    g.units = out[1]
            return Value(value.group, 1, out)
        if value.axis != 1:
            self.fail("%s of a tensor whose units are on axis %d (shape %s); a flatten must "
                      "keep the units on axis 1 (channel-major)" % (kind, value.axis, list(s)))
        positions = math.prod(s[2:])
        if positions == 1:
            return self.alias(value, "flatten", out, 1)
        self.consume(value)
        self.emit({"op": "flatten", "inputs": [value.group], "positions": positions},
                  src.units * positions)
        return Value(self.node.name, 1, out)

    def add(self, node, out):
        if node.kwargs.get("alpha", 1) != 1:
            self.fail("an addition with alpha != 1")
        values = self.operand_values(node)
        if len(values) == 2 and any(isinstance(v, Value) for v in values) and \
                any(isinstance(v, (Param, Pending)) for v in values):
            return self.position(values, out)
        self.refuse_operands(values, "an addition",
                             "parameter '%s' is added to a tensor (only tensor + tensor of equal "
                             "shape is an 'add' op; a (1, T, d) position table added to a token "
                             "sequence is an 'embedding' op)")
        if len(values) != 2 or not all(isinstance(v, Value) for v in values):
            self.fail("an addition that is not tensor + tensor (a constant or a scalar)")
        a, b = values
        if a.shape != b.shape or a.shape != out or a.axis != b.axis or a.tokens != b.tokens:
            self.fail("an addition of shapes %s and %s (broadcasting additions are not in "
                      "description version 1)" % (list(a.shape), list(b.shape)))
        if self.groups[a.group].root == self.groups[b.group].root:
            self.fail("adds a tensor to itself or to a parameter-free function of itself")
        return self.join("add", a, b, out)

    def mul(self, node, out):
        """A product: tensor * number keeps the units (alias); tensor * tensor of equal shape is
        a `multiply` op (version 4: a gated MLP's silu(gate(x)) * up(x)), or an alias when both
        are parameter-free functions of one tensor (x * sigmoid(x)); broadcasting products
        (squeeze-and-excitation gates) and products with a parameter are refused."""
        values = self.operand_values(node)
        tensors = [v for v in values if isinstance(v, Value)]
        self.refuse_operands(values, "a product",
                             "parameter '%s' multiplies a tensor (a learned per-unit scale such "
                             "as a layer scale has no description op; write it as a norm module "
                             "or pass model_description=)")
        if len(values) == 2 and len(tensors) == 1 and \
                all(isinstance(v, (Value, int, float)) and not isinstance(v, bool)
                    for v in values):
            return self.keep_units(tensors[0], "scale", out)
        if len(values) != 2 or len(tensors) != 2:
            self.fail("a product that is neither tensor * tensor nor tensor * number")
        a, b = tensors
        if a.shape != b.shape or a.shape != out or a.axis != b.axis or a.tokens != b.tokens:
            self.fail("a product of shapes %s and %s (broadcasting products, such as "
                      "squeeze-and-excitation gates, are not in the description)" %
                      (list(a.shape), list(b.shape)))
        if self.groups[a.group].root == self.groups[b.group].root:
            return self.alias(a, "mul", out)  # x * f(x): elementwise, the same units
        return self.join("multiply", a, b, out)

    def operand_values(self, node):
        """The operands of a binary op (args, then `other`): Values of traced nodes, numbers as
        they are."""
        operands = [a for a in list(node.args) + [node.kwargs.get("other")] if a is not None]
        return [self.values.get(a) if isinstance(a, torch.fx.Node) else a for a in operands]

    def refuse_operands(self, values, what, param_why):
        """Refuses a parameter operand (param_why % its name) and the values only some ops
        read."""
        for v in values:
            if isinstance(v, Param):
                self.fail(param_why % v.name)
            self.refuse_special(what, v)

    def join(self, kind, a, b, out):
        """An add or multiply op of two Values of equal shape: the result stands for the nodes
        of the operand allocated later (the builder's rule)."""
        ga, gb = self.groups[a.group], self.groups[b.group]
        self.consume(a)
        self.consume(b)
        later = max((ga.root, gb.root), key=lambda r: self.ops.index(self.groups[r].op))
        self.emit({"op": kind, "inputs": [a.group, b.group]}, ga.units, later)
        return Value(self.node.name, a.axis, out, a.tokens)

    def cat(self, node, out):
        tensors = node.args[0] if node.args else node.kwargs.get("tensors")
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        if not isinstance(tensors, (list, tuple)) or not tensors:
            self.fail("torch.cat of no tensors")
        values = [self.values.get(t) if isinstance(t, torch.fx.Node) else None for t in tensors]
        if len(values) == 1 and isinstance(values[0], Value):
            return self.alias(values[0], "cat", out)  # torch.cat([x]) (DenseNet): x itself
        if any(isinstance(v, Param) for v in values):
            return self.class_tokens(values, dim, out)
        if not all(isinstance(v, Value) for v in values):
            self.fail("torch.cat of something that is not a traced tensor (a parameter or a "
                      "constant)")
        nd = len(values[0].shape)
        axis, tokens = values[0].axis, values[0].tokens
        if any(len(v.shape) != nd or v.axis != axis or v.tokens != tokens for v in values) or \
                dim % nd != axis:
            self.fail("torch.cat along dim %d, but the units are on axis %d (tensors are "
                      "concatenated along the unit axis; along the token axis only a class-token "
                      "parameter)" % (dim, axis))
        for v in values:
            self.consume(v)
        units = sum(self.groups[v.group].units for v in values)
        self.emit({"op": "concat", "inputs": [v.group for v in values]}, units)
        return Value(self.node.name, axis, out, tokens)

    def functional_dense(self, node, name):
        conv = name == "conv2d"
        args = list(node.args) + [None] * 7
        weight = node.kwargs.get("weight", args[1])
        bias = node.kwargs.get("bias", args[2])
        groups = node.kwargs.get("groups", args[6] if conv else 1)
        groups = 1 if groups is None else groups
        if not isinstance(groups, int) or groups < 1:
            self.fail("F.conv2d with groups=%r (not a positive integer)" % (groups,))
        params = []
        for role, a in (("weight", weight), ("bias", bias)):
            v = self.values.get(a) if isinstance(a, torch.fx.Node) else None
            if a is not None and not (isinstance(v, Param) and v.shape is None):
                self.fail("the %s of F.%s is not a parameter of the model" % (role, name))
            params.append(v.tensor if a is not None else None)
        value = self.values.get(node.args[0]) if node.args else None
        if not isinstance(value, Value):
            self.fail("F.%s is not applied to a traced tensor" % name)
        return self.dense(value, params[0], params[1], conv, groups)

