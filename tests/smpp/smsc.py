#!/usr/bin/env python3
"""An SMSC for herald's SMPP tests, built on the `smpp34` package (pip install smpp34): an
SMPP 3.4 server herald did not write, with its own codec and session handling.

It accepts every bind (transceiver, transmitter or receiver), answers each submit_sm and reports on stdout, one JSON
object per line, what it saw:

    {"event": "ready", "port": 2775}
    {"event": "bind", "session": "...", "system_id": "herald", "can_receive": true}
    {"event": "submit_sm", "session": "...", "source_addr": "HERALD", "source_addr_ton": 5,
     "source_addr_npi": 0, "destination_addr": "8613...", "dest_addr_ton": 1,
     "dest_addr_npi": 1, "esm_class": 64, "data_coding": 0, "registered_delivery": 1,
     "short_message": "<hex>", "tlvs": [[526, "<hex>"]], "status": 0, "message_id": "1A"}
    {"event": "deliver_sm_resp", "kind": "receipt" | "mo", "status": 0}
    {"event": "unbound", "session": "..."}

Options: --receipts none|tlv|text (a delivery receipt per accepted submit_sm that asked for
one), --ids hex|decimal (how message ids are written), --receipt-ids decimal (write the
receipt's id in decimal whatever --ids says), --throttle-first N (answer the first N submit_sm
with ESME_RTHROTTLED), --queue-full-next N (answer the N after those with ESME_RMSGQFUL), --reject-dest DIGITS (answer submit_sm to that number with
ESME_RINVDSTADR), --receipt-attempts N (deliver a receipt answered with an error again, 0.2 s
later, up to N times in all), --answer-after-ms N (answer each accepted submit_sm N ms after
it arrived, as a loaded SMSC does: herald's window fills and submits queue behind it).

smpp34's server does not serve query_sm. With --query-state N (an SMPP 3.4 message_state,
section 5.2.28) the simulator listens through a thin PDU-framing relay in front of it that
answers query_sm itself, as section 4.8 specifies: query_sm_resp with the message_id, an
empty final_date, message_state N and error_code 0 for an id the simulator accepted, else a
bodiless query_sm_resp with ESME_RQUERYFAIL. Each query is reported:

    {"event": "query_sm", "message_id": "A0001", "status": 0}

With --tls-cert FILE --tls-key FILE the relay speaks TLS (Python's ssl module) to the ESME.

Commands on stdin, one JSON object per line:

    {"cmd": "mo", "from": "8613123079337", "to": "HERALD", "text": "退订", "ucs2": true}

sends a mobile-originated deliver_sm on the most recent bind. With "parts": ["退", "订，谢谢"]
instead of "text" it sends one deliver_sm per part, concatenated as "concat" says: "udh8"
(IEI 0x00, 8-bit "ref"), "udh16" (IEI 0x08, 16-bit "ref") or "sar" (the SAR TLVs), in the
order "order" lists (part indexes, default in order; parts left out are never sent). It exits
when stdin closes.
"""

import argparse
import asyncio
import json
import os
import socket
import ssl
import sys

import smpp34

ESME_RINVDSTADR = 0x0B
ESME_RQUERYFAIL = 0x67
QUERY_SM = 0x00000003
QUERY_SM_RESP = 0x80000003


async def read_pdu(reader):
    head = await reader.readexactly(4)
    length = int.from_bytes(head, "big")
    return head + await reader.readexactly(length - 4)


