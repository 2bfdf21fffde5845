//! mTLS on the broker's QUIC listener, with CAs and certificates minted by rcgen into a temp
//! directory: a client certificate from the configured CA connects and its identity (URI SAN,
//! else DNS SAN) reaches the audit log; one from another CA, or none when required, is
//! refused at the handshake (no stream is ever served).

mod common;
mod v1;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use felix_broker::BrokerConfig;
use felix_transport::quinn;
use felix_transport::ClientAuth;
use quinn::crypto::rustls::QuicClientConfig;
use quinn::rustls;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ca {
        cert: p.self_signed(&key).unwrap(),
        key,
    }
}

type Identity = (CertificateDer<'static>, PrivateKeyDer<'static>);

/// A client certificate signed by `ca`; its key is also written (0600) beside it in `dir`.
fn client_cert(ca: &Ca, sans: Vec<SanType>, dir: &Path, name: &str) -> Identity {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.subject_alt_names = sans;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    write_private(
        &dir.join(format!("{name}.key")),
        key.serialize_pem().as_bytes(),
    );
    std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
    (
        cert.der().clone(),
        PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
}

fn write_private(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
}

fn uri(s: &str) -> SanType {
    SanType::URI(s.try_into().unwrap())
}

fn dns(s: &str) -> SanType {
    SanType::DnsName(s.try_into().unwrap())
}

struct Setup {
    broker: TestBroker,
    audit: PathBuf,
    good: Identity,
    dns_only: Identity,
    foreign: Identity,
}

const SPIFFE: &str = "spiffe://felix.test/ns/prod/sa/billing";

async fn setup(name: &str, mode: ClientAuth) -> Setup {
    setup_with(name, mode, |_| {}).await
}

async fn setup_with(name: &str, mode: ClientAuth, edit: impl FnOnce(&mut BrokerConfig)) -> Setup {
    let dir = scratch(name);
    let trusted = ca("trusted client CA");
    let other = ca("some other CA");
    std::fs::write(dir.join("client-ca.pem"), trusted.cert.pem()).unwrap();
    let good = client_cert(
        &trusted,
        vec![dns("billing.felix.test"), uri(SPIFFE)],
        &dir,
        "good",
    );
    let dns_only = client_cert(&trusted, vec![dns("worker.felix.test")], &dir, "dns");
    let foreign = client_cert(&other, vec![uri(SPIFFE)], &dir, "foreign");
    let mut cfg: BrokerConfig = test_config(name);
    cfg.tls_client_ca = Some(dir.join("client-ca.pem"));
    cfg.tls_client_auth = mode;
    edit(&mut cfg);
    let audit = dir.join("audit.log");
    cfg.audit.output = Some(audit.display().to_string());
    Setup {
        broker: TestBroker::with_config(cfg).await,
        audit,
        good,
        dns_only,
        foreign,
    }
}

/// A QUIC client trusting the broker's dev CA, presenting `identity` if given.
fn client_config(server_ca: &Path, identity: Option<&Identity>) -> quinn::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(server_ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots);
    let mut cfg = match identity {
        Some((cert, key)) => b
            .with_client_auth_cert(vec![cert.clone()], key.clone_key())
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![felix_transport::ALPN_FELIX_V1.to_vec()];
    quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(cfg).unwrap()))
}

/// Connects and authenticates one stream; `Err` with what went wrong when the broker did not
/// serve it (the handshake failed, or the connection was closed before `auth` was answered).
async fn connect_and_auth(s: &Setup, identity: Option<&Identity>) -> Result<(), String> {
    let reply = connect_and_auth_to(s, identity, "t1").await?;
    assert_eq!(reply["type"], "auth_ok", "{reply}");
    Ok(())
}

/// Connects and sends `auth` for `tenant`; the broker's answer to it.
async fn connect_and_auth_to(
    s: &Setup,
    identity: Option<&Identity>,
    tenant: &str,
) -> Result<Value, String> {
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let cfg = client_config(&s.broker.ca, identity);
    let conn = endpoint
        .connect_with(cfg, s.broker.addr(), "localhost")
        .unwrap()
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let c = v1::Client { endpoint, conn };
    let served = async {
        let (mut send, recv) = c.conn.open_bi().await.map_err(|e| e.to_string())?;
        let auth = json!({"type": "auth", "tenant_id": tenant, "client_features": 1});
        send.write_all(&v1::json_frame(&auth))
            .await
            .map_err(|e| e.to_string())?;
        let mut rx = v1::Reader::new(recv);
        match rx.next().await? {
            Some(f) => Ok::<Value, String>(f.json()),
            None => Err("stream ended".into()),
        }
    };
    within(10, "auth reply or refusal", served)
        .await
        .map_err(|e| format!("after handshake: {e} (close: {:?})", c.conn.close_reason()))
}

