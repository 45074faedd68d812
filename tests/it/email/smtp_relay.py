"""An SMTP relay for herald's email tests, on aiosmtpd (PyPI), which herald did not write.

Usage: smtp_relay.py PORT USER PASSWORD

Listens on 127.0.0.1:PORT with AUTH PLAIN/LOGIN allowed over plain TCP (loopback only), and
prints one JSON line per accepted message to stdout:
{"mail_from": ..., "rcpt_tos": [...], "data": "<the raw message>"}. It prints
{"ready": true} once it accepts connections, and stops when its stdin closes.
"""

import json
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Recorder:
    async def handle_DATA(self, server, session, envelope):
        print(
            json.dumps(
                {
                    "mail_from": envelope.mail_from,
                    "rcpt_tos": envelope.rcpt_tos,
                    "authenticated": bool(session.authenticated),
                    "data": envelope.content.decode("utf-8", "replace"),
                }
            ),
            flush=True,
        )
        return "250 OK queued"


def main():
    port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        return AuthResult(success=ok)

    controller = Controller(
        Recorder(),
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticator,
        auth_require_tls=False,
        auth_required=True,
    )
    controller.start()
    print(json.dumps({"ready": True}), flush=True)
    try:
        sys.stdin.read()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
