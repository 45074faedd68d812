//! Making and ending a bind: connect, `bind_transceiver` and its answer, `unbind`.

use futures::{SinkExt, StreamExt};
use rusmpp::{Command, CommandStatus, Pdu};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::codec::Framed;

use super::{Conn, SessionSettings};
use crate::provider::smpp::pdu::{self, Codec, Frame};
use crate::provider::smpp::status::{self, ESME_ROK};

/// Connects and binds as a transceiver; the error says why not, in words for the log.
pub(super) async fn connect_and_bind(s: &SessionSettings) -> Result<Conn, String> {
    let stream = tokio::time::timeout(
        s.connect_timeout,
        TcpStream::connect((s.host.as_str(), s.port)),
    )
    .await
    .map_err(|_| "connect timed out".to_string())?
    .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let mut conn = Framed::new(stream, Codec::default());
    let bind = pdu::bind_transceiver(&s.bind).map_err(|e| e.to_string())?;
    conn.send(Command::new(CommandStatus::EsmeRok, 1, bind))
        .await
        .map_err(|e| format!("sending bind_transceiver: {e}"))?;
    let deadline = Instant::now() + s.response_timeout;
    loop {
        let frame = tokio::time::timeout_at(deadline, conn.next())
            .await
            .map_err(|_| "no bind_transceiver_resp in time".to_string())?;
        match frame {
            None => return Err("connection closed during bind".into()),
            Some(Err(e)) => return Err(format!("reading the bind answer: {e}")),
            Some(Ok(Frame::Command(c))) if c.sequence_number == 1 => {
                let code = pdu::status_code(c.status);
                return if code == ESME_ROK && matches!(c.pdu(), Some(Pdu::BindTransceiverResp(_))) {
                    Ok(conn)
                } else if code == ESME_ROK {
                    Err(format!("unexpected answer to bind: {:?}", c.id()))
                } else {
                    Err(format!("bind refused: {}", status::describe(code)))
                };
            }
            Some(Ok(Frame::Command(c))) if matches!(c.pdu(), Some(Pdu::EnquireLink)) => {
                let resp = pdu::response(c.sequence_number, ESME_ROK, Pdu::EnquireLinkResp);
                conn.send(resp).await.map_err(|e| e.to_string())?;
            }
            Some(Ok(_)) => {}
        }
    }
}

/// Sends `unbind` and waits (at most the response timeout) for `unbind_resp`.
pub(super) async fn unbind(s: &SessionSettings, conn: &mut Conn, n: u32) {
    if conn
        .send(Command::new(CommandStatus::EsmeRok, n, Pdu::Unbind))
        .await
        .is_err()
    {
        return;
    }
    let deadline = Instant::now() + s.response_timeout;
    while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, conn.next()).await {
        if let Frame::Command(c) = frame {
            if matches!(c.pdu(), Some(Pdu::UnbindResp)) || c.sequence_number == n {
                break;
            }
        }
    }
    tracing::info!(provider = %s.provider, bind = s.index, "unbound");
}
