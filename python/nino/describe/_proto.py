"""description_to_proto: the JSON form as a nino.v1.ModelDescription."""

from ._check import V2_FIELDS, V3_FIELDS, V4_FIELDS


def description_to_proto(description, message=None):
    """Fills `message` (a nino.v1.ModelDescription; a new one when None) from the JSON form and
    returns it. The version-2 fields (transposed, heads, query, ...) are set only where an op
    has them, so version-1 descriptions need no newer stubs; ValueError when the stubs predate
    a field a version-2 description uses."""
    if message is None:
        from .. import _client
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
        for f in V2_FIELDS + V3_FIELDS + V4_FIELDS:
            if f in op:
                if f not in m.DESCRIPTOR.fields_by_name:
                    raise ValueError("the nino.v1 stubs predate model description version %d "
                                     "(no DescriptionOp.%s); rebuild them from proto/nino/v1/"
                                     "nowcaster.proto" % (4 if f in V4_FIELDS else
                                                          3 if f in V3_FIELDS else 2, f))
                setattr(m, f, op[f])
    return message
