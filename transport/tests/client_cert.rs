//! The client side of mTLS: `ClientOptions::client_cert` offers a certificate to a server
//! that requires one (real QUIC on loopback; the server here is a plain rustls config that
//! demands a certificate from a test CA, standing in for the broker's mTLS listener), a
//! client without one is refused, and unreadable files fail when the config is built.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::TempDir;
use felix_transport::quinn;
use felix_transport::{client_endpoint_for, ClientCertFiles, ClientOptions, ClientTls, ServerTls};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

/// A CA and a client certificate it signed, written as PEM files.
fn client_identity(dir: &std::path::Path) -> (Vec<u8>, ClientCertFiles) {
    std::fs::create_dir_all(dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["client.felix.test".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let files = ClientCertFiles {
        cert: dir.join("client.pem"),
        key: dir.join("client.key"),
    };
    std::fs::write(&files.cert, cert.pem()).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    (ca.der().to_vec(), files)
}

/// A QUIC server requiring a client certificate from `client_ca`.
fn mtls_server(dir: &std::path::Path, client_ca: Vec<u8>) -> (quinn::Endpoint, std::path::PathBuf) {
    let ca_path = dir.join("server-ca.pem");
    let tls = ServerTls::generate_dev(&ca_path).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(client_ca.into()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(tls.cert_chain().to_vec(), tls.private_key().clone_key())
        .unwrap();
    cfg.alpn_protocols = vec![felix_transport::ALPN_FELIX_V1.to_vec()];
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(cfg).unwrap();
    let server = quinn::Endpoint::server(
        quinn::ServerConfig::with_crypto(Arc::new(quic)),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    (server, ca_path)
}

/// What the server made of the next connection attempt: the client's certificate count.
async fn server_side(server: &quinn::Endpoint) -> Result<usize, String> {
    let incoming = tokio::time::timeout(Duration::from_secs(10), server.accept())
        .await
        .map_err(|_| "no connection attempt".to_string())?
        .ok_or("endpoint closed")?;
    let conn = tokio::time::timeout(Duration::from_secs(10), incoming)
        .await
        .map_err(|_| "handshake hung".to_string())?
        .map_err(|e| e.to_string())?;
    let certs = conn
        .peer_identity()
        .and_then(|id| {
            id.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .map_or(0, |c| c.len());
    Ok(certs)
}

#[tokio::test]
async fn a_client_certificate_is_offered_and_required_certificates_refuse_clients_without() {
    let dir = TempDir::new("client-cert");
    let (client_ca, files) = client_identity(dir.path());
    let (server, server_ca) = mtls_server(dir.path(), client_ca);
    let addr = server.local_addr().unwrap();

    let with = ClientOptions {
        client_cert: Some(files.clone()),
        ..ClientOptions::new(ClientTls::CaFile(server_ca.clone()))
    };
    let client = client_endpoint_for(addr, &with).unwrap();
    let connecting = client.connect(addr, "localhost").unwrap();
    let (server_saw, client_conn) = tokio::join!(server_side(&server), connecting);
    assert_eq!(server_saw, Ok(1), "the server saw the client's certificate");
    assert!(client_conn.is_ok());

    let without = ClientOptions::new(ClientTls::CaFile(server_ca));
    let client = client_endpoint_for(addr, &without).unwrap();
    let connecting = client.connect(addr, "localhost").unwrap();
    let (server_saw, _client_conn) = tokio::join!(server_side(&server), connecting);
    assert!(
        server_saw.is_err(),
        "a client without a certificate was accepted"
    );
}

#[test]
fn unreadable_certificate_files_fail_when_the_config_is_built() {
    let dir = TempDir::new("client-cert-missing");
    let opts = ClientOptions {
        client_cert: Some(ClientCertFiles {
            cert: dir.path().join("absent.pem"),
            key: dir.path().join("absent.key"),
        }),
        ..ClientOptions::new(ClientTls::InsecureSkipVerify)
    };
    let e = felix_transport::client_config(&opts).unwrap_err();
    assert!(e.to_string().contains("absent.pem"), "{e}");
}
