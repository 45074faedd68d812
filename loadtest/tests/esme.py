#!/usr/bin/env python3
"""An ESME for the SMSC sink's test, on the `smpp34` package (pip install smpp34): a client
herald-loadtest did not write, with its own codec and session handling.

    esme.py --port P --stats-port S --submits N

Binds once with a wrong password (which must fail), then as a transceiver; submits N
messages to distinct numbers plus the first number again, in groups of --group at once, collects the ids answered and the
delivery receipts that come back (the library acknowledges them), unbinds, reads the sink's
`GET /stats`, and prints one JSON object:

    {"bad_password": "<error>", "ids": [...], "receipts": [{"text": ..., "tlvs": {...}}],
     "stats": {...}}
"""

import argparse
import asyncio
import json
import sys
import urllib.request

import smpp34


async def main(args):
    out = {}
    try:
        await smpp34.Client("127.0.0.1", args.port, "herald", "wrong", connect_timeout_ms=3000).connect()
        out["bad_password"] = None
    except Exception as e:  # the refusal, as the library reports it
        out["bad_password"] = str(e)
    client = smpp34.Client("127.0.0.1", args.port, "herald", "secret", bind_type="TRX",
                           window_size=8, connect_timeout_ms=3000)
    smsc = await client.connect()
    numbers = [f"86138{i:08d}" for i in range(args.submits)] + ["8613800000000"]
    # In groups of --group sent at once, each group answered before the next: the sink
    # must see exactly --group outstanding at most.
    answers = []
    for start in range(0, len(numbers), args.group):
        answers += await asyncio.gather(*[
            smsc.submit_sm(n, b"hello", source_addr="HERALD", source_addr_ton=5, dest_addr_ton=1,
                           dest_addr_npi=1, registered_delivery=1)
            for n in numbers[start:start + args.group]
        ])
    out["statuses"] = [a.command_status for a in answers]
    out["ids"] = [a.message_id for a in answers]
    receipts = []
    while len(receipts) < len(numbers):
        ev = await asyncio.wait_for(smsc.next(), timeout=5)
        if isinstance(ev, smpp34.Disconnected):
            break
        tlvs = {str(t.tag): (t.as_string() if t.tag == smpp34.TLV_RECEIPTED_MESSAGE_ID else t.as_int())
                for t in ev.tlvs}
        receipts.append({"esm_class": ev.esm_class, "source_addr": ev.source_addr,
                         "text": ev.short_message.decode("ascii", "replace"), "tlvs": tlvs})
    out["receipts"] = receipts
    await smsc.unbind()
    await asyncio.sleep(0.2)
    with urllib.request.urlopen(f"http://127.0.0.1:{args.stats_port}/stats", timeout=5) as r:
        out["stats"] = json.load(r)
    print(json.dumps(out))


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--stats-port", type=int, required=True)
    p.add_argument("--submits", type=int, default=20)
    p.add_argument("--group", type=int, default=7)
    asyncio.run(asyncio.wait_for(main(p.parse_args()), timeout=30))
