"""The description's JSON form: check_description (structure: fields, versions, group names,
arities, every parameter at most once; with the parameter shapes every parameter exactly once
and the unit counts, _shapes), lowest_version and normalize_description (a dict or JSON text
-> a fresh dict)."""

import copy
import json

from ._shapes import group_units

DESCRIPTION_VERSION = 4  # the highest version this client reads and writes
VERSIONS = (1, 2, 3, 4)

OPS = ("input", "dense", "norm", "alias", "flatten", "add", "concat", "embedding", "attention",
       "multiply")
V2_OPS = ("embedding", "attention")
V2_FIELDS = ("transposed", "heads", "query", "key", "value", "query_bias", "key_bias",
             "value_bias")
V3_FIELDS = ("groups",)
V4_OPS = ("multiply",)
V4_FIELDS = ("kv_heads",)
# The parameter roles of an op (each names one parameter).
ROLES = ("weight", "bias", "query", "key", "value", "query_bias", "key_bias", "value_bias")

_SPLIT = {"query", "key", "value", "query_bias", "key_bias", "value_bias"}
_FIELDS = {  # op: (required, optional)
    "input": ({"units"}, set()),
    "dense": ({"inputs", "weight"}, {"bias", "transposed", "groups"}),
    "norm": ({"inputs"}, {"weight", "bias"}),
    "alias": ({"inputs"}, {"kind"}),
    "flatten": ({"inputs", "positions"}, set()),
    "add": ({"inputs"}, set()),
    "concat": ({"inputs"}, set()),
    "embedding": ({"weight", "kind"}, {"inputs"}),
    "attention": ({"inputs", "heads"}, {"weight", "bias", "transposed", "kv_heads"} | _SPLIT),
    "multiply": ({"inputs"}, set()),
}
_ARITY = {"input": (0, 0), "add": (2, 2), "multiply": (2, 2), "concat": (2, None),
          "embedding": (0, 1)}


def op_version(op):
    """The lowest version that has the op and its fields: 4 for multiply and `kv_heads`, 3 for
    `groups`, 2 for embedding, attention and the version-2 fields, else 1."""
    if op["op"] in V4_OPS or any(f in op for f in V4_FIELDS):
        return 4
    if any(f in op and op[f] != 1 for f in V3_FIELDS):
        return 3
    return 2 if op["op"] in V2_OPS or any(f in op for f in V2_FIELDS) else 1


def lowest_version(ops):
    """The lowest version that says every op (writers write the lowest)."""
    return max((op_version(op) for op in ops), default=1)


def bad(i, op, why):
    name = op.get("output") if isinstance(op, dict) else None
    raise ValueError("model description: op %d%s: %s" %
                     (i, " ('%s')" % name if isinstance(name, str) else "", why))


def _check_op_fields(i, op, version):
    if not isinstance(op, dict) or op.get("op") not in OPS:
        bad(i, op if isinstance(op, dict) else {}, "'op' must be one of %s, got %r" %
            (", ".join(OPS), op.get("op") if isinstance(op, dict) else op))
    required, optional = _FIELDS[op["op"]]
    extra = set(op) - required - optional - {"op", "output"}
    if extra:
        bad(i, op, "unknown or misplaced field(s) %s for a '%s' op" % (sorted(extra), op["op"]))
    for f in sorted(required | {"output"}):
        if f not in op:
            bad(i, op, "missing field '%s'" % f)
    if version < 2:
        v2 = op["op"] if op["op"] in V2_OPS else next((f for f in V2_FIELDS if f in op), None)
        if v2:
            bad(i, op, "%s is version 2, the description says version %d" % (v2, version))
    if version < 3 and op.get("groups", 1) != 1:
        bad(i, op, "groups is version 3, the description says version %d" % version)
    if version < 4:
        v4 = op["op"] if op["op"] in V4_OPS else next((f for f in V4_FIELDS if f in op), None)
        if v4:
            bad(i, op, "%s is version 4, the description says version %d" % (v4, version))
    for f in ("output", "kind") + ROLES:
        if f in op and not isinstance(op[f], str):
            bad(i, op, "'%s' must be a string" % f)
    for f in ("units", "positions", "heads", "groups", "kv_heads"):
        if f in op and (isinstance(op[f], bool) or not isinstance(op[f], int) or op[f] < 1):
            bad(i, op, "'%s' must be an integer >= 1, got %r" % (f, op[f]))
    if "transposed" in op and op["transposed"] is not True:
        bad(i, op, "'transposed' must be true when present, got %r" % (op["transposed"],))
    if op.get("groups", 1) != 1 and "transposed" in op:
        bad(i, op, "'groups' and 'transposed' exclude each other")
    if "inputs" in op and (not isinstance(op["inputs"], list) or
                           not all(isinstance(x, str) for x in op["inputs"])):
        bad(i, op, "'inputs' must be a list of group names")