async def relay(args, inner_port, accepted):
    """Listens on args.port (TLS when asked) and relays whole PDUs to the smpp34 server on
    inner_port, answering query_sm on the way."""
    context = None
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)

    async def handle(esme_r, esme_w):
        try:
            smsc_r, smsc_w = await asyncio.open_connection("127.0.0.1", inner_port)
        except OSError:
            esme_w.close()
            return
        lock = asyncio.Lock()

        async def to_esme(pdu):
            async with lock:
                esme_w.write(pdu)
                await esme_w.drain()

        async def upstream():
            try:
                while True:
                    pdu = await read_pdu(esme_r)
                    if int.from_bytes(pdu[4:8], "big") == QUERY_SM and args.query_state is not None:
                        message_id = pdu[16:].split(b"\0", 1)[0].decode("ascii", "replace")
                        if message_id in accepted:
                            status = 0
                            body = message_id.encode() + b"\0" + b"\0" + bytes([args.query_state, 0])
                        else:
                            status, body = ESME_RQUERYFAIL, b""
                        emit(event="query_sm", message_id=message_id, status=status)
                        head = (16 + len(body)).to_bytes(4, "big") + QUERY_SM_RESP.to_bytes(4, "big")
                        await to_esme(head + status.to_bytes(4, "big") + pdu[12:16] + body)
                    else:
                        smsc_w.write(pdu)
                        await smsc_w.drain()
            except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
                pass
            finally:
                smsc_w.close()

        async def downstream():
            try:
                while True:
                    await to_esme(await read_pdu(smsc_r))
            except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
                pass
            finally:
                esme_w.close()

        await asyncio.gather(upstream(), downstream())

    return await asyncio.start_server(handle, "127.0.0.1", args.port, ssl=context)


def emit(**fields):
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


