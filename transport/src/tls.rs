//! Certificate material and rustls configurations.
//!
//! Every rustls config here is built with an explicit *ring* provider
//! (`builder_with_provider`) rather than the process-default one: if any other
//! crate in the binary enables rustls' aws-lc-rs feature, the process default
//! becomes ambiguous and rustls panics at runtime. Pinning the provider keeps
//! this crate correct regardless of what the rest of the dependency graph does.
//!
//! TLS 1.3 is the only version offered because QUIC (RFC 9001) cannot carry
//! anything else; saying so explicitly turns a misconfiguration into a build
//! error instead of a handshake failure.

use std::fmt;
use std::fs;
use std::io::BufReader;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::TransportError;

/// Shown as the "path" of certificate errors about in-memory PEM input.
const INLINE_PEM: &str = "<inline PEM>";

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Server certificate chain and private key.
///
/// `Debug` never prints key material.
pub struct ServerTls {
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
    /// mTLS: the CAs client certificates must chain to, and whether one is required.
    pub(crate) client_auth: Option<(Arc<RootCertStore>, ClientAuth)>,
}

impl Clone for ServerTls {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            client_auth: self.client_auth.clone(),
        }
    }
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("chain_len", &self.chain.len())
            .field("key", &"<redacted>")
            .field("client_auth", &self.client_auth.as_ref().map(|c| c.1))
            .finish()
    }
}