/// The broker's TLS stack refused the client: in TLS 1.3 the client's side of the handshake
/// completes before the server has checked its certificate, so the refusal arrives as the
/// server's CONNECTION_CLOSE with a crypto error (0x100 + TLS alert) naming the reason, before
/// any stream is served.
fn assert_refused(r: Result<(), String>, what: &str, reason: &str) {
    let e = r.expect_err(what);
    assert!(
        e.contains("Code::crypto(") && e.contains(reason),
        "{what}: expected a TLS refusal ({reason}), got {e}"
    );
}

/// Successful connection opens, once at least `want` are in the file.
async fn audit_identities(path: &Path, want: usize) -> Vec<Value> {
    audit_lines(path, want, |v| {
        v["event"] == "conn_open" && v["outcome"] == "ok"
    })
    .await
}

async fn audit_lines(path: &Path, want: usize, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let opens: Vec<Value> = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| pred(v))
            .collect();
        if opens.len() >= want {
            return opens;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} conn_open lines, want {want}",
            opens.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn required_client_certificates_admit_the_trusted_ca_only() {
    let s = setup("mtls-required", ClientAuth::Required).await;
    connect_and_auth(&s, Some(&s.good))
        .await
        .expect("a certificate from the configured CA");
    assert_refused(
        connect_and_auth(&s, Some(&s.foreign)).await,
        "a certificate from another CA",
        "UnknownIssuer",
    );
    assert_refused(
        connect_and_auth(&s, None).await,
        "no certificate",
        "peer sent no certificates",
    );
    connect_and_auth(&s, Some(&s.dns_only))
        .await
        .expect("the DNS-only certificate of the trusted CA");
    // Refused handshakes never became connections: two opens, with their identities.
    let opens = audit_identities(&s.audit, 2).await;
    let ids: Vec<&str> = opens
        .iter()
        .map(|v| v["identity"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(ids, [SPIFFE, "worker.felix.test"], "{opens:#?}");
    // The refused handshakes are audited as denied connection attempts, with their reason.
    let refused = audit_lines(&s.audit, 2, |v| {
        v["event"] == "conn_open" && v["outcome"] == "denied"
    })
    .await;
    let reasons: Vec<&str> = refused
        .iter()
        .map(|v| v["reason"].as_str().unwrap())
        .collect();
    assert!(reasons[0].contains("UnknownIssuer"), "{reasons:?}");
    assert!(reasons[1].contains("no certificates"), "{reasons:?}");
    assert!(refused
        .iter()
        .all(|v| v["peer"].as_str().unwrap().starts_with("127.0.0.1:")));
}

#[tokio::test]
async fn optional_client_certificates_admit_anonymous_clients_but_not_foreign_ones() {
    let s = setup("mtls-optional", ClientAuth::Optional).await;
    connect_and_auth(&s, None)
        .await
        .expect("no certificate is fine when optional");
    assert_refused(
        connect_and_auth(&s, Some(&s.foreign)).await,
        "another CA's certificate is still refused",
        "UnknownIssuer",
    );
    connect_and_auth(&s, Some(&s.good)).await.unwrap();
    let opens = audit_identities(&s.audit, 2).await;
    assert!(opens[0].get("identity").is_none(), "{:?}", opens[0]);
    assert_eq!(opens[1]["identity"], SPIFFE);
}

#[tokio::test]
async fn client_auth_without_a_ca_is_a_configuration_error() {
    let mut cfg = test_config("mtls-noca");
    cfg.tls_client_auth = ClientAuth::Required;
    let e = felix_broker::Broker::start(cfg)
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("tls_client_ca"), "{e}");
}

/// `[[mtls.identities]]`: the certificate identity must be bound to the tenant a stream
/// authenticates for (on top of its token): the bound SPIFFE id opens its tenant, the same
/// certificate is refused `unauthorized` for another tenant, an unbound identity of the
/// trusted CA and a certificate-less connection (optional mode) are refused for every tenant,
/// and another CA's certificate is still refused at the handshake.
#[tokio::test]
async fn certificate_identities_bound_to_tenants_gate_each_streams_tenant() {
    use felix_broker::auth::mtls::{IdentityBinding, MtlsConfig};
    let mtls = MtlsConfig {
        identities: vec![
            IdentityBinding {
                identity: SPIFFE.into(),
                tenants: vec!["acme".into()],
                grants: vec![],
            },
            IdentityBinding {
                identity: "spiffe://felix.test/ns/other/*".into(),
                tenants: vec!["globex".into()],
                grants: vec![],
            },
        ],
    };
    let s = setup_with("mtls-bound", ClientAuth::Optional, |c| c.mtls = mtls).await;
    let ok = connect_and_auth_to(&s, Some(&s.good), "acme")
        .await
        .unwrap();
    assert_eq!(ok["type"], "auth_ok", "bound identity, its tenant: {ok}");
    for (who, identity, tenant) in [
        ("bound identity, another tenant", Some(&s.good), "globex"),
        (
            "unbound identity of the trusted CA",
            Some(&s.dns_only),
            "acme",
        ),
        ("no certificate", None, "acme"),
    ] {
        let r = connect_and_auth_to(&s, identity, tenant)
            .await
            .unwrap_or_else(|e| panic!("{who}: {e}"));
        assert_eq!(r["type"], "error", "{who}: {r}");
        assert_eq!(r["code"], "unauthorized", "{who}: {r}");
        assert!(
            r["message"]
                .as_str()
                .unwrap_or("")
                .contains("mtls.identities"),
            "{who}: {r}"
        );
    }
    assert_refused(
        connect_and_auth_to(&s, Some(&s.foreign), "acme")
            .await
            .map(|_| ()),
        "another CA's certificate, even with a bound identity",
        "UnknownIssuer",
    );
    // The refusals are audited as failed `auth`s naming the tenant asked for.
    let denied = audit_lines(&s.audit, 3, |v| {
        v["event"] == "auth" && v["outcome"] == "denied"
    })
    .await;
    assert!(
        denied.iter().all(|v| v["code"] == "unauthorized"),
        "{denied:#?}"
    );
}

#[tokio::test]
async fn identity_bindings_without_client_certificates_are_a_configuration_error() {
    use felix_broker::auth::mtls::{IdentityBinding, MtlsConfig};
    let mut cfg = test_config("mtls-bind-off");
    cfg.mtls = MtlsConfig {
        identities: vec![IdentityBinding {
            identity: SPIFFE.into(),
            tenants: vec!["acme".into()],
            grants: vec![],
        }],
    };
    let e = felix_broker::Broker::start(cfg)
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("tls_client_auth"), "{e}");
}

