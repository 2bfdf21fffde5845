//! Stream limits on real loopback QUIC: the defaults must let a client hold
//! far more than quinn's default 100 streams open at once (v1 clients open 40
//! at connect), and let the server open one uni stream per subscription.

mod common;

use common::{within, TestServer};
use felix_transport::quinn;
use felix_transport::{
    client_endpoint_for, server_endpoint, ClientOptions, ClientTls, ServerTls, TransportConfig,
    TransportError,
};

/// Well above quinn's default limit of 100, so this fails if our limits are
/// not applied.
const STREAMS: usize = 300;

#[tokio::test]
async fn client_can_hold_many_bidi_streams_open_at_once() {
    let server = TestServer::echo();
    let opts = ClientOptions::new(ClientTls::CaFile(server.ca_path.clone()));
    let client = client_endpoint_for(server.addr, &opts).unwrap();
    let conn = within(
        "handshake",
        client.connect(server.addr, "localhost").unwrap(),
    )
    .await
    .unwrap();

    // Open every stream and send on it before finishing any, so all of them
    // are concurrently open from the server's point of view; with a limit
    // below STREAMS, open_bi would wait for credit forever.
    let mut streams = Vec::with_capacity(STREAMS);
    for i in 0..STREAMS {
        let (mut send, recv) = within("open_bi", conn.open_bi()).await.unwrap();
        send.write_all(&(i as u32).to_be_bytes()).await.unwrap();
        streams.push((send, recv));
    }
    for (send, _) in &mut streams {
        send.finish().unwrap();
    }
    for (i, (_, mut recv)) in streams.into_iter().enumerate() {
        let echoed = within("echo", recv.read_to_end(16)).await.unwrap();
        assert_eq!(echoed, (i as u32).to_be_bytes());
    }
}

#[tokio::test]
async fn server_can_open_many_uni_streams_towards_client() {
    let server = TestServer::with_handler(|conn: quinn::Connection| async move {
        let mut open = Vec::with_capacity(STREAMS);
        for i in 0..STREAMS {
            let Ok(mut send) = conn.open_uni().await else {
                return;
            };
            if send.write_all(&(i as u32).to_be_bytes()).await.is_err() {
                return;
            }
            open.push(send);
        }
        // Finish only once all are open: they are concurrently live.
        for mut send in open {
            let _ = send.finish();
        }
        let _ = conn.closed().await;
    });
    let opts = ClientOptions::new(ClientTls::CaFile(server.ca_path.clone()));
    let client = client_endpoint_for(server.addr, &opts).unwrap();
    let conn = within(
        "handshake",
        client.connect(server.addr, "localhost").unwrap(),
    )
    .await
    .unwrap();
    let mut seen = vec![false; STREAMS];
    for _ in 0..STREAMS {
        let mut recv = within("accept_uni", conn.accept_uni()).await.unwrap();
        let data = within("read uni", recv.read_to_end(16)).await.unwrap();
        let i = u32::from_be_bytes(data.try_into().unwrap()) as usize;
        seen[i] = true;
    }
    assert!(seen.iter().all(|s| *s));
}

#[tokio::test]
async fn server_refuses_bidi_limit_below_v1_connect_streams() {
    let dir = common::TempDir::new("limit");
    let tls = ServerTls::generate_dev(&dir.path().join("ca.pem")).unwrap();
    let cfg = TransportConfig {
        max_concurrent_bidi_streams: 16,
        ..TransportConfig::default()
    };
    let err = server_endpoint("127.0.0.1:0".parse().unwrap(), tls, &cfg).unwrap_err();
    assert!(matches!(err, TransportError::InvalidConfig(_)), "{err:?}");
}
