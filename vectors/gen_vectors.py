#!/usr/bin/env python3
"""Generates the compatibility vectors Cairn is pinned to, using the official BigchainDB driver
(bigchaindb_driver 0.6.2) and the Python `cryptoconditions` package (0.8.0).

Run: .venv/bin/python vectors/gen_vectors.py   (after vectors/setup.sh)
Writes vectors/*.json. Ed25519 is deterministic and the keys come from fixed seeds, so the
output is identical on every run; CI regenerates and diffs it.
"""
import base64
import hashlib
import json
import os

import base58
import nacl.signing
from bigchaindb_driver.common.utils import serialize
from bigchaindb_driver.offchain import fulfill_transaction, prepare_transaction
from cryptoconditions import Ed25519Sha256, Fulfillment, PreimageSha256, ThresholdSha256

OUT = os.path.dirname(os.path.abspath(__file__))


def keypair(n):
    """A deterministic keypair: seed = sha256("cairn-test-key-<n>")."""
    seed = hashlib.sha256(f"cairn-test-key-{n}".encode()).digest()
    sk = nacl.signing.SigningKey(seed)
    return base58.b58encode(seed).decode(), base58.b58encode(sk.verify_key.encode()).decode()


KEYS = [keypair(i) for i in range(6)]


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def write(name, data):
    with open(os.path.join(OUT, name), "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, ensure_ascii=False, sort_keys=True)
        f.write("\n")


def serialization_vectors():
    values = [
        {"b": 1, "a": 2, "c": {"z": None, "y": [True, False, "x"]}},
        {"msg": "Hello BigchainDB!"},
        {"unicode": "héllo wörld ☃ 日本語 😀", "ключ": "значение", "😀": 1, "é": 2, "z": 3},
        {"ctrl": "tab\there nl\nhere cr\r bs\b ff\f nul\u0000 us\u001f del\u007f quote\" slash\\ solidus/"},
        {"ints": [0, -1, 1, 9007199254740993, -9223372036854775808, 18446744073709551615]},
        {"floats": [0.5, 1.0, -2.5, 1e20, 1e21, 1e-7, 0.0001, 123.456, 3.14159, 1.5e300, 0.1, 2.0e-300, 6.807204961042007e+187, 5e-324, 1.7976931348623157e308]},
        {"nested": [[[]], {}, [{}], ""]},
        {"keys": {"aa": 1, "a": 2, "B": 3, "b": 4, "_": 5, "0": 6}},
    ]
    return [{"value": v, "canonical": serialize(v)} for v in values]


def condition_vectors():
    msg = hashlib.sha3_256(b"cairn condition vector").digest()
    out = []
    seeds = [base58.b58decode(k[0]) for k in KEYS]

    def ed(i, sign=True):
        f = Ed25519Sha256(public_key=base58.b58decode(KEYS[i][1]))
        if sign:
            f.sign(msg, seeds[i])
        return f

    def record(name, f, details=None):
        c = f.condition
        out.append({
            "name": name,
            "message_hex": msg.hex(),
            "condition_uri": f.condition_uri,
            "condition_binary_hex": c.serialize_binary().hex(),
            "cost": c.cost,
            "fulfillment_uri": f.serialize_uri(),
            "details": details,
        })

    record("ed25519", ed(0), {"type": "ed25519-sha-256", "public_key": KEYS[0][1]})
    # 2-of-3, signed by keys 0 and 2, key 1 left as a bare condition
    t = ThresholdSha256(threshold=2)
    t.add_subfulfillment(ed(0)); t.add_subcondition(ed(1, False).condition); t.add_subfulfillment(ed(2))
    record("threshold-2-of-3", t)
    # 2-of-3 with all three signed: the encoder must keep only two fulfillments
    t = ThresholdSha256(threshold=2)
    for i in range(3):
        t.add_subfulfillment(ed(i))
    record("threshold-2-of-3-oversigned", t)
    # n-of-n as BigchainDB builds for a multi-owner output
    t = ThresholdSha256(threshold=3)
    for i in (3, 4, 5):
        t.add_subfulfillment(ed(i))
    record("threshold-3-of-3", t, {"type": "threshold-sha-256", "threshold": 3, "subconditions": [
        {"type": "ed25519-sha-256", "public_key": KEYS[i][1]} for i in (3, 4, 5)]})
    # nested: 2-of-{ed0, 1-of-{ed1, ed2}, preimage}
    inner = ThresholdSha256(threshold=1)
    inner.add_subfulfillment(ed(1)); inner.add_subcondition(ed(2, False).condition)
    outer = ThresholdSha256(threshold=2)
    outer.add_subfulfillment(ed(0)); outer.add_subfulfillment(inner)
    outer.add_subcondition(PreimageSha256(preimage=b"open sesame").condition)
    record("threshold-nested", outer)
    record("preimage", PreimageSha256(preimage=b"open sesame"))
    record("preimage-empty", PreimageSha256(preimage=b""))
    # round-trip check inside the oracle itself
    for v in out:
        assert Fulfillment.from_uri(v["fulfillment_uri"]).condition_uri == v["condition_uri"]
    return out


def tx_vectors():
    (a_sk, a_pk), (b_sk, b_pk), (c_sk, c_pk) = KEYS[0], KEYS[1], KEYS[2]
    txs = []

    def make(name, signers, keys, **kw):
        prepared = prepare_transaction(signers=signers, **kw)
        signed = fulfill_transaction(prepared, private_keys=keys)
        txs.append({"name": name, "tx": signed, "signing_keys": keys if isinstance(keys, list) else [keys]})
        return signed

    create = make("create-simple", a_pk, a_sk, operation="CREATE",
                  asset={"data": {"msg": "Hello Cairn!", "n": 1}}, metadata={"sequence": 0})
    make("create-unicode", a_pk, a_sk, operation="CREATE",
         asset={"data": {"título": "café ☕", "emoji": "😀", "list": [1, 2.5, None, True]}}, metadata=None)
    div = make("create-divisible", a_pk, a_sk, operation="CREATE", recipients=[([a_pk], 10), ([b_pk], 5)],
               asset={"data": {"token": "cairn-coin"}}, metadata={"note": "divisible"})
    multi = make("create-multi-owner", [a_pk, b_pk], [a_sk, b_sk], operation="CREATE",
                 recipients=[([a_pk, b_pk], 3)], asset={"data": {"shared": True}}, metadata=None)

    def spend(tx, idx):
        out = tx["outputs"][idx]
        return {"fulfillment": out["condition"]["details"],
                "fulfills": {"output_index": idx, "transaction_id": tx["id"]},
                "owners_before": out["public_keys"]}

    t1 = make("transfer-simple", a_pk, a_sk, operation="TRANSFER", inputs=spend(create, 0),
              recipients=b_pk, asset={"id": create["id"]}, metadata={"sequence": 1})
    make("transfer-chain", b_pk, b_sk, operation="TRANSFER", inputs=spend(t1, 0),
         recipients=c_pk, asset={"id": create["id"]}, metadata=None)
    make("transfer-split", a_pk, a_sk, operation="TRANSFER", inputs=spend(div, 0),
         recipients=[([b_pk], 4), ([c_pk], 6)], asset={"id": div["id"]}, metadata=None)
    # two inputs owned by different keys, merged into one output
    make("transfer-multi-input", [a_pk, b_pk], [a_sk, b_sk], operation="TRANSFER",
         inputs=[spend(div, 0), spend(div, 1)], recipients=[([c_pk], 15)], asset={"id": div["id"]},
         metadata=None)
    make("transfer-from-threshold", [a_pk, b_pk], [a_sk, b_sk], operation="TRANSFER",
         inputs=spend(multi, 0), recipients=[([c_pk, a_pk], 3)], asset={"id": multi["id"]}, metadata=None)
    return txs


if __name__ == "__main__":
    write("keys.json", [{"private_key": sk, "public_key": pk} for sk, pk in KEYS])
    write("serialization.json", serialization_vectors())
    write("conditions.json", condition_vectors())
    write("transactions.json", tx_vectors())
    print("wrote vectors to", OUT)
