//! Resource names: `tenant / namespace / stream-or-cache-or-group`, their validation, and
//! NATS-style wildcard patterns over stream names.
//!
//! * Tenant and namespace: 1..=64 bytes of `[A-Za-z0-9_-]`.
//! * Stream, cache and group names: 1..=255 bytes of dot-separated tokens of
//!   `[A-Za-z0-9_-]` (no empty token, so no leading, trailing or doubled `.`).
//! * Patterns: a stream name whose tokens may also be `*` (exactly one token) or, as the
//!   last token only, `>` (one or more trailing tokens). `orders.*` matches `orders.eu` but
//!   not `orders.eu.x`; `orders.>` matches both but not `orders`.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// Maximum length of a tenant name, in bytes.
pub const MAX_TENANT_LEN: usize = 64;
/// Maximum length of a namespace name, in bytes.
pub const MAX_NAMESPACE_LEN: usize = 64;
/// Maximum length of a stream, cache or group name (and of a pattern), in bytes.
pub const MAX_RESOURCE_LEN: usize = 255;

/// Which kind of name failed validation (used in [`NameError`] messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NameKind {
    /// A tenant name.
    Tenant,
    /// A namespace name.
    Namespace,
    /// A stream, cache or consumer-group name.
    Resource,
    /// A (possibly wildcard) pattern over stream names.
    Pattern,
}

impl NameKind {
    fn allowed(self) -> &'static str {
        match self {
            NameKind::Tenant | NameKind::Namespace => "allowed are A-Z a-z 0-9 '_' '-'",
            NameKind::Resource => "allowed are A-Z a-z 0-9 '_' '-', with '.' between tokens",
            NameKind::Pattern => {
                "allowed are A-Z a-z 0-9 '_' '-', with '.' between tokens, \
                 and '*' or a final '>' as whole tokens"
            }
        }
    }
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Tenant => "tenant",
            NameKind::Namespace => "namespace",
            NameKind::Resource => "stream/cache/group",
            NameKind::Pattern => "pattern",
        })
    }
}

/// Why a name or pattern was rejected. Byte indices refer to the offending input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("{kind} name is empty")]
    Empty { kind: NameKind },
    /// The name is longer (in bytes) than its kind allows.
    #[error("{kind} name is {len} bytes long; the maximum is {max}")]
    TooLong {
        kind: NameKind,
        len: usize,
        max: usize,
    },
    /// The name contains a character its kind does not allow.
    #[error("{kind} name has invalid character {ch:?} at byte {index}; {}", .kind.allowed())]
    InvalidChar {
        kind: NameKind,
        ch: char,
        index: usize,
    },
    /// A dotted name has an empty token: a leading, trailing or doubled `.`.
    #[error("{kind} name has an empty token at byte {index} (leading, trailing or doubled '.')")]
    EmptyToken { kind: NameKind, index: usize },
    /// A pattern token mixes a wildcard with other characters (`ab*`); wildcards are whole tokens.
    #[error("pattern token {token:?} at byte {index} mixes a wildcard with other characters; '*' and '>' must be whole tokens")]
    PartialWildcard { token: String, index: usize },
    /// A pattern has `>` somewhere other than as its last token.
    #[error("'>' may only be the last token of a pattern (found at byte {index})")]
    TailNotLast { index: usize },
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn check_len(s: &str, kind: NameKind, max: usize) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty { kind });
    }
    if s.len() > max {
        return Err(NameError::TooLong {
            kind,
            len: s.len(),
            max,
        });
    }
    Ok(())
}

fn validate_simple(s: &str, kind: NameKind, max: usize) -> Result<(), NameError> {
    check_len(s, kind, max)?;
    match s.char_indices().find(|&(_, c)| !is_name_char(c)) {
        Some((index, ch)) => Err(NameError::InvalidChar { kind, ch, index }),
        None => Ok(()),
    }
}

/// Validates a tenant name: 1..=64 bytes of `[A-Za-z0-9_-]`.
pub fn validate_tenant(s: &str) -> Result<(), NameError> {
    validate_simple(s, NameKind::Tenant, MAX_TENANT_LEN)
}

/// Validates a namespace name: 1..=64 bytes of `[A-Za-z0-9_-]`.
pub fn validate_namespace(s: &str) -> Result<(), NameError> {
    validate_simple(s, NameKind::Namespace, MAX_NAMESPACE_LEN)
}

