//! Where a credential may be sent: the one rule the broker's control-plane feed, the client's
//! token exchange and the CLI apply to a control-plane URL before sending a token to it.

use std::net::IpAddr;

/// Why a URL may not carry a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlRefusal {
    /// User information (`user@host`): the host is what follows the `@`, so
    /// `http://127.0.0.1@evil.example/` would pass a loopback check it defeats.
    UserInfo,
    /// Neither `https://` nor `http://`.
    Scheme,
    /// Plain `http://` to a host that is not this machine.
    PlainRemote,
}

/// The authority of `url` (between `://` and the path, query or fragment).
fn authority(url: &str) -> &str {
    url.split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split(['/', '?', '#'])
        .next()
        .unwrap_or("")
}

/// Whether `url` names the loopback interface (`localhost`, `127.0.0.0/8`, `[::1]`); a URL
/// with user information never does.
pub fn is_loopback_url(url: &str) -> bool {
    let authority = authority(url);
    if authority.contains('@') {
        return false;
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Checks a URL a credential will be sent to: no user information, `https://`, or `http://`
/// to loopback (to any host when `plain_remote_ok`, i.e. a dev setup).
pub fn check_credential_url(url: &str, plain_remote_ok: bool) -> Result<(), UrlRefusal> {
    if authority(url).contains('@') {
        return Err(UrlRefusal::UserInfo);
    }
    if url.starts_with("https://") {
        return Ok(());
    }
    if !url.starts_with("http://") {
        return Err(UrlRefusal::Scheme);
    }
    if plain_remote_ok || is_loopback_url(url) {
        Ok(())
    } else {
        Err(UrlRefusal::PlainRemote)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_with_and_without_ports() {
        for ok in [
            "http://127.0.0.1:8443",
            "http://localhost/x",
            "http://localhost",
            "http://[::1]:80",
            "http://127.1.2.3?q",
        ] {
            assert!(is_loopback_url(ok), "{ok}");
        }
        for not in [
            "http://cp.example:7700",
            "http://127.0.0.1.evil.com",
            "http://10.0.0.1:80",
            "http://127.0.0.1:80@cp.evil.example/",
            "http://[::1]@evil/",
        ] {
            assert!(!is_loopback_url(not), "{not}");
        }
    }

    #[test]
    fn credential_urls() {
        assert_eq!(check_credential_url("https://cp.example", false), Ok(()));
        assert_eq!(check_credential_url("http://127.0.0.1:1/x", false), Ok(()));
        assert_eq!(check_credential_url("http://cp.example", true), Ok(()));
        assert_eq!(
            check_credential_url("http://cp.example", false),
            Err(UrlRefusal::PlainRemote)
        );
        assert_eq!(
            check_credential_url("ftp://x", true),
            Err(UrlRefusal::Scheme)
        );
        assert_eq!(
            check_credential_url("cp.example", true),
            Err(UrlRefusal::Scheme)
        );
        for bad in [
            "http://127.0.0.1:80@cp.evil.example/",
            "https://user:pw@cp.example",
        ] {
            assert_eq!(
                check_credential_url(bad, true),
                Err(UrlRefusal::UserInfo),
                "{bad}"
            );
        }
    }
}
