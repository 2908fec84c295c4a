"""The unit count of each op's output group, and the shapes of its parameters checked against
the unit counts (docs/GRAPH_DESCRIPTION.md: dense, norm, embedding and attention)."""


def group_units(i, op, units, shapes, bad):
    """Units of the op's output group (None when unknown: a parameter op without the parameter
    shapes); checks the shapes of its parameters when known. `bad(i, op, why)` raises."""
    kind, ins = op["op"], op.get("inputs", [])
    if kind == "input":
        return op["units"]
    n = units[ins[0]] if ins else None
    if kind == "flatten":
        return None if n is None else n * op["positions"]
    if kind == "concat":
        counts = [units[x] for x in ins]
        return None if None in counts else sum(counts)
    if kind in ("add", "multiply"):
        m = units[ins[1]]
        if n is not None and m is not None and n != m:
            bad(i, op, "%s groups of %d and %d units" % (kind.replace("y", "ie") + "s", n, m))
        return n if n is not None else m
    if kind == "alias":
        return n
    if kind == "norm":
        for role in ("weight", "bias"):
            if shapes is not None and op.get(role) and n is not None and \
                    tuple(shapes[op[role]]) != (n,):
                bad(i, op, "%s '%s' has shape %s, its group has %d units" %
                    (role, op[role], list(shapes[op[role]]), n))
        return n
    if shapes is None:
        return n if kind == "embedding" and ins else None
    if kind == "embedding":
        return _embedding(i, op, n, shapes, bad)
    if kind == "attention":
        return _attention(i, op, n, shapes, bad)
    return _dense(i, op, n, shapes, bad)


def _dense(i, op, n, shapes, bad):
    w = tuple(shapes[op["weight"]])
    if op.get("transposed") and len(w) == 2:
        w = (w[1], w[0])
    groups = op.get("groups", 1)
    if groups > 1 and (len(w) != 4 or w[0] % groups):
        bad(i, op, "weight '%s' of shape %s is not a convolution (out, in / %d, kh, kw) with "
            "%d groups" % (op["weight"], list(shapes[op["weight"]]), groups, groups))
    if len(w) not in (2, 4) or (n is not None and w[1] * groups != n):
        bad(i, op, "weight '%s' of shape %s%s does not take the %s units of group '%s'" %
            (op["weight"], list(shapes[op["weight"]]),
             " with %d groups" % groups if groups > 1 else "", n, op["inputs"][0]))
    _bias(i, op, "bias", w[0], shapes, bad)
    return w[0]


def _embedding(i, op, n, shapes, bad):
    w = tuple(shapes[op["weight"]])
    if not w or w[-1] < 1:
        bad(i, op, "table '%s' of shape %s has no units" % (op["weight"], list(w)))
    if n is not None and w[-1] != n:
        bad(i, op, "table '%s' of shape %s has rows of %d units, its group '%s' has %d" %
            (op["weight"], list(w), w[-1], op["inputs"][0], n))
    return w[-1]


def _attention(i, op, n, shapes, bad):
    """The attention's output units: D (query = value units), or H * hd with kv_heads < heads
    (the value heads repeated for their query heads); k and v have kv_heads * hd units."""
    heads = op["heads"]
    kv = op.get("kv_heads", heads)
    if op.get("weight"):
        w = tuple(shapes[op["weight"]])
        if op.get("transposed") and len(w) == 2:
            w = (w[1], w[0])
        if len(w) != 2 or (w[0] * heads) % (heads + 2 * kv) or (n is not None and w[1] != n):
            bad(i, op, "packed weight '%s' of shape %s is not (%s, %s)%s" %
                (op["weight"], list(shapes[op["weight"]]),
                 "3 D" if kv == heads else "D + 2 D_kv", n,
                 " stored (in, out)" if op.get("transposed") else ""))
        d_out = w[0] * heads // (heads + 2 * kv)
        _bias(i, op, "bias", w[0], shapes, bad)
    else:
        d_out = tuple(shapes[op["query"]])[0] if len(shapes[op["query"]]) == 2 else None
        for role in ("query", "key", "value"):
            w = tuple(shapes[op[role]])
            size = d_out if role == "query" or d_out is None else d_out // heads * kv
            if len(w) != 2 or (n is not None and w[1] != n) or w[0] != size:
                bad(i, op, "%s weight '%s' of shape %s is not (%s, %s)%s" %
                    (role, op[role], list(w), size, n,
                     " with q, k, v of equal size (a smaller k / v: say kv_heads, version 4)"
                     if kv == heads else " (%d of %d heads)" % (kv, heads)))
            _bias(i, op, role + "_bias", w[0], shapes, bad)
    if d_out % heads:
        bad(i, op, "%d query units are not divisible by %d heads" % (d_out, heads))
    return d_out


def _bias(i, op, role, size, shapes, bad):
    if op.get(role) and tuple(shapes[op[role]]) != (size,):
        bad(i, op, "%s '%s' has shape %s, the layer has %d outputs" %
            (role, op[role], list(shapes[op[role]]), size))
