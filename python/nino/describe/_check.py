"""The description's JSON form: check_description (structure, unit counts and, given the
parameter shapes, every parameter exactly once with a consistent shape) and
normalize_description (a dict or JSON text -> a fresh dict)."""

import copy
import json

DESCRIPTION_VERSION = 1

OPS = ("input", "dense", "norm", "alias", "flatten", "add", "concat")

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

