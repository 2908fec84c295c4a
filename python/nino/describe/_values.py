"""What the describer knows about each traced fx value: a tensor that carries neurons (its
group, the axis of its units, the axis of its tokens, its shape), a parameter (possibly seen
through expand / repeat), integer ids, a constant, a position-embedding lookup waiting for the
addition that places it, nn.MultiheadAttention's (output, weights) tuple; and the unit groups
the ops create.

Layouts of a Value: features (B, F) and images (B, C, *spatial) have their units on axis 1 and
no token axis; token sequences have their units on the last axis and their tokens on axis 1
(B, T, d) or 0 (T, B, d)."""


class Value:
    """A traced tensor that carries neurons: its group, the axis of its units, its shape and
    the axis of its tokens (None: not a token sequence)."""

    def __init__(self, group, axis, shape, tokens=None):
        self.group, self.axis, self.shape, self.tokens = group, axis, tuple(shape), tokens


class Param:
    """A traced parameter (get_attr of a parameter), or one seen through expand / repeat
    (`shape`: the traced shape of that view; None for the parameter itself)."""

    def __init__(self, name, tensor, shape=None):
        self.name, self.tensor, self.shape = name, tensor, shape


class Const:
    """A traced tensor that carries no neurons: a buffer or an attribute that is not a
    parameter, or a tensor computed from such tensors only (a mask)."""

    def __init__(self, target):
        self.target = target


class Ids:
    """Integer ids: a model input of an integer dtype (token ids) or torch.arange (positions),
    possibly through unsqueeze / expand / view / indexing."""

    def __init__(self, name, arange):
        self.name, self.arange = name, arange


class Pending:
    """nn.Embedding applied to torch.arange ids (a position table): no op yet; the addition to
    a token sequence writes its `embedding` op (kind "position") into that sequence's group."""

    def __init__(self, node_name, weight, shape):
        self.node_name, self.weight, self.shape = node_name, weight, tuple(shape)


class AttentionResult:
    """nn.MultiheadAttention's result, a tuple: [0] is `value` (its out_proj group), [1] the
    attention weights (not mapped)."""

    def __init__(self, value):
        self.value = value


class Group:
    """A group of units (the output of one op) and the group whose nodes it stands for."""

    def __init__(self, units, root, op):
        self.units = units  # number of units (neurons)
        self.root = root    # the group whose nodes it stands for (itself for input/dense/flatten)
        self.op = op        # the op dict that created it
        self.foldable = op["op"] == "input"  # an input no layer has read yet
