"""A small JSON Schema (draft 2020-12) validator for the keywords models/bundle.schema.json uses: type, enum, const,
properties, required, additionalProperties, patternProperties, minProperties, items, prefixItems, minItems, maxItems, minimum,
pattern, minLength, $ref (local #/$defs), anyOf/oneOf.  The host validates with ajv against the same schema."""

from __future__ import annotations

import re


class SchemaError(ValueError):
    pass


_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def validate(value, schema, root=None, path="") -> None:
    root = root if root is not None else schema
    if schema is True:
        return
    if schema is False:
        raise SchemaError(f"{path or '/'}: not allowed")
    if "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            raise SchemaError(f"unsupported $ref {ref}")
        target = root
        for part in ref[2:].split("/"):
            target = target[part]
        validate(value, target, root, path)
    where = path or "/"
    t = schema.get("type")
    if t is not None:
        ts = t if isinstance(t, list) else [t]
        if not any(_TYPES[x](value) for x in ts):
            raise SchemaError(f"{where}: expected {t}, got {type(value).__name__}")
    if "enum" in schema and value not in schema["enum"]:
        raise SchemaError(f"{where}: {value!r} not one of {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        raise SchemaError(f"{where}: expected {schema['const']!r}, got {value!r}")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            raise SchemaError(f"{where}: {value!r} does not match {schema['pattern']}")
        if len(value) < schema.get("minLength", 0):
            raise SchemaError(f"{where}: shorter than {schema['minLength']}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise SchemaError(f"{where}: {value} < {schema['minimum']}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            raise SchemaError(f"{where}: {value} <= {schema['exclusiveMinimum']}")
    if isinstance(value, dict):
        if len(value) < schema.get("minProperties", 0):
            raise SchemaError(f"{where}: fewer than {schema['minProperties']} properties")
        for k in schema.get("required", []):
            if k not in value:
                raise SchemaError(f"{where}: missing required property {k!r}")
        props = schema.get("properties", {})
        pprops = schema.get("patternProperties", {})
        for k, v in value.items():
            sub = f"{path}/{k}"
            matched = False
            if k in props:
                validate(v, props[k], root, sub)
                matched = True
            for pat, s in pprops.items():
                if re.search(pat, k):
                    validate(v, s, root, sub)
                    matched = True
            if not matched and "additionalProperties" in schema:
                validate(v, schema["additionalProperties"], root, sub)
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            raise SchemaError(f"{where}: fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise SchemaError(f"{where}: more than {schema['maxItems']} items")
        prefix = schema.get("prefixItems", [])
        for i, v in enumerate(value):
            if i < len(prefix):
                validate(v, prefix[i], root, f"{path}/{i}")
            elif "items" in schema:
                validate(v, schema["items"], root, f"{path}/{i}")
    for key in ("anyOf", "oneOf"):
        if key in schema:
            ok = 0
            errs = []
            for s in schema[key]:
                try:
                    validate(value, s, root, path)
                    ok += 1
                except SchemaError as e:
                    errs.append(str(e))
            if ok == 0 or (key == "oneOf" and ok > 1):
                raise SchemaError(f"{where}: matches {ok} of {key} ({'; '.join(errs[:3])})")
