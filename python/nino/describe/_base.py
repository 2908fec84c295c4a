"""The describer's state and helpers: the ops written so far, what each traced fx value is
(_values), the unit groups, which parameters are used; errors that name the fx node, its op,
its module path and the user's source line."""

import torch

from ._tables import FUNCTION_NAMES, QUERY_NAMES, SUPPORTED
from ._trace import op_label, source_line
from ._values import AttentionResult, Const, Group, Ids, Param, Pending, Value

KEEP = object()  # alias(): keep the token axis of the input


class DescriberBase:
    """State and helpers of one describe_model run; the ops are in _layers and _describer."""

    def __init__(self, gm, param_names):
        self.gm = gm
        self.param_names = param_names  # id(parameter) -> name (named_parameters, tied once)
        self.ops = []
        self.values = {}  # fx node -> a _values class, or None (not a tensor)
        self.groups = {}  # group name -> Group
        self.used = {}    # parameter name -> fx node name
        self.node = None

    # ----- errors -----

    def fail(self, why):
        node = self.node
        path = node.meta.get("nino_module_path", "") if node is not None else ""
        where = "fx node '%s' (%s, module '%s'%s)" % (
            node.name, op_label(node, self.gm), path or "<root>",
            (", at " + source_line(node)) if source_line(node) else "")
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
            if isinstance(v, Param):
                self.fail("parameter '%s' is used by %s, which has no description op" %
                          (v.name, what))
            if isinstance(v, Const):
                self.fail("%s reads the constant tensor '%s'" % (what, v.target))
            self.refuse_special(what, v)
            if isinstance(v, Value) and n is not first:
                self.fail("%s takes a second tensor input ('%s')" % (what, n.name))
        v = self.values.get(first) if isinstance(first, torch.fx.Node) else None
        if not isinstance(v, Value):
            self.fail("%s is not applied to a traced tensor" % what)
        return v

    def refuse_special(self, what, v):
        """Refuses the values only some ops read: ids, a pending position embedding, the
        tuple of nn.MultiheadAttention."""
        if isinstance(v, Ids):
            self.fail("%s reads the integer %s '%s'; only nn.Embedding reads ids" %
                      (what, "positions" if v.arange else "ids", v.name))
        if isinstance(v, Pending):
            self.fail("%s reads the position embedding '%s' (nn.Embedding of torch.arange ids), "
                      "which must be added to a token sequence" % (what, v.node_name))
        if isinstance(v, AttentionResult):
            self.fail("%s reads the (output, weights) tuple of nn.MultiheadAttention; take its "
                      "[0]" % what)

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

    def emit(self, op, units, root=None, name=None):
        """Appends the op (output: `name`, default the fx node's name) and creates its group
        of `units` units standing for the nodes of `root` (default: its own)."""
        name = name or self.node.name
        op = dict({"op": op["op"], "output": name}, **op)
        self.ops.append(op)
        group = Group(units, root if root is not None else name, op)
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
                                                    self.canonical_name(u) in QUERY_NAMES)]
                if len(users) > 1:
                    return False
        return True

    def canonical_name(self, node):
        if node.op == "call_method":
            return node.target
        if node.op == "call_function":
            return FUNCTION_NAMES.get(node.target, getattr(node.target, "__name__", "?"))
        return ""

    def alias(self, value, kind, out_shape, axis=None, tokens=KEEP):
        """An alias op of `value`'s group; the result's unit / token axes are `value`'s unless
        given."""
        src = self.groups[value.group]
        self.emit({"op": "alias", "inputs": [value.group], "kind": kind}, src.units, src.root)
        return Value(self.node.name, value.axis if axis is None else axis, out_shape,
                     value.tokens if tokens is KEEP else tokens)

    # ----- ops -----

