//! Handshake policy on real loopback QUIC: certificate verification and the
//! ALPN rules (felix/1 selected, none accepted, unrelated rejected).

mod common;

use std::sync::Arc;

use common::{echo_roundtrip, within, TempDir, TestServer};
use felix_transport::quinn::{self, ConnectionError, TransportErrorCode};
use felix_transport::{
    client_endpoint_for, negotiated_alpn, server_endpoint, ClientOptions, ClientTls, ServerTls,
    TransportConfig, TransportError, ALPN_FELIX_V1,
};

/// TLS alert `no_application_protocol` (120) as a QUIC CRYPTO_ERROR.
const NO_APPLICATION_PROTOCOL: u8 = 120;

async fn connect(
    server: &TestServer,
    opts: &ClientOptions,
) -> Result<quinn::Connection, ConnectionError> {
    let client = client_endpoint_for(server.addr, opts).expect("client endpoint");
    let connecting = client
        .connect(server.addr, &opts.server_name)
        .expect("connect parameters");
    within("client handshake", connecting).await
}

#[tokio::test]
async fn dev_ca_file_verifies_and_bidi_stream_exchanges_bytes() {
    let mut server = TestServer::echo();
    let opts = ClientOptions::new(ClientTls::CaFile(server.ca_path.clone()));
    let conn = connect(&server, &opts).await.expect("handshake");

    assert_eq!(negotiated_alpn(&conn).as_deref(), Some(ALPN_FELIX_V1));
    assert_eq!(
        server.next_event().await.expect("server side").as_deref(),
        Some(ALPN_FELIX_V1)
    );
    assert_eq!(echo_roundtrip(&conn, b"hello felix").await, b"hello felix");
    // A payload bigger than one packet exercises flow control and pacing too.
    let big = vec![0xa5u8; 256 * 1024];
    assert_eq!(echo_roundtrip(&conn, &big).await, big);
}

#[tokio::test]
async fn client_offering_no_alpn_is_accepted() {
    let mut server = TestServer::echo();
    let opts = ClientOptions {
        offer_alpn: false,
        ..ClientOptions::new(ClientTls::CaFile(server.ca_path.clone()))
    };
    let conn = connect(&server, &opts).await.expect("v1 client handshake");
    assert_eq!(negotiated_alpn(&conn), None);
    assert_eq!(server.next_event().await.expect("server side"), None);
    assert_eq!(echo_roundtrip(&conn, b"v1").await, b"v1");
}

#[tokio::test]
async fn dev_cert_is_valid_for_ip_literal() {
    let server = TestServer::echo();
    let opts = ClientOptions {
        server_name: "127.0.0.1".into(),
        ..ClientOptions::new(ClientTls::CaFile(server.ca_path.clone()))
    };
    let conn = connect(&server, &opts).await.expect("handshake by IP");
    assert_eq!(echo_roundtrip(&conn, b"ip").await, b"ip");
}

#[tokio::test]
async fn client_trusting_another_ca_fails_handshake() {
    let mut server = TestServer::echo();
    let other = TempDir::new("other-ca");
    let other_ca = other.path().join("ca.pem");
    ServerTls::generate_dev(&other_ca).unwrap();

    let opts = ClientOptions::new(ClientTls::CaFile(other_ca));
    let err = connect(&server, &opts).await.expect_err("must not verify");
    // rustls aborts locally with a certificate alert, reported as a CRYPTO_ERROR.
    assert!(
        matches!(&err, ConnectionError::TransportError(e) if e.to_string().contains("certificate")),
        "unexpected error: {err:?}"
    );
    // The server must see the failure too instead of holding a half-open handshake.
    assert!(server.next_event().await.is_err());
}

#[tokio::test]
async fn unrelated_alpn_is_rejected_and_mixed_offer_selects_felix() {
    let mut server = TestServer::echo();
    let pem = std::fs::read(&server.ca_path).unwrap();
    let client = client_endpoint_for(
        server.addr,
        &ClientOptions::new(ClientTls::CaPem(pem.clone())),
    )
    .unwrap();

    // ClientOptions can only offer felix/1 or nothing, so build this one by hand.
    let offering = |protocols: &[&[u8]]| {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        tls.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
        quinn::ClientConfig::new(Arc::new(
            quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap(),
        ))
    };

    let h3_only = client
        .connect_with(offering(&[b"h3"]), server.addr, "localhost")
        .unwrap();
    let err = within("h3 handshake", h3_only)
        .await
        .expect_err("h3-only client must be rejected");
    match &err {
        ConnectionError::ConnectionClosed(close) => assert_eq!(
            close.error_code,
            TransportErrorCode::crypto(NO_APPLICATION_PROTOCOL),
            "{err:?}"
        ),
        other => panic!("expected CONNECTION_CLOSE from server, got {other:?}"),
    }
    assert!(server.next_event().await.is_err());

    let mixed = client
        .connect_with(offering(&[b"h3", ALPN_FELIX_V1]), server.addr, "localhost")
        .unwrap();
    let conn = within("mixed handshake", mixed).await.expect("mixed offer");
    assert_eq!(negotiated_alpn(&conn).as_deref(), Some(ALPN_FELIX_V1));

    // A ClientHello too big for one Initial packet reaches the sniffer in
    // several CRYPTO chunks; the handshake must still complete.
    let junk: Vec<Vec<u8>> = (0..200)
        .map(|i| format!("x-proto-{i:03}").into_bytes())
        .collect();
    let mut many: Vec<&[u8]> = junk.iter().map(Vec::as_slice).collect();
    many.push(ALPN_FELIX_V1);
    let big = client
        .connect_with(offering(&many), server.addr, "localhost")
        .unwrap();
    let conn = within("big ClientHello", big)
        .await
        .expect("multi-packet hello");
    assert_eq!(negotiated_alpn(&conn).as_deref(), Some(ALPN_FELIX_V1));
    assert_eq!(echo_roundtrip(&conn, b"big").await, b"big");
}

