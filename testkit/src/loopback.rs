//! Servers the tests play on loopback (a provider, a webhook receiver), and the numbered
//! contacts their jobs go to.

use std::net::SocketAddr;

/// Serves `app` over plain HTTP on `127.0.0.1:0` for as long as the runtime runs; answers
/// its address.
pub async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// A snapshot CSV of `n` Chinese mobile contacts `<prefix>0..`, opted in, numbered from
/// `+86131<first>`; and the inline audience of all of them.
pub fn numbered_contacts(prefix: &str, first: u64, n: usize) -> (String, serde_json::Value) {
    let mut csv = String::from("contact_id,phone,timezone,sms_consent\n");
    for i in 0..n {
        csv.push_str(&format!(
            "{prefix}{i},+86131{:08},Asia/Shanghai,opt_in\n",
            first + i as u64
        ));
    }
    let audience = (0..n)
        .map(|i| serde_json::json!({"contact_id": format!("{prefix}{i}")}))
        .collect();
    (csv, serde_json::Value::Array(audience))
}
