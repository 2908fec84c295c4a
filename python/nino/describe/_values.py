"""What the describer knows about each traced fx value: a tensor that carries neurons (its
group, the axis of its units, its shape), a parameter, a constant tensor; and the unit groups
the ops create."""


class Value:
    """A traced tensor that carries neurons: its group, the axis of its units, its shape."""

    def __init__(self, group, axis, shape):
        self.group, self.axis, self.shape = group, axis, tuple(shape)


class Param:
    """A traced parameter (get_attr of a parameter)."""

    def __init__(self, name):
        self.name = name


class Const:
    """A traced constant tensor (a buffer or an attribute that is not a parameter)."""

    def __init__(self, target):
        self.target = target


class Group:
    """A group of units (the output of one op) and the group whose nodes it stands for."""

    def __init__(self, units, root, op):
        self.units = units  # number of units (neurons)
        self.root = root    # the group whose nodes it stands for (itself for input/dense/flatten)
        self.op = op        # the op dict that created it
        self.foldable = op["op"] == "input"  # an input no layer has read yet