impl ServerTls {
    /// Development mode: generate a throw-away CA and a leaf certificate for
    /// `localhost`, `127.0.0.1` and `::1` signed by it, and write the CA
    /// certificate (PEM, no key) to `ca_pem_path`, creating parent
    /// directories, so clients can verify the broker with
    /// [`ClientTls::CaFile`].
    ///
    /// The leaf certificate and its key are kept beside the CA
    /// (`dev-server.pem`, `dev-server.key`, mode 0600) and reused on the next
    /// start while all three files are present and valid, so a restarted dev
    /// broker keeps its identity and connected clients can reconnect without
    /// re-reading the CA. The CA key itself never leaves memory, so nothing
    /// written to disk can mint further certificates. Files are written to a
    /// temporary name and renamed into place, so a client polling for the CA
    /// never reads a half-written PEM.
    ///
    /// The directory must be this user's own and not writable by others (see
    /// [`crate::devdir::prepare`]); a missing one is created with mode 0700. The key is
    /// created with mode 0600 from the start and reused only while it is still a private
    /// regular file of this user.
    pub fn generate_dev(ca_pem_path: &Path) -> Result<Self, TransportError> {
        let dir = match ca_pem_path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        crate::devdir::prepare(&dir)?;
        let leaf_path = ca_pem_path.with_file_name("dev-server.pem");
        let key_path = ca_pem_path.with_file_name("dev-server.key");
        let key_private = crate::devdir::secret_file_is_private(&key_path);
        if key_path.exists() && !key_private {
            tracing::warn!(key = %key_path.display(), "development key is not a private file of this user; generating a new one");
        }
        if key_private && ca_pem_path.exists() && leaf_path.exists() {
            match Self::from_pem_files(&leaf_path, &key_path) {
                Ok(tls) => {
                    tracing::info!(ca = %ca_pem_path.display(), "reusing development certificate");
                    return Ok(tls);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "development certificate unusable; generating a new one")
                }
            }
        }
        let dev = generate_dev_material()?;
        write_atomically(&key_path, dev.leaf_key_pem.as_bytes(), 0o600)?;
        write_atomically(&leaf_path, dev.leaf_pem.as_bytes(), 0o644)?;
        write_atomically(ca_pem_path, dev.ca_pem.as_bytes(), 0o644)?;
        tracing::info!(ca = %ca_pem_path.display(), "generated development CA and localhost certificate");
        Ok(dev.tls)
    }

    /// Production: a PEM certificate chain (leaf first) and a PEM private key
    /// (PKCS#8, PKCS#1/RSA or SEC1/EC). The key is checked to be usable by
    /// the crypto provider here so a bad key fails at startup with its path.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, TransportError> {
        let cert_pem = fs::read(cert).map_err(|e| TransportError::cert(cert, e))?;
        let key_pem = fs::read(key).map_err(|e| TransportError::cert(key, e))?;
        let chain = parse_certs(&cert_pem, cert)?;
        let key_der = rustls_pemfile::private_key(&mut BufReader::new(key_pem.as_slice()))
            .map_err(|e| TransportError::cert(key, e))?
            .ok_or_else(|| TransportError::cert(key, "no PKCS#8, RSA or SEC1 private key found"))?;
        provider()
            .key_provider
            .load_private_key(key_der.clone_key())
            .map_err(|e| TransportError::cert(key, e))?;
        Ok(Self {
            chain,
            key: key_der,
            client_auth: None,
        })
    }

    /// Wrap already-parsed DER material (e.g. from a secrets manager).
    pub fn from_der(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Self {
        Self {
            chain,
            key,
            client_auth: None,
        }
    }

    /// mTLS: verify client certificates against the CA certificate(s) in `ca_pem_path`
    /// (rustls' WebPKI client verifier, ring provider). `Required` refuses a client without
    /// a valid certificate at the handshake, `Optional` admits one without a certificate but
    /// still refuses an invalid one (another CA, expired), `Off` ignores client certificates.
    /// The verified identity is read after the handshake with [`crate::peer_identity`].
    pub fn with_client_auth(
        mut self,
        mode: ClientAuth,
        ca_pem_path: Option<&Path>,
    ) -> Result<Self, TransportError> {
        self.client_auth = match (mode, ca_pem_path) {
            (ClientAuth::Off, _) => None,
            (_, None) => {
                return Err(TransportError::Tls(
                    "client certificate auth needs a client CA (tls_client_ca)".into(),
                ))
            }
            (mode, Some(path)) => {
                let pem = fs::read(path).map_err(|e| TransportError::cert(path, e))?;
                Some((Arc::new(root_store(&pem, path)?), mode))
            }
        };
        Ok(self)
    }

    /// The certificate chain, leaf first.
    pub fn cert_chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The private key (e.g. to build a custom rustls config).
    pub fn private_key(&self) -> &PrivateKeyDer<'static> {
        &self.key
    }

    /// rustls server config with the given ALPN list. Kept crate-private:
    /// the ALPN policy (see `alpn.rs`) needs two variants of it.
    pub(crate) fn rustls_config(
        &self,
        alpn: Vec<Vec<u8>>,
    ) -> Result<rustls::ServerConfig, TransportError> {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TransportError::Tls(e.to_string()))?;
        let builder = match &self.client_auth {
            None => builder.with_no_client_auth(),
            Some((roots, mode)) => {
                let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    roots.clone(),
                    provider(),
                );
                let v = match mode {
                    ClientAuth::Optional => v.allow_unauthenticated(),
                    _ => v,
                };
                builder.with_client_cert_verifier(
                    v.build().map_err(|e| TransportError::Tls(e.to_string()))?,
                )
            }
        };
        let mut cfg = builder
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| TransportError::Tls(e.to_string()))?;
        cfg.alpn_protocols = alpn;
        // No 0-RTT: replayable early data would let an on-path attacker
        // duplicate publishes, and a broker on a LAN gains almost nothing
        // from saving one round trip at connect time.
        cfg.max_early_data_size = 0;
        Ok(cfg)
    }
}

/// Whether a listener asks clients for a certificate (mTLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// No client certificates (the default).
    #[default]
    Off,
    /// A certificate is verified if presented; clients without one are admitted.
    Optional,
    /// Every client must present a certificate from the configured CA.
    Required,
}

/// How a client verifies the broker's certificate.
#[derive(Clone)]
pub enum ClientTls {
    /// Trust the CA certificate(s) in this PEM file (e.g. the file written by
    /// [`ServerTls::generate_dev`]).
    CaFile(PathBuf),
    /// Trust the CA certificate(s) in this in-memory PEM.
    CaPem(Vec<u8>),
    /// **DANGER — development only.** Accept *any* server certificate for any
    /// name. The connection is still encrypted and handshake signatures are
    /// still checked, but anyone on the path can impersonate the broker.
    /// Never use this outside a local test setup.
    InsecureSkipVerify,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CaFile(p) => f.debug_tuple("CaFile").field(p).finish(),
            Self::CaPem(pem) => write!(f, "CaPem({} bytes)", pem.len()),
            Self::InsecureSkipVerify => f.write_str("InsecureSkipVerify"),
        }
    }
}

