"""schemathesis hooks for herald's API (tests/it/openapi.rs): NDJSON request bodies.

The document describes an `application/x-ndjson` body by the schema of its lines, as an
array; this writes each item as one JSON line. A string is sent as it is.
"""

import json

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    items = value if isinstance(value, list) else [value]
    return "".join(json.dumps(item) + "\n" for item in items).encode("utf-8")
