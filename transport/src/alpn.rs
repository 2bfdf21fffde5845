//! ALPN policy: select `felix/1` when offered, yet accept v1 clients that
//! offer no ALPN at all.
//!
//! rustls cannot express that policy with one config. In QUIC mode it follows
//! RFC 9001 §8.1 strictly: if the server lists any ALPN protocol, a client
//! that offers none is rejected with `no_application_protocol`; and if the
//! server lists none, a client that offers one is rejected too. (Plain TLS
//! over TCP would be lenient; QUIC is not.)
//!
//! So the server keeps two rustls configs, identical except for the ALPN
//! list, and decides per connection which one runs the handshake. The
//! decision needs the ClientHello, which arrives as CRYPTO-frame bytes through
//! [`quinn::crypto::Session::read_handshake`]. [`AlpnDispatch`] therefore
//! wraps quinn's rustls session: it buffers handshake bytes until one whole
//! ClientHello message is present, looks only for the presence of the ALPN
//! extension, then hands the buffered bytes to the chosen real session and
//! gets out of the way. Everything cryptographic stays in rustls; the sniffer
//! only reads TLS framing, and anything it cannot parse goes to the strict
//! config so rustls produces the proper alert.

use std::any::Any;
use std::sync::Arc;

use quinn::crypto::rustls::QuicServerConfig;
use quinn::crypto::{self, ExportKeyingMaterialError, HeaderKey, KeyPair, Keys, PacketKey};
use quinn::{ConnectionId, Side};
use quinn_proto::transport_parameters::TransportParameters;
use quinn_proto::TransportError as QuicError;

/// A ClientHello larger than this is not sniffed (real ones are < 2 KiB
/// without post-quantum shares, ~3 KiB with); it goes to the strict config
/// and rustls applies its own limits. Bounds what one handshake can make
/// us buffer.
const MAX_CLIENT_HELLO: usize = 64 * 1024;

const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_ALPN: u16 = 16;

/// Server-side crypto config that picks one of two rustls configs per
/// connection, depending on whether the client offered ALPN.
pub(crate) struct AlpnDispatch {
    /// ALPN list = `[felix/1]`: used when the client offers any ALPN, so an
    /// unrelated protocol (e.g. `h3`) is rejected by rustls.
    strict: Arc<QuicServerConfig>,
    /// Empty ALPN list: used only when the client offers no ALPN extension.
    lenient: Arc<QuicServerConfig>,
}

impl AlpnDispatch {
    pub(crate) fn new(strict: QuicServerConfig, lenient: QuicServerConfig) -> Self {
        Self {
            strict: Arc::new(strict),
            lenient: Arc::new(lenient),
        }
    }
}

impl crypto::ServerConfig for AlpnDispatch {
    fn initial_keys(
        &self,
        version: u32,
        dst_cid: &ConnectionId,
    ) -> Result<Keys, crypto::UnsupportedVersion> {
        // Initial keys depend only on version and CID, not on ALPN.
        self.strict.initial_keys(version, dst_cid)
    }

    fn retry_tag(&self, version: u32, orig_dst_cid: &ConnectionId, packet: &[u8]) -> [u8; 16] {
        self.strict.retry_tag(version, orig_dst_cid, packet)
    }

    fn start_session(
        self: Arc<Self>,
        version: u32,
        params: &TransportParameters,
    ) -> Box<dyn crypto::Session> {
        // Both sessions are created up front (cheap: rustls does no crypto
        // before the ClientHello) so that the pre-decision queries below
        // can be answered by a real session instead of being re-implemented.
        Box::new(DispatchSession {
            active: self.strict.clone().start_session(version, params),
            pending: Some(Pending {
                lenient: self.lenient.clone().start_session(version, params),
                buf: Vec::new(),
            }),
        })
    }
}

struct Pending {
    lenient: Box<dyn crypto::Session>,
    buf: Vec<u8>,
}

/// Until the ClientHello is complete, `active` is the strict session and has
/// seen no bytes, so its answers ("still handshaking, nothing to send, no
/// keys yet") are exactly right for either choice.
struct DispatchSession {
    active: Box<dyn crypto::Session>,
    pending: Option<Pending>,
}

impl crypto::Session for DispatchSession {
    fn read_handshake(&mut self, data: &[u8]) -> Result<bool, QuicError> {
        let Some(mut pending) = self.pending.take() else {
            return self.active.read_handshake(data);
        };
        pending.buf.extend_from_slice(data);
        let offered_alpn = match sniff_client_hello(&pending.buf) {
            Sniff::NeedMore => {
                self.pending = Some(pending);
                return Ok(false);
            }
            Sniff::AlpnOffered(offered) => offered,
            Sniff::Unparseable => true,
        };
        if !offered_alpn {
            tracing::debug!("client offered no ALPN; accepting as Felix v1");
            self.active = pending.lenient;
        }
        self.active.read_handshake(&pending.buf)
    }

