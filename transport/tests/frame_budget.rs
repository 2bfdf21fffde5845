//! The per-connection budget for unfinished frames (`FrameReader::with_budget`) on real
//! loopback QUIC: a frame's room is held from its header until it is handed out, a reader
//! without room waits for the budget's bound and then fails alone, and the room comes back.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::within;
use felix_transport::framed::{FrameBudget, FrameReader, ReadFrameError};
use felix_transport::TransportConfig;
use felix_transport::{client_endpoint_for, server_endpoint, ClientOptions, ClientTls, ServerTls};
use felix_wire::frame::{MAGIC, VERSION};

fn header(len: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(12);
    h.extend_from_slice(&MAGIC.to_be_bytes());
    h.extend_from_slice(&VERSION.to_be_bytes());
    h.extend_from_slice(&0u16.to_be_bytes());
    h.extend_from_slice(&len.to_be_bytes());
    h
}

#[tokio::test]
async fn a_reader_without_room_waits_for_the_bound_then_fails_alone_and_room_comes_back() {
    let dir = common::TempDir::new("budget");
    let tls = ServerTls::generate_dev(&dir.path().join("ca.pem")).unwrap();
    let server = server_endpoint(
        "127.0.0.1:0".parse().unwrap(),
        tls,
        &TransportConfig::default(),
    )
    .unwrap();
    let addr = server.local_addr().unwrap();
    let opts = ClientOptions::new(ClientTls::CaFile(dir.path().join("ca.pem")));
    let client = client_endpoint_for(addr, &opts).unwrap();
    let (conn, incoming) = tokio::join!(
        async { client.connect(addr, "localhost").unwrap().await.unwrap() },
        async { server.accept().await.unwrap().await.unwrap() }
    );
    let wait = Duration::from_millis(300);
    let budget: Arc<FrameBudget> = FrameBudget::new(1_000, wait, None);
    assert_eq!(budget.wait(), wait);

    // `a` declares 800 bytes and sends half: its reader holds the 800 from the header on.
    let (mut a_send, _a_recv) = conn.open_bi().await.unwrap();
    a_send.write_all(&header(800)).await.unwrap();
    a_send.write_all(&[b'a'; 400]).await.unwrap();
    let (_s, recv) = within("accept a", incoming.accept_bi()).await.unwrap();
    let mut a = FrameReader::with_budget(recv, 1_000, budget.clone());
    let a_task = tokio::spawn(async move {
        let f = a.next().await;
        (a, f)
    });
    let b = budget.clone();
    within("a's room reserved", async {
        while b.used() < 800 {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(budget.used(), 800, "the declared length, not what arrived");

    // `b` declares 500 more (only its header has arrived): no room. It waits the bound, then
    // fails alone. (A frame that arrives whole in one read is handed out without waiting.)
    let (mut b_send, _b_recv) = conn.open_bi().await.unwrap();
    b_send.write_all(&header(500)).await.unwrap();
    let (_s, recv) = within("accept b", incoming.accept_bi()).await.unwrap();
    let mut b_reader = FrameReader::with_budget(recv, 1_000, budget.clone());
    match within("b gives up", b_reader.next()).await {
        Err(ReadFrameError::Overloaded { needed, waited }) => {
            assert_eq!(needed, 500);
            assert!(
                waited >= wait,
                "gave up after {waited:?}, before the bound {wait:?}"
            );
        }
        other => panic!("expected Overloaded, got {other:?}"),
    }
    drop(b_reader);
    assert_eq!(budget.used(), 800, "b held nothing");

    // `a` finishes: its frame is handed out and its room given back at once.
    a_send.write_all(&[b'a'; 400]).await.unwrap();
    let (a, f) = within("a's frame", a_task).await.unwrap();
    assert_eq!(f.unwrap().unwrap().payload.len(), 800);
    assert_eq!(
        budget.used(),
        0,
        "room given back when the frame is handed out"
    );
    assert_eq!(a.reserved(), 0);
    drop(a);
}
