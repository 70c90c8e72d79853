#!/usr/bin/env python3
"""Write the seed corpora in fuzz/seeds/<target>/ from the vendored AdCP 3.2.4 vectors and
the key fixtures. Run from the repository root or from fuzz/: python3 fuzz/make_seeds.py"""
import glob
import hashlib
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "crates", "adcp-webhooks", "tests", "fixtures")
VEC = os.path.join(FIX, "adcp-3.2.4", "test-vectors")


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(HERE, "seeds", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
        f.write(data)


canon = json.load(open(os.path.join(VEC, "request-signing", "canonicalization.json")))
for case in canon["cases"]:
    put("canonical_url", case["input_url"])

requests = []
for path in sorted(glob.glob(os.path.join(VEC, "webhook-signing", "*", "*.json"))):
    v = json.load(open(path))
    req = v.get("request")
    if not req:
        continue
    requests.append(req)
    for name, value in req["headers"].items():
        if name.lower() in ("signature-input", "signature", "content-digest"):
            put("structured_fields", value)
    head = [req["method"], req["url"]] + [f"{k}: {v}" for k, v in req["headers"].items()]
    put("verify_request", "\n".join(head) + "\n\n" + req.get("body", ""))
    put("payload_parse", req.get("body", ""))

env = json.load(open(os.path.join(VEC, "webhook-receiver-envelope.json")))
def walk(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("body", "payload") and isinstance(v, (dict, str)):
                put("payload_parse", v if isinstance(v, str) else json.dumps(v))
            walk(v)
    elif isinstance(node, list):
        for x in node:
            walk(x)
walk(env)

keys = json.load(open(os.path.join(VEC, "webhook-signing", "keys.json")))
put("jwk", json.dumps(keys))
for k in keys["keys"]:
    k = {kk: vv for kk, vv in k.items() if not kk.startswith("$")}
    if "_private_d_for_test_only" in k:
        priv = dict(k)
        priv["d"] = priv.pop("_private_d_for_test_only")
        put("jwk", json.dumps(priv))
        pub = {kk: vv for kk, vv in priv.items() if kk != "d"}
        put("jwk", json.dumps(pub))
for path in glob.glob(os.path.join(FIX, "keys", "*.json")):
    put("jwk", open(path, "rb").read())

for path in glob.glob(os.path.join(FIX, "keys", "*.pem")) + glob.glob(os.path.join(FIX, "bad-inputs", "*.pem")):
    put("pem", open(path, "rb").read())

# One body of each kind the receiver classifies, written by hand from the AdCP schemas.
for body in [
    {"idempotency_key": "whk_seed_revocation_01", "rights_id": "r1", "brand_id": "b1",
     "reason": "licence ended", "effective_at": "2026-04-18T12:00:00Z"},
    {"idempotency_key": "whk_seed_artifact_0001", "media_buy_id": "mb1", "batch_id": "b1",
     "artifacts": [{"artifact": {"property_id": {"type": "domain", "value": "news.example"},
                                 "artifact_id": "a1", "assets": [{"type": "text", "role": "title", "content": "x"}]},
                    "delivered_at": "2026-04-18T12:00:00Z"}]},
    {"idempotency_key": "whk_seed_collection_01", "event": "collection_list_changed",
     "list_id": "cl1", "changed_at": "2026-04-18T12:00:00Z", "signature": "hmac"},
    {"idempotency_key": "whk_seed_property_0001", "event": "property_list_changed",
     "list_id": "pl1", "changed_at": "2026-04-18T12:00:00Z"},
]:
    put("payload_parse", json.dumps(body))