/// Validates a stream, cache or group name: 1..=255 bytes of dot-separated, non-empty
/// tokens of `[A-Za-z0-9_-]`.
pub fn validate_resource(s: &str) -> Result<(), NameError> {
    let kind = NameKind::Resource;
    check_len(s, kind, MAX_RESOURCE_LEN)?;
    for (start, token) in tokens(s) {
        if token.is_empty() {
            return Err(NameError::EmptyToken { kind, index: start });
        }
        if let Some((i, ch)) = token.char_indices().find(|&(_, c)| !is_name_char(c)) {
            return Err(NameError::InvalidChar {
                kind,
                ch,
                index: start + i,
            });
        }
    }
    Ok(())
}

/// Dot-separated tokens of `s` with the byte index where each starts.
fn tokens(s: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut start = 0;
    s.split('.').map(move |t| {
        let at = start;
        start += t.len() + 1;
        (at, t)
    })
}

/// True when `s` contains a wildcard character (`*` or `>`), i.e. it should be parsed with
/// [`Pattern::parse`] rather than validated as a literal name with [`validate_resource`].
/// Cheap; does not validate (`ab*` is "a pattern", which `Pattern::parse` then rejects with a
/// precise error).
pub fn is_pattern(s: &str) -> bool {
    s.bytes().any(|b| b == b'*' || b == b'>')
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Token {
    Literal(Box<str>),
    /// `*`: exactly one token.
    Any,
}

/// A parsed pattern over stream names. A pattern without wildcards is a literal and matches
/// exactly the one stream name equal to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pattern {
    raw: Box<str>,
    /// Tokens before an optional trailing `>`.
    tokens: Box<[Token]>,
    /// Ends with `>`: one or more further tokens.
    tail: bool,
    wildcard: bool,
}

impl Pattern {
    /// Parses and validates a pattern (a literal stream name is a valid pattern too).
    pub fn parse(s: &str) -> Result<Pattern, NameError> {
        let kind = NameKind::Pattern;
        check_len(s, kind, MAX_RESOURCE_LEN)?;
        let mut toks = Vec::new();
        let mut tail = false;
        for (start, token) in tokens(s) {
            if tail {
                // Something follows a `>`: report the `>` itself.
                return Err(NameError::TailNotLast {
                    index: start - 2, // the `>` and its `.` separator precede this token
                });
            }
            match token {
                "" => return Err(NameError::EmptyToken { kind, index: start }),
                "*" => toks.push(Token::Any),
                ">" => tail = true,
                _ => {
                    if let Some((i, ch)) = token.char_indices().find(|&(_, c)| !is_name_char(c)) {
                        if ch == '*' || ch == '>' {
                            return Err(NameError::PartialWildcard {
                                token: token.to_owned(),
                                index: start,
                            });
                        }
                        return Err(NameError::InvalidChar {
                            kind,
                            ch,
                            index: start + i,
                        });
                    }
                    toks.push(Token::Literal(token.into()));
                }
            }
        }
        let wildcard = tail || toks.iter().any(|t| matches!(t, Token::Any));
        Ok(Pattern {
            raw: s.into(),
            tokens: toks.into_boxed_slice(),
            tail,
            wildcard,
        })
    }

