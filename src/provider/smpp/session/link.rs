//! Making and ending a bind: connect (TLS when configured), the bind of its role and its
//! answer, `unbind`.

use futures::{SinkExt, StreamExt};
use rusmpp::{Command, CommandStatus, Pdu};
use tokio::time::Instant;
use tokio_util::codec::Framed;

use super::{transport, Conn, SessionSettings};
use crate::provider::smpp::pdu::{self, Codec, Frame};
use crate::provider::smpp::status::{self, ESME_ROK};

/// Connects and binds in the bind's role; the error says why not, in words for the log.
pub(super) async fn connect_and_bind(s: &SessionSettings) -> Result<Conn, String> {
    let stream = transport::connect(&s.host, s.port, s.connect_timeout, s.tls.as_deref()).await?;
    let mut conn = Framed::new(stream, Codec::default());
    let bind = pdu::bind(&s.bind, s.role).map_err(|e| e.to_string())?;
    conn.send(Command::new(CommandStatus::EsmeRok, 1, bind))
        .await
        .map_err(|e| format!("sending the bind: {e}"))?;
    let deadline = Instant::now() + s.response_timeout;
    loop {
        let frame = tokio::time::timeout_at(deadline, conn.next())
            .await
            .map_err(|_| "no answer to the bind in time".to_string())?;
        match frame {
            None => return Err("connection closed during bind".into()),
            Some(Err(e)) => return Err(format!("reading the bind answer: {e}")),
            Some(Ok(Frame::Command(c))) if c.sequence_number == 1 => {
                let code = pdu::status_code(c.status);
                return if code == ESME_ROK && c.pdu().is_some_and(|p| pdu::is_bind_resp(p, s.role))
                {
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
