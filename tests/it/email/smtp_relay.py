"""An SMTP relay for herald's email tests, on aiosmtpd (PyPI), which herald did not write.

Usage: smtp_relay.py PORT USER PASSWORD [CERT KEY]

Listens on 127.0.0.1:PORT with AUTH PLAIN/LOGIN allowed over plain TCP (loopback only); with
CERT and KEY (PEM files) it requires STARTTLS before anything else, and AUTH over it. It
prints one JSON line per accepted message to stdout:
{"mail_from": ..., "rcpt_tos": [...], "data": "<the raw message>"}. It prints
{"ready": true} once it accepts connections, and stops when its stdin closes.
"""

import json
import ssl
import sys
import warnings

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
                    "tls": session.ssl is not None,
                    "data": envelope.content.decode("utf-8", "replace"),
                }
            ),
            flush=True,
        )
        return "250 OK queued"


def main():
    # Plain-text AUTH is what the loopback-only tests want; the warning is about real use.
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        return AuthResult(success=ok)

    tls = {}
    if len(sys.argv) > 5:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(sys.argv[4], sys.argv[5])
        if len(sys.argv) > 6 and sys.argv[6] == "implicit":
            tls = {"ssl_context": context}
        else:
            tls = {"tls_context": context, "require_starttls": True}
    controller = Controller(
        Recorder(),
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticator,
        auth_require_tls="tls_context" in tls,
        auth_required=True,
        **tls,
    )
    controller.start()
    print(json.dumps({"ready": True}), flush=True)
    try:
        sys.stdin.read()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
