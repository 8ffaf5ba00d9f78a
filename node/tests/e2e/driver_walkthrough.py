#!/usr/bin/env python3
"""The official driver's walkthrough against a running Cairn node, unchanged driver code.

Usage: driver_walkthrough.py http://127.0.0.1:9984 ws://127.0.0.1:9985
Exits non-zero (with the failed step) on any mismatch; prints one line per step.
"""
import asyncio
import json
import sys
import time

import websockets
from bigchaindb_driver import BigchainDB
from bigchaindb_driver.crypto import generate_keypair
from bigchaindb_driver.exceptions import BadRequest, NotFoundError

url, ws_url = sys.argv[1], sys.argv[2]
bdb = BigchainDB(url)
alice, bob, carol = generate_keypair(), generate_keypair(), generate_keypair()


def step(msg):
    print("ok:", msg, flush=True)


def expect_rejected(send, tx, error_class, what):
    """Sends tx with the driver's send function; it must be refused with a 400 naming error_class."""
    try:
        send(tx)
    except BadRequest as e:
        assert error_class in str(e.info), e.info
        return
    raise AssertionError(f"{what} was accepted")


def wait_valid(txid, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            return bdb.transactions.retrieve(txid)
        except NotFoundError:
            time.sleep(0.05)
    raise AssertionError(f"{txid} not valid after {timeout}s")


info = bdb.info()
assert info["software"] == "Cairn" and info["public_key"], info
api = bdb.api_info()
assert api["streams"].endswith("/api/v1/streams/valid_transactions"), api
step("info and api_info")


async def listen(events, ready):
    async with websockets.connect(ws_url + "/api/v1/streams/valid_transactions") as ws:
        ready.set()
        while True:
            events.append(json.loads(await ws.recv()))


async def main():
    events, ready = [], asyncio.Event()
    listener = asyncio.create_task(listen(events, ready))
    await asyncio.wait_for(ready.wait(), 10)
    loop = asyncio.get_running_loop()

    # 1. CREATE an asset with metadata, signed by the driver
    bicycle = {"data": {"bicycle": {"serial_number": "abcd1234", "manufacturer": "bkfab"}}}
    prepared = bdb.transactions.prepare(operation="CREATE", signers=alice.public_key, asset=bicycle,
                                        metadata={"planet": "earth"})
    signed = bdb.transactions.fulfill(prepared, private_keys=alice.private_key)
    sent = await loop.run_in_executor(None, lambda: bdb.transactions.send_commit(signed))
    assert sent == signed, "node must echo the transaction"
    step(f"CREATE {signed['id']} sent with mode=commit")
    got = await loop.run_in_executor(None, wait_valid, signed["id"])
    assert got == signed, "read back must equal what was sent"
    assert bdb.blocks.get(txid=signed["id"]) is not None
    step("CREATE read back byte-equal; block lookup works")

    # 2. TRANSFER it to bob (async mode), wait until valid
    out = signed["outputs"][0]
    transfer_input = {"fulfillment": out["condition"]["details"],
                      "fulfills": {"output_index": 0, "transaction_id": signed["id"]},
                      "owners_before": out["public_keys"]}
    prepared_t = bdb.transactions.prepare(operation="TRANSFER", asset={"id": signed["id"]},
                                          inputs=transfer_input, recipients=bob.public_key)
    transfer = bdb.transactions.fulfill(prepared_t, private_keys=alice.private_key)
    bdb.transactions.send_async(transfer)
    got_t = await loop.run_in_executor(None, wait_valid, transfer["id"])
    assert got_t == transfer
    step(f"TRANSFER {transfer['id']} valid and read back")

    # 3. by asset id, with and without operation filter
    assert [t["id"] for t in bdb.transactions.get(asset_id=signed["id"])] == [signed["id"], transfer["id"]]
    assert [t["id"] for t in bdb.transactions.get(asset_id=signed["id"], operation="TRANSFER")] == [transfer["id"]]
    step("transactions by asset_id and operation")

    # 4. double spend: alice spends the same output again, to carol: rejected with DoubleSpend
    prepared_ds = bdb.transactions.prepare(operation="TRANSFER", asset={"id": signed["id"]},
                                           inputs=transfer_input, recipients=carol.public_key)
    double = bdb.transactions.fulfill(prepared_ds, private_keys=alice.private_key)
    expect_rejected(bdb.transactions.send_commit, double, "DoubleSpend", "double spend")
    step("double spend rejected (DoubleSpend)")

    # 5. outputs
    assert bdb.outputs.get(bob.public_key, spent=False) == [{"transaction_id": transfer["id"], "output_index": 0}]
    assert bdb.outputs.get(alice.public_key, spent=True) == [{"transaction_id": signed["id"], "output_index": 0}]
    assert bdb.outputs.get(alice.public_key, spent=False) == []
    step("outputs by public key and spent flag")

    # 6. search assets and metadata
    found = bdb.assets.get(search="bkfab")
    assert {"id": signed["id"], "data": bicycle["data"]} in found, found
    assert {"id": signed["id"], "metadata": {"planet": "earth"}} in bdb.metadata.get(search="earth")
    step("asset and metadata search")

    # 7. the websocket stream saw both transactions
    deadline = time.time() + 10
    while time.time() < deadline and {e["transaction_id"] for e in events} < {signed["id"], transfer["id"]}:
        await asyncio.sleep(0.05)
    seen = {e["transaction_id"]: e for e in events}
    assert seen[signed["id"]]["asset_id"] == signed["id"] and seen[transfer["id"]]["asset_id"] == signed["id"], events
    step("websocket stream delivered both valid transactions")

    # 8. a transaction edited after signing is refused with a reason
    bad = json.loads(json.dumps(transfer))
    bad["metadata"] = {"tampered": True}
    expect_rejected(bdb.transactions.send_async, bad, "InvalidHash", "tampered transaction")
    step("tampered transaction rejected (InvalidHash)")

    # 9. a made-up id (well-formed or not) is NotFoundError, as with BigchainDB
    for made_up in ["0" * 64, "not-a-transaction-id"]:
        try:
            bdb.transactions.retrieve(made_up)
        except NotFoundError as e:
            assert e.status_code == 404 and e.info == {"message": "Not found", "status": 404}, e.info
        else:
            raise AssertionError(f"retrieving {made_up!r} did not raise NotFoundError")
    step("made-up transaction ids raise NotFoundError")

    # 10. key names BigchainDB refuses in asset data and metadata, signed by the driver
    for asset, metadata, bad_key, where in [
        ({"data": {"$where": 1}}, None, "$where", "asset"),
        ({"data": {"ok": [{"a.b": 1}]}}, None, "a.b", "asset"),
        ({"data": {"ok": 1}}, {"deep": {"x\u0000y": 1}}, "x\u0000y", "metadata"),
    ]:
        p = bdb.transactions.prepare(operation="CREATE", signers=alice.public_key, asset=asset, metadata=metadata)
        t = bdb.transactions.fulfill(p, private_keys=alice.private_key)
        try:
            bdb.transactions.send_async(t)
        except BadRequest as e:
            want = (f'Invalid transaction (ValidationError): Invalid key name "{bad_key}" in {where} object. '
                    'The key name cannot contain characters ".", "$" or null characters')
            assert e.info["message"] == want, e.info
        else:
            raise AssertionError(f"key {bad_key!r} in {where} was accepted")
    step("forbidden key names in asset and metadata rejected (ValidationError)")
    listener.cancel()


asyncio.run(main())
print("driver walkthrough: all steps passed")