/// A client certificate chain and key offered to a broker that asks for one (mTLS): PEM files,
/// read each time a client config is built so a rotated certificate is picked up on reconnect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1/RSA or SEC1/EC).
    pub key: PathBuf,
}

impl ClientTls {
    /// rustls client config for this trust policy, with the given ALPN list, offering
    /// `identity` when the server asks for a client certificate.
    pub(crate) fn rustls_config(
        &self,
        alpn: Vec<Vec<u8>>,
        identity: Option<&ClientCertFiles>,
    ) -> Result<rustls::ClientConfig, TransportError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TransportError::Tls(e.to_string()))?;
        let builder = match self {
            Self::CaFile(path) => {
                let pem = fs::read(path).map_err(|e| TransportError::cert(path, e))?;
                builder.with_root_certificates(root_store(&pem, path)?)
            }
            Self::CaPem(pem) => {
                builder.with_root_certificates(root_store(pem, Path::new(INLINE_PEM))?)
            }
            Self::InsecureSkipVerify => {
                tracing::warn!("TLS certificate verification is DISABLED (InsecureSkipVerify)");
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider())))
            }
        };
        let mut cfg = match identity {
            None => builder.with_no_client_auth(),
            Some(id) => {
                // The same PEM parsing (and key check) as a server's own certificate.
                let material = ServerTls::from_pem_files(&id.cert, &id.key)?;
                builder
                    .with_client_auth_cert(material.chain, material.key)
                    .map_err(|e| TransportError::cert(&id.key, e))?
            }
        };
        cfg.alpn_protocols = alpn;
        Ok(cfg)
    }
}

fn parse_certs(pem: &[u8], origin: &Path) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let certs = rustls_pemfile::certs(&mut BufReader::new(pem))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TransportError::cert(origin, e))?;
    if certs.is_empty() {
        return Err(TransportError::cert(origin, "no CERTIFICATE block found"));
    }
    Ok(certs)
}

fn root_store(pem: &[u8], origin: &Path) -> Result<RootCertStore, TransportError> {
    let mut roots = RootCertStore::empty();
    for cert in parse_certs(pem, origin)? {
        roots
            .add(cert)
            .map_err(|e| TransportError::cert(origin, e))?;
    }
    Ok(roots)
}

/// Output of dev certificate generation, kept separate from file writing so
/// tests and tools can get the PEMs without touching disk.
pub(crate) struct DevMaterial {
    pub(crate) tls: ServerTls,
    pub(crate) ca_pem: String,
    pub(crate) leaf_pem: String,
    pub(crate) leaf_key_pem: String,
}

pub(crate) fn generate_dev_material() -> Result<DevMaterial, TransportError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let gen_err = |e: rcgen::Error| TransportError::CertGeneration(e.to_string());

    let ca_key = KeyPair::generate().map_err(gen_err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Felix development CA");
    // Path length 0: this CA may sign leaves only, limiting the damage if a
    // dev CA file ends up trusted somewhere it should not be.
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(gen_err)?;

    let leaf_key = KeyPair::generate().map_err(gen_err)?;
    let names = vec![
        "localhost".to_string(),
        IpAddr::V4(Ipv4Addr::LOCALHOST).to_string(),
        IpAddr::V6(Ipv6Addr::LOCALHOST).to_string(),
    ];
    // rcgen turns the textual IPs into iPAddress SANs, which is what rustls
    // matches when a client dials by IP.
    let mut leaf_params = CertificateParams::new(names).map_err(gen_err)?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf_params.is_ca = IsCa::ExplicitNoCa;
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf_params.use_authority_key_identifier_extension = true;
    let leaf = leaf_params
        .signed_by(&leaf_key, &ca_cert, &ca_key)
        .map_err(gen_err)?;

    Ok(DevMaterial {
        tls: ServerTls {
            chain: vec![leaf.der().clone()],
            key: PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
            client_auth: None,
        },
        ca_pem: ca_cert.pem(),
        leaf_pem: leaf.pem(),
        leaf_key_pem: leaf_key.serialize_pem(),
    })
}

use crate::devdir::write_atomically;

/// Verifier behind [`ClientTls::InsecureSkipVerify`]. It skips only the
/// certificate-chain check; handshake signatures are still verified so the
/// session keys are at least bound to the presented certificate.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