/// A bound identity with `grants` is a principal of its own: a stream of that certificate
/// authenticates without a token and may do exactly what the grants say; the same certificate
/// without grants for another tenant, or an unbound certificate, still needs a token (static
/// tokens here, so a token-less stream is otherwise refused).
#[tokio::test]
async fn a_bound_identity_with_grants_authenticates_without_a_token() {
    use felix_broker::auth::mtls::{IdentityBinding, MtlsConfig};
    let dir = scratch("mtls-cert-only-tokens");
    let tokens = dir.join("tokens");
    write_private(&tokens, b"acme acme-static-token-0123456789 svc\n");
    let mtls = MtlsConfig {
        identities: vec![
            IdentityBinding {
                identity: SPIFFE.into(),
                tenants: vec!["acme".into()],
                grants: vec![felix_auth::Grant {
                    actions: vec!["publish".into(), "admin".into()],
                    resources: vec!["ns/>".into()],
                }],
            },
            IdentityBinding {
                identity: SPIFFE.into(),
                tenants: vec!["globex".into()],
                grants: vec![],
            },
        ],
    };
    let s = setup_with("mtls-cert-only", ClientAuth::Required, |c| {
        c.mtls = mtls;
        c.auth_tokens_file = Some(tokens);
    })
    .await;

    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let conn = endpoint
        .connect_with(
            client_config(&s.broker.ca, Some(&s.good)),
            s.broker.addr(),
            "localhost",
        )
        .unwrap()
        .await
        .unwrap();
    let c = v1::Client { endpoint, conn };
    let auth = |tenant: &str| json!({"type": "auth", "tenant_id": tenant, "client_features": 1});
    let (mut st, reply) = within(10, "auth", c.open_authed(&auth("acme"))).await;
    assert_eq!(
        reply["type"], "auth_ok",
        "certificate-only principal: {reply}"
    );
    st.send_json(
        &json!({"type": "publish", "tenant_id": "acme", "namespace": "ns",
                         "stream": "s", "payload": v1::b64(b"x"), "request_id": 1}),
    )
    .await;
    let r = within(5, "publish", st.json()).await;
    assert_eq!(r["type"], "publish_ok", "granted: {r}");
    st.send_json(
        &json!({"type": "cache_put", "tenant_id": "acme", "namespace": "ns",
                         "cache": "c", "key": "k", "value": v1::b64(b"v"), "request_id": 2}),
    )
    .await;
    let r = within(5, "cache_put", st.json()).await;
    assert_eq!(r["code"], "forbidden", "not granted: {r}");

    // Bound to globex without grants: a token is still required (and globex has none).
    let (_, reply) = within(10, "auth", c.open_authed(&auth("globex"))).await;
    assert_eq!(reply["code"], "unauthorized", "{reply}");
    // With its token, the same certificate opens acme as the token's principal.
    let with_token = json!({"type": "auth", "tenant_id": "acme",
                            "token": "acme-static-token-0123456789", "client_features": 1});
    let (_, reply) = within(10, "auth", c.open_authed(&with_token)).await;
    assert_eq!(reply["type"], "auth_ok", "{reply}");
}