    /// True when the pattern contains `*` or `>` (so it may match more than one stream).
    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Whether `stream` (a stream name without tenant/namespace) matches this pattern.
    /// Meant for valid stream names; never panics on any input, and wildcards never match
    /// an empty token.
    pub fn matches(&self, stream: &str) -> bool {
        if !self.wildcard {
            return *self.raw == *stream;
        }
        let mut parts = stream.split('.');
        for tok in self.tokens.iter() {
            let part = match parts.next() {
                Some(p) if !p.is_empty() => p,
                _ => return false,
            };
            if let Token::Literal(lit) = tok {
                if **lit != *part {
                    return false;
                }
            }
        }
        if self.tail {
            let mut any = false;
            for p in parts {
                if p.is_empty() {
                    return false;
                }
                any = true;
            }
            any
        } else {
            parts.next().is_none()
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl FromStr for Pattern {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pattern::parse(s)
    }
}

/// Fully qualified stream (or cache/group) name; cheap to clone, usable as a `HashMap` key.
/// Displays as `tenant/namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    pub tenant: Arc<str>,
    pub namespace: Arc<str>,
    pub name: Arc<str>,
}

impl StreamKey {
    /// Builds a key after validating all three parts. Accepts `&str`, `String` or `Arc<str>`
    /// (an `Arc<str>` is shared, not copied).
    pub fn new(
        tenant: impl Into<Arc<str>>,
        namespace: impl Into<Arc<str>>,
        name: impl Into<Arc<str>>,
    ) -> Result<Self, NameError> {
        let key = StreamKey {
            tenant: tenant.into(),
            namespace: namespace.into(),
            name: name.into(),
        };
        validate_tenant(&key.tenant)?;
        validate_namespace(&key.namespace)?;
        validate_resource(&key.name)?;
        Ok(key)
    }
}

impl fmt::Display for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.tenant, self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn tenant_and_namespace_accept_charset_and_reject_dots() {
        assert_eq!(validate_tenant("acme_Co-1"), Ok(()));
        assert_eq!(validate_namespace("prod"), Ok(()));
        assert_eq!(
            validate_tenant("a.b"),
            Err(NameError::InvalidChar {
                kind: NameKind::Tenant,
                ch: '.',
                index: 1
            })
        );
        assert!(matches!(
            validate_namespace("caf\u{e9}"),
            Err(NameError::InvalidChar {
                ch: '\u{e9}',
                index: 3,
                ..
            })
        ));
    }

    #[test]
    fn empty_names_are_rejected() {
        let kind = NameKind::Tenant;
        assert_eq!(validate_tenant(""), Err(NameError::Empty { kind }));
        assert!(matches!(
            validate_resource(""),
            Err(NameError::Empty { .. })
        ));
        assert!(matches!(Pattern::parse(""), Err(NameError::Empty { .. })));
    }

    #[test]
    fn length_limits_are_64_for_tenant_namespace_and_255_for_resources() {
        assert!(validate_tenant(&"a".repeat(64)).is_ok());
        assert_eq!(
            validate_tenant(&"a".repeat(65)),
            Err(NameError::TooLong {
                kind: NameKind::Tenant,
                len: 65,
                max: 64
            })
        );
        assert!(validate_namespace(&"a".repeat(64)).is_ok());
        assert!(validate_namespace(&"a".repeat(65)).is_err());
        assert!(validate_resource(&"a".repeat(255)).is_ok());
        assert!(matches!(
            validate_resource(&"a".repeat(256)),
            Err(NameError::TooLong { max: 255, .. })
        ));
    }

    #[test]
    fn resource_names_are_dotted_tokens_without_empty_tokens() {
        assert!(validate_resource("orders").is_ok());
        assert!(validate_resource("orders.eu-west_1.v2").is_ok());
        for (bad, index) in [(".orders", 0), ("orders.", 7), ("orders..eu", 7), (".", 0)] {
            assert_eq!(
                validate_resource(bad),
                Err(NameError::EmptyToken {
                    kind: NameKind::Resource,
                    index
                }),
                "{bad}"
            );
        }
        assert!(matches!(
            validate_resource("orders.e u"),
            Err(NameError::InvalidChar {
                ch: ' ',
                index: 8,
                ..
            })
        ));
        assert!(matches!(
            validate_resource("orders.*"),
            Err(NameError::InvalidChar { ch: '*', .. })
        ));
    }

    #[test]
    fn error_messages_name_the_kind_and_the_rule() {
        let e = validate_resource("a..b").unwrap_err().to_string();
        assert!(
            e.contains("stream/cache/group") && e.contains("empty token"),
            "{e}"
        );
        let e = validate_tenant("a b").unwrap_err().to_string();
        assert!(
            e.contains("tenant") && e.contains("' '") && e.contains("A-Z"),
            "{e}"
        );
    }

    #[test]
    fn star_matches_exactly_one_token() {
        let p = Pattern::parse("orders.*").unwrap();
        assert!(p.is_wildcard());
        assert!(p.matches("orders.eu"));
        assert!(!p.matches("orders.eu.x"));
        assert!(!p.matches("orders"));
        assert!(!p.matches("orders."));
        assert!(!p.matches("payments.eu"));
        let mid = Pattern::parse("a.*.c").unwrap();
        assert!(mid.matches("a.b.c"));
        assert!(!mid.matches("a.b.d"));
        assert!(!mid.matches("a..c"));
    }

