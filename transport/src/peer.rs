//! The identity a client's certificate proves (mTLS), read after the handshake.
//!
//! The identity is the certificate's first URI subject alternative name (a SPIFFE id such as
//! `spiffe://example.org/ns/prod/sa/billing`), else its first DNS name. The chain was already
//! verified by rustls against the configured client CA; this only reads the SAN extension, with
//! a small DER walker (no X.509 parser dependency for one extension).

use rustls::pki_types::CertificateDer;

/// The verified client certificate's identity on this connection (server side), or `None`
/// when the client presented no certificate or it names no URI or DNS SAN.
pub fn peer_identity(conn: &quinn::Connection) -> Option<String> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    identity_from_cert(certs.first()?)
}

/// The first URI SAN of a DER certificate, else its first DNS SAN.
pub fn identity_from_cert(cert: &[u8]) -> Option<String> {
    let names = subject_alt_names(cert)?;
    names
        .iter()
        .find(|(tag, _)| *tag == URI)
        .or_else(|| names.iter().find(|(tag, _)| *tag == DNS))
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
        .map(str::to_owned)
}

/// Context tags of GeneralName (RFC 5280 4.2.1.6).
const DNS: u8 = 0x82;
const URI: u8 = 0x86;
/// id-ce-subjectAltName, 2.5.29.17.
const SAN_OID: &[u8] = &[0x55, 0x1d, 0x11];

type Names<'a> = Vec<(u8, &'a [u8])>;

fn subject_alt_names(cert: &[u8]) -> Option<Names<'_>> {
    let (_, cert_body, _) = tlv(cert, 0x30)?;
    let (_, tbs, _) = tlv(cert_body, 0x30)?;
    // Walk the TBSCertificate's fields to the explicit [3] extensions.
    let mut rest = tbs;
    let exts = loop {
        let (tag, content, next) = any_tlv(rest)?;
        if tag == 0xa3 {
            break content;
        }
        rest = next;
    };
    let (_, mut list, _) = tlv(exts, 0x30)?;
    while !list.is_empty() {
        let (_, ext, next) = tlv(list, 0x30)?;
        list = next;
        let (_, oid, mut fields) = tlv(ext, 0x06)?;
        if oid != SAN_OID {
            continue;
        }
        if let Some((0x01, _, after)) = any_tlv(fields) {
            fields = after; // critical flag
        }
        let (_, value, _) = tlv(fields, 0x04)?;
        let (_, mut general, _) = tlv(value, 0x30)?;
        let mut out = Vec::new();
        while !general.is_empty() {
            let (tag, v, next) = any_tlv(general)?;
            out.push((tag, v));
            general = next;
        }
        return Some(out);
    }
    None
}

/// One DER element with the expected tag: (tag, content, rest).
fn tlv(input: &[u8], want: u8) -> Option<(u8, &[u8], &[u8])> {
    any_tlv(input).filter(|(t, _, _)| *t == want)
}

/// One DER element (single-byte tags, definite lengths up to 4 bytes).
fn any_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *input.first()?;
    let first = *input.get(1)?;
    let (len, header) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = len << 8 | *input.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    if end > input.len() {
        return None;
    }
    Some((tag, &input[header..end], &input[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair, SanType};

    fn cert(sans: Vec<SanType>) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.subject_alt_names = sans;
        p.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_uri_san_wins_over_dns_names_and_dns_is_the_fallback() {
        let spiffe = "spiffe://example.org/ns/prod/sa/billing";
        let both = cert(vec![
            SanType::DnsName("billing.example.org".try_into().unwrap()),
            SanType::URI(spiffe.try_into().unwrap()),
        ]);
        assert_eq!(identity_from_cert(&both).as_deref(), Some(spiffe));
        let dns = cert(vec![
            SanType::DnsName("a.example.org".try_into().unwrap()),
            SanType::DnsName("b.example.org".try_into().unwrap()),
        ]);
        assert_eq!(identity_from_cert(&dns).as_deref(), Some("a.example.org"));
        assert_eq!(identity_from_cert(&cert(vec![])), None, "no SAN");
    }

    #[test]
    fn garbage_and_truncated_input_give_none() {
        let good = cert(vec![SanType::DnsName("x.example".try_into().unwrap())]);
        for n in [0, 1, 2, 10, good.len() / 2, good.len() - 1] {
            // A truncated outer element claims more bytes than there are.
            assert_eq!(identity_from_cert(&good[..n]), None, "{n} bytes");
        }
        assert_eq!(identity_from_cert(&[0x30, 0x85, 1, 2, 3, 4, 5]), None);
        assert_eq!(identity_from_cert(b"not der at all"), None);
    }
}
