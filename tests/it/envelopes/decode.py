"""Decode messages the relay wrote with the CloudEvents Python SDK (an independent implementation).

Reads a JSON array of {"name", "binding": "kafka"|"http"|"nats", "headers": {name: value}, "key": str|null,
"body_b64"} on stdin; prints a JSON array of {"name", "mode", attributes..., "data"} or {"name", "error"}.
"""
import base64
import json
import sys

from cloudevents.core.bindings import http, kafka
from cloudevents.core.formats.json import JSONFormat


def decode(m):
    body = base64.b64decode(m["body_b64"])
    headers = m["headers"]
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    structured = content_type.startswith("application/cloudevents")
    if m["binding"] == "kafka":
        key = m.get("key")
        msg = kafka.KafkaMessage(
            headers={k: v.encode() for k, v in headers.items()},
            key=key.encode() if key is not None else None,
            value=body,
        )
        event = kafka.from_kafka(msg, JSONFormat())
    elif m["binding"] == "http":
        event = http.from_http(http.HTTPMessage(headers=headers, body=body), JSONFormat())
    else:
        # NATS's binding: a CloudEvents Content-Type means structured, anything else binary (`ce-` headers,
        # datacontenttype in `ce-datacontenttype`), which is HTTP's header mapping.
        msg = http.HTTPMessage(headers=headers, body=body)
        event = http.from_structured(msg, JSONFormat()) if structured else http.from_binary(msg, JSONFormat())
    attrs = event.get_attributes()
    out = {"name": m["name"], "mode": "structured" if structured else "binary"}
    for k, v in attrs.items():
        out[k] = v.isoformat() if hasattr(v, "isoformat") else v
    out["data"] = event.get_data()
    return out


def main():
    out = []
    for m in json.load(sys.stdin):
        try:
            out.append(decode(m))
        except Exception as e:  # the test shows which message the SDK refused, and why
            out.append({"name": m["name"], "error": f"{type(e).__name__}: {e}"})
    json.dump(out, sys.stdout)


main()