    #[test]
    fn tail_matches_one_or_more_trailing_tokens() {
        let p = Pattern::parse("orders.>").unwrap();
        assert!(p.is_wildcard());
        assert!(p.matches("orders.eu"));
        assert!(p.matches("orders.eu.x"));
        assert!(!p.matches("orders"));
        assert!(!p.matches("orders."));
        assert!(!p.matches("ordersx.eu"));
        let all = Pattern::parse(">").unwrap();
        assert!(all.matches("a") && all.matches("a.b.c"));
        assert!(!all.matches(""));
    }

    #[test]
    fn tail_may_only_be_last_and_wildcards_are_whole_tokens() {
        assert_eq!(
            Pattern::parse("orders.>.x"),
            Err(NameError::TailNotLast { index: 7 })
        );
        assert_eq!(
            Pattern::parse("ord*.eu"),
            Err(NameError::PartialWildcard {
                token: "ord*".into(),
                index: 0
            })
        );
        assert!(matches!(
            Pattern::parse("orders.eu>"),
            Err(NameError::PartialWildcard { index: 7, .. })
        ));
        assert!(matches!(
            Pattern::parse("orders..*"),
            Err(NameError::EmptyToken { index: 7, .. })
        ));
    }

    #[test]
    fn literal_pattern_is_not_a_wildcard_and_matches_only_itself() {
        let p: Pattern = "orders.eu".parse().unwrap();
        assert!(!p.is_wildcard());
        assert!(p.matches("orders.eu"));
        assert!(!p.matches("orders.eu.x"));
        assert!(!p.matches("orders"));
        assert_eq!(p.to_string(), "orders.eu");
    }

    #[test]
    fn is_pattern_detects_wildcard_characters() {
        assert!(is_pattern("orders.*"));
        assert!(is_pattern("orders.>"));
        assert!(is_pattern("ord*"));
        assert!(!is_pattern("orders.eu"));
    }

    #[test]
    fn stream_key_validates_displays_and_works_as_map_key() {
        let k = StreamKey::new("acme", "prod", "orders.eu").unwrap();
        assert_eq!(k.to_string(), "acme/prod/orders.eu");
        let tenant: Arc<str> = Arc::from("acme");
        let k2 = StreamKey::new(tenant.clone(), String::from("prod"), "orders.eu").unwrap();
        assert!(Arc::ptr_eq(&k2.tenant, &tenant));
        let mut map = HashMap::new();
        map.insert(k.clone(), 1);
        assert_eq!(map.get(&k2), Some(&1));
        assert!(matches!(
            StreamKey::new("acme", "pr.od", "x"),
            Err(NameError::InvalidChar {
                kind: NameKind::Namespace,
                ..
            })
        ));
        assert!(StreamKey::new("acme", "prod", "orders.*").is_err());
    }

    proptest! {
        #[test]
        fn matches_never_panics(pat in "[a-c*>.]{0,12}", stream in any::<String>()) {
            if let Ok(p) = Pattern::parse(&pat) {
                let _ = p.matches(&stream);
            }
        }

        #[test]
        fn matches_never_panics_on_dotted_input(pat in "[a-b*>.]{1,9}", stream in "[a-b.]{0,9}") {
            if let Ok(p) = Pattern::parse(&pat) {
                let _ = p.matches(&stream);
            }
        }

        #[test]
        fn literal_pattern_matches_exactly_itself(
            name in "[A-Za-z0-9_-]{1,6}(\\.[A-Za-z0-9_-]{1,6}){0,4}",
            other in "[A-Za-z0-9_.-]{0,20}",
        ) {
            prop_assert!(validate_resource(&name).is_ok());
            let p = Pattern::parse(&name).unwrap();
            prop_assert!(!p.is_wildcard());
            prop_assert!(p.matches(&name));
            prop_assert_eq!(p.matches(&other), other == name);
        }

        #[test]
        fn star_per_token_matches_valid_names_with_that_many_tokens(
            name in "[a-z]{1,4}(\\.[a-z]{1,4}){0,4}",
            n in 1usize..6,
        ) {
            let p = Pattern::parse(&vec!["*"; n].join(".")).unwrap();
            prop_assert_eq!(p.matches(&name), name.split('.').count() == n);
            prop_assert!(Pattern::parse(">").unwrap().matches(&name));
        }
    }
}