def _check_op_kind(i, op):
    """The rules of embedding and attention ops and of norms."""
    kind = op["op"]
    if kind == "norm" and not op.get("weight") and not op.get("bias"):
        bad(i, op, "a 'norm' op needs a weight or a bias")
    if kind == "embedding" and op["kind"] not in ("token", "position"):
        bad(i, op, "an 'embedding' op's kind is 'token' or 'position', got %r" % op["kind"])
    if kind == "attention":
        split = sorted(f for f in _SPLIT if f in op)
        if "weight" in op and split:
            bad(i, op, "an 'attention' op has either 'weight' (packed) or query / key / value "
                "(split), not both (%s)" % ", ".join(split))
        if "weight" not in op and not all(f in op for f in ("query", "key", "value")):
            bad(i, op, "an 'attention' op needs 'weight' (packed q|k|v) or all of query, key, "
                "value")
        if "transposed" in op and "weight" not in op:
            bad(i, op, "'transposed' is for a packed attention weight")
        if op.get("kv_heads", op["heads"]) > op["heads"] or op["heads"] % op.get("kv_heads", 1):
            bad(i, op, "kv_heads %d does not divide heads %d" % (op["kv_heads"], op["heads"]))


def check_description(description, params=None):
    """Raises ValueError (naming the op) unless `description` is a valid description of
    version 1 to 4 (JSON form). With `params` ([(name, shape)] in named_parameters order):
    every parameter appears exactly once, in an op whose unit counts fit its shape."""
    if not isinstance(description, dict) or set(description) != {"version", "ops"}:
        raise ValueError("model description: expected an object with exactly 'version' and "
                         "'ops', got %r" % (sorted(description) if isinstance(description, dict)
                                            else type(description).__name__))
    version = description["version"]
    if isinstance(version, bool) or version not in VERSIONS:
        raise ValueError("model description: version %r is not supported (this client reads "
                         "versions 1 to 4)" % (version,))
    ops = description["ops"]
    if not isinstance(ops, list) or not ops:
        raise ValueError("model description: 'ops' must be a non-empty list")
    shapes = dict(params) if params is not None else None
    units = {}
    seen = {}
    for i, op in enumerate(ops):
        _check_op_fields(i, op, version)
        kind, ins = op["op"], op.get("inputs", [])
        if not op["output"] or op["output"] in units:
            bad(i, op, "'output' must be a new, non-empty group name")
        for x in ins:
            if x not in units:
                bad(i, op, "input group '%s' is not created by an earlier op" % x)
        low, high = _ARITY.get(kind, (1, 1))
        if len(ins) < low or (high is not None and len(ins) > high):
            bad(i, op, "a '%s' op takes %s input group(s), got %d" %
                (kind, low if low == high else "%d to %s" % (low, high or "any"), len(ins)))
        _check_op_kind(i, op)
        for role in ROLES:
            name = op.get(role)
            if not name:
                continue
            if name in seen:
                bad(i, op, "parameter '%s' appears twice (also in op %d)" % (name, seen[name]))
            seen[name] = i
            if shapes is not None and name not in shapes:
                bad(i, op, "'%s' is not a parameter of the model" % name)
        units[op["output"]] = group_units(i, op, units, shapes, bad)
    if shapes is not None:
        missing = [n for n, _ in params if n not in seen]
        if missing:
            raise ValueError("model description: parameter(s) %s appear in no op (every "
                             "parameter must appear exactly once)" % ", ".join(missing))


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