#[tokio::test]
async fn insecure_skip_verify_connects_to_any_cert() {
    let server = TestServer::echo();
    let opts = ClientOptions {
        server_name: "not-in-the-cert.example".into(),
        ..ClientOptions::new(ClientTls::InsecureSkipVerify)
    };
    let conn = connect(&server, &opts).await.expect("insecure handshake");
    assert_eq!(echo_roundtrip(&conn, b"x").await, b"x");
}

#[tokio::test]
async fn production_pem_files_are_loaded() {
    let dir = TempDir::new("pem");
    std::fs::create_dir_all(dir.path()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["broker.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();

    let tls = ServerTls::from_pem_files(&cert_path, &key_path).expect("load PEM files");
    let server = server_endpoint(
        "127.0.0.1:0".parse().unwrap(),
        tls,
        &TransportConfig::default(),
    )
    .unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(async move {
        if let Some(incoming) = server.accept().await {
            if let Ok(conn) = incoming.await {
                common::echo_connection(conn).await;
            }
        }
    });

    let opts = ClientOptions {
        server_name: "broker.test".into(),
        ..ClientOptions::new(ClientTls::CaPem(cert.pem().into_bytes()))
    };
    let client = client_endpoint_for(addr, &opts).unwrap();
    let conn = within("handshake", client.connect(addr, "broker.test").unwrap())
        .await
        .expect("handshake with PEM-loaded cert");
    assert_eq!(echo_roundtrip(&conn, b"prod").await, b"prod");

    // The error names the offending file.
    let err = ServerTls::from_pem_files(&cert_path, &cert_path).unwrap_err();
    assert!(
        matches!(&err, TransportError::Certificate { path, .. } if *path == cert_path),
        "{err:?}"
    );
    let missing = dir.path().join("missing.pem");
    let err = ServerTls::from_pem_files(&missing, &key_path).unwrap_err();
    assert!(
        matches!(&err, TransportError::Certificate { path, .. } if *path == missing),
        "{err:?}"
    );
}

#[test]
fn endpoints_outside_a_runtime_are_an_error_not_a_panic() {
    let opts = ClientOptions::new(ClientTls::InsecureSkipVerify);
    let err = client_endpoint_for("127.0.0.1:1".parse().unwrap(), &opts).unwrap_err();
    assert!(matches!(err, TransportError::NoRuntime), "{err:?}");
}

/// Why the crate sniffs ClientHellos instead of using one rustls config:
/// rustls in QUIC mode rejects a client offering no ALPN whenever the server
/// lists any protocol. If this test starts failing, rustls became lenient and
/// the dispatch in `alpn.rs` could be replaced by a single config.
#[tokio::test]
async fn plain_rustls_with_alpn_would_reject_v1_clients() {
    let dir = TempDir::new("plain");
    let ca_path = dir.path().join("ca.pem");
    let tls = ServerTls::generate_dev(&ca_path).unwrap();
    let (chain, key) = (tls.cert_chain().to_vec(), tls.private_key().clone_key());
    let mut rustls_cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    rustls_cfg.alpn_protocols = vec![ALPN_FELIX_V1.to_vec()];
    let server_cfg = quinn::ServerConfig::with_crypto(Arc::new(
        quinn::crypto::rustls::QuicServerConfig::try_from(rustls_cfg).unwrap(),
    ));
    let server = quinn::Endpoint::server(server_cfg, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(async move {
        while let Some(incoming) = server.accept().await {
            let _ = incoming.await;
        }
    });

    let opts = ClientOptions {
        offer_alpn: false,
        ..ClientOptions::new(ClientTls::CaFile(ca_path))
    };
    let client = client_endpoint_for(addr, &opts).unwrap();
    let err = within(
        "plain handshake",
        client.connect(addr, "localhost").unwrap(),
    )
    .await
    .expect_err("plain rustls rejects no-ALPN clients in QUIC mode");
    assert!(
        matches!(&err, ConnectionError::ConnectionClosed(c)
            if c.error_code == TransportErrorCode::crypto(NO_APPLICATION_PROTOCOL)),
        "{err:?}"
    );
}

#[test]
fn dev_identity_survives_a_restart_and_is_regenerated_when_broken() {
    let dir = TempDir::new("dev-restart");
    let ca = dir.path().join("ca.pem");
    let first = ServerTls::generate_dev(&ca).expect("first start");
    let ca_before = std::fs::read(&ca).expect("ca written");
    let second = ServerTls::generate_dev(&ca).expect("restart");
    assert_eq!(
        std::fs::read(&ca).unwrap(),
        ca_before,
        "restart must keep the CA clients trust"
    );
    assert_eq!(
        first.cert_chain(),
        second.cert_chain(),
        "restart must keep the leaf"
    );
    // A damaged leaf key is replaced by a fresh identity instead of failing the start.
    std::fs::write(dir.path().join("dev-server.key"), b"garbage").unwrap();
    let third = ServerTls::generate_dev(&ca).expect("start with broken key");
    assert_ne!(third.cert_chain(), first.cert_chain());
    assert_ne!(std::fs::read(&ca).unwrap(), ca_before);
}