    fn initial_keys(&self, dst_cid: &ConnectionId, side: Side) -> Keys {
        self.active.initial_keys(dst_cid, side)
    }
    fn handshake_data(&self) -> Option<Box<dyn Any>> {
        self.active.handshake_data()
    }
    fn peer_identity(&self) -> Option<Box<dyn Any>> {
        self.active.peer_identity()
    }
    fn early_crypto(&self) -> Option<(Box<dyn HeaderKey>, Box<dyn PacketKey>)> {
        self.active.early_crypto()
    }
    fn early_data_accepted(&self) -> Option<bool> {
        self.active.early_data_accepted()
    }
    fn is_handshaking(&self) -> bool {
        self.active.is_handshaking()
    }
    fn transport_parameters(&self) -> Result<Option<TransportParameters>, QuicError> {
        self.active.transport_parameters()
    }
    fn write_handshake(&mut self, buf: &mut Vec<u8>) -> Option<Keys> {
        self.active.write_handshake(buf)
    }
    fn next_1rtt_keys(&mut self) -> Option<KeyPair<Box<dyn PacketKey>>> {
        self.active.next_1rtt_keys()
    }
    fn is_valid_retry(&self, orig_dst_cid: &ConnectionId, header: &[u8], payload: &[u8]) -> bool {
        self.active.is_valid_retry(orig_dst_cid, header, payload)
    }
    fn export_keying_material(
        &self,
        output: &mut [u8],
        label: &[u8],
        context: &[u8],
    ) -> Result<(), ExportKeyingMaterialError> {
        self.active.export_keying_material(output, label, context)
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Sniff {
    NeedMore,
    AlpnOffered(bool),
    Unparseable,
}

/// Minimal reader over TLS wire encoding; every accessor returns `None` on
/// truncation so the caller can bail out with `?`.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn vec_u8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()? as usize;
        self.take(n)
    }
    fn vec_u16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()? as usize;
        self.take(n)
    }
}

/// Decide from the first handshake bytes whether the client offered ALPN.
/// Layout per RFC 8446 §4.1.2.
fn sniff_client_hello(buf: &[u8]) -> Sniff {
    if buf.len() < 4 {
        return Sniff::NeedMore;
    }
    if buf[0] != HANDSHAKE_CLIENT_HELLO {
        return Sniff::Unparseable;
    }
    let len = u32::from_be_bytes([0, buf[1], buf[2], buf[3]]) as usize;
    if len > MAX_CLIENT_HELLO {
        return Sniff::Unparseable;
    }
    let Some(body) = buf.get(4..4 + len) else {
        return Sniff::NeedMore;
    };
    match alpn_offered(body) {
        Some(offered) => Sniff::AlpnOffered(offered),
        None => Sniff::Unparseable,
    }
}

fn alpn_offered(body: &[u8]) -> Option<bool> {
    let mut r = Reader(body);
    r.take(2 + 32)?; // legacy_version, random
    r.vec_u8()?; // legacy_session_id
    r.vec_u16()?; // cipher_suites
    r.vec_u8()?; // legacy_compression_methods
    if r.0.is_empty() {
        // No extensions at all: not valid for QUIC, rustls will say so.
        return Some(false);
    }
    let mut exts = Reader(r.vec_u16()?);
    while !exts.0.is_empty() {
        let ty = exts.u16()?;
        exts.vec_u16()?;
        if ty == EXT_ALPN {
            return Some(true);
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_hello(exts: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.extend_from_slice(&[0]); // empty session id
        body.extend_from_slice(&[0, 2, 0x13, 0x01]); // one suite
        body.extend_from_slice(&[1, 0]); // null compression
        let mut ext_bytes = Vec::new();
        for (ty, data) in exts {
            ext_bytes.extend_from_slice(&ty.to_be_bytes());
            ext_bytes.extend_from_slice(&(data.len() as u16).to_be_bytes());
            ext_bytes.extend_from_slice(data);
        }
        body.extend_from_slice(&(ext_bytes.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext_bytes);
        let mut msg = vec![HANDSHAKE_CLIENT_HELLO];
        msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        msg.extend_from_slice(&body);
        msg
    }

    #[test]
    fn detects_alpn_presence() {
        let alpn: &[u8] = b"\x00\x08\x07felix/1";
        let with = client_hello(&[(0, b"\x00"), (EXT_ALPN, alpn), (57, b"xyz")]);
        let without = client_hello(&[(0, b"\x00"), (57, b"xyz")]);
        assert_eq!(sniff_client_hello(&with), Sniff::AlpnOffered(true));
        assert_eq!(sniff_client_hello(&without), Sniff::AlpnOffered(false));
    }

    #[test]
    fn waits_for_whole_message_in_any_split() {
        let msg = client_hello(&[(EXT_ALPN, b"\x00\x03\x02h3")]);
        for cut in 0..msg.len() {
            assert_eq!(
                sniff_client_hello(&msg[..cut]),
                Sniff::NeedMore,
                "cut {cut}"
            );
        }
        assert_eq!(sniff_client_hello(&msg), Sniff::AlpnOffered(true));
    }

    #[test]
    fn garbage_goes_to_strict_path() {
        assert_eq!(sniff_client_hello(&[2, 0, 0, 0]), Sniff::Unparseable);
        assert_eq!(sniff_client_hello(&[1, 0xff, 0, 0]), Sniff::Unparseable);
        // Declared length fits but inner vectors overrun it.
        assert_eq!(
            sniff_client_hello(&[1, 0, 0, 3, 3, 3, 9]),
            Sniff::Unparseable
        );
        let mut truncated_ext = client_hello(&[(EXT_ALPN, b"\x00\x03\x02h3")]);
        truncated_ext.truncate(truncated_ext.len() - 1);
        truncated_ext[3] -= 1; // keep the outer length consistent
        assert_eq!(sniff_client_hello(&truncated_ext), Sniff::Unparseable);
    }
}