async def serve(args):
    accepted = set()
    port = args.port
    relayed = args.query_state is not None or args.tls_cert
    if relayed:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    server = smpp34.Server(host="127.0.0.1", port=port, system_id="SIM")
    await server.start()
    if relayed:
        front = await relay(args, port, accepted)
    emit(event="ready", port=args.port)
    sessions = {}
    latest = {"esme": None}
    counter = {"ids": 0, "submits": 0}
    background = set()

    def later(coro):
        task = asyncio.ensure_future(coro)
        background.add(task)
        task.add_done_callback(background.discard)

    async def receipt(esme, ev, message_id):
        rid = message_id
        if args.receipt_ids == "decimal":
            rid = str(int(message_id, 16)) if args.ids == "hex" else message_id
        if args.receipts == "tlv":
            tlvs = [
                smpp34.Tlv(smpp34.TLV_RECEIPTED_MESSAGE_ID, rid.encode() + b"\0"),
                smpp34.Tlv(smpp34.TLV_MESSAGE_STATE, bytes([2])),
            ]
            body = b""
        else:
            tlvs = []
            body = (
                f"id:{rid} sub:001 dlvrd:001 submit date:2611230400 "
                f"done date:2611230401 stat:DELIVRD err:000 text:"
            ).encode()
        # Like an SMSC, a receipt the ESME could not take now is delivered again later.
        for _ in range(args.receipt_attempts):
            resp = await esme.deliver_sm(
                ev.source_addr or "HERALD",
                body,
                source_addr=ev.destination_addr,
                source_addr_ton=1,
                source_addr_npi=1,
                esm_class=0x04,
                tlvs=tlvs,
            )
            emit(event="deliver_sm_resp", kind="receipt", status=resp.command_status)
            if resp.command_status == 0:
                break
            await asyncio.sleep(0.2)

    async def accept(ev, message_id):
        if args.answer_after_ms:
            await asyncio.sleep(args.answer_after_ms / 1000)
        ev.accept(message_id=message_id)
        esme = sessions.get(ev.session_id)
        if esme is not None and not esme.can_receive:
            # A transmitter's receipts go to a receiver bind of the same system_id.
            esme = next((e for e in sessions.values()
                         if e.can_receive and e.system_id == esme.system_id), None)
        if args.receipts != "none" and ev.registered_delivery & 0x03 and esme:
            await receipt(esme, ev, message_id)

    async def mo(cmd):
        esme = latest["esme"]
        if esme is None:
            emit(event="error", message="no bind for mo")
            return
        ucs2 = cmd.get("ucs2", False)

        def encode(text):
            return text.encode("utf-16-be") if ucs2 else text.encode("ascii")

        texts = cmd.get("parts") or [cmd["text"]]
        total = len(texts)
        ref = cmd.get("ref", 1)
        concat = cmd.get("concat", "udh8")
        for i in cmd.get("order", range(total)):
            body, esm_class, tlvs = encode(texts[i]), 0, []
            if total > 1 and concat == "udh8":
                body = bytes([5, 0x00, 3, ref & 0xFF, total, i + 1]) + body
                esm_class = 0x40
            elif total > 1 and concat == "udh16":
                body = bytes([6, 0x08, 4, ref >> 8 & 0xFF, ref & 0xFF, total, i + 1]) + body
                esm_class = 0x40
            elif total > 1:
                tlvs = [
                    smpp34.Tlv(smpp34.TLV_SAR_MSG_REF_NUM, ref.to_bytes(2, "big")),
                    smpp34.Tlv(smpp34.TLV_SAR_TOTAL_SEGMENTS, bytes([total])),
                    smpp34.Tlv(smpp34.TLV_SAR_SEGMENT_SEQNUM, bytes([i + 1])),
                ]
            resp = await esme.deliver_sm(
                cmd.get("to", "HERALD"),
                body,
                source_addr=cmd["from"],
                source_addr_ton=1,
                source_addr_npi=1,
                esm_class=esm_class,
                data_coding=8 if ucs2 else 0,
                tlvs=tlvs,
            )
            emit(event="deliver_sm_resp", kind="mo", status=resp.command_status)

    async def commands():
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                # The test is gone: leave without the extension's teardown.
                os._exit(0)
            line = line.strip()
            if not line:
                continue
            cmd = json.loads(line)
            if cmd.get("cmd") == "mo":
                later(mo(cmd))

    later(commands())
    while True:
        ev = await server.next()
        if isinstance(ev, smpp34.Esme):
            sessions[ev.session_id] = ev
            if ev.can_receive:
                latest["esme"] = ev
            emit(event="bind", session=ev.session_id, system_id=ev.system_id,
                 can_receive=ev.can_receive)
        elif isinstance(ev, smpp34.SubmitSmEvent):
            counter["submits"] += 1
            record = dict(
                event="submit_sm",
                session=ev.session_id,
                source_addr=ev.source_addr,
                source_addr_ton=ev.source_addr_ton,
                source_addr_npi=ev.source_addr_npi,
                destination_addr=ev.destination_addr,
                dest_addr_ton=ev.dest_addr_ton,
                dest_addr_npi=ev.dest_addr_npi,
                esm_class=ev.esm_class,
                data_coding=ev.data_coding,
                registered_delivery=ev.registered_delivery,
                short_message=ev.short_message.hex(),
                tlvs=[[t.tag, t.value.hex()] for t in ev.tlvs],
            )
            if counter["submits"] <= args.throttle_first:
                ev.reject(smpp34.ESME_RTHROTTLED)
                emit(status=smpp34.ESME_RTHROTTLED, message_id=None, **record)
                continue
            if counter["submits"] <= args.throttle_first + args.queue_full_next:
                ev.reject(smpp34.ESME_RMSGQFUL)
                emit(status=smpp34.ESME_RMSGQFUL, message_id=None, **record)
                continue
            if args.reject_dest and ev.destination_addr == args.reject_dest:
                ev.reject(ESME_RINVDSTADR)
                emit(status=ESME_RINVDSTADR, message_id=None, **record)
                continue
            counter["ids"] += 1
            n = counter["ids"]
            message_id = f"{n + 0xA0000:X}" if args.ids == "hex" else str(n + 1000000)
            accepted.add(message_id)
            emit(status=0, message_id=message_id, **record)
            later(accept(ev, message_id))
        elif isinstance(ev, smpp34.Unbound):
            sessions.pop(ev.session_id, None)
            emit(event="unbound", session=ev.session_id)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--receipts", choices=["none", "tlv", "text"], default="none")
    p.add_argument("--ids", choices=["hex", "decimal"], default="hex")
    p.add_argument("--receipt-ids", choices=["same", "decimal"], default="same")
    p.add_argument("--throttle-first", type=int, default=0)
    p.add_argument("--queue-full-next", type=int, default=0)
    p.add_argument("--reject-dest", default="")
    p.add_argument("--receipt-attempts", type=int, default=10)
    p.add_argument("--answer-after-ms", type=int, default=0)
    p.add_argument("--query-state", type=int, default=None)
    p.add_argument("--tls-cert", default="")
    p.add_argument("--tls-key", default="")
    asyncio.run(serve(p.parse_args()))


if __name__ == "__main__":
    main()
