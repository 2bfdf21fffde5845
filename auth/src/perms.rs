//! Permissions: which actions a token grants on which resources of its tenant.
//!
//! A token carries a list of [`Grant`]s; each names actions and resource patterns. The tenant
//! is never part of a pattern: a token only ever acts inside the tenant it was issued for (the
//! broker checks that separately), so no grant can reach across tenants.
//!
//! Resource pattern grammar (one source of truth; the control plane validates role
//! definitions with it, the broker compiles tokens with it):
//!
//! ```text
//! resource  = ">"                      ; everything in the tenant
//!           | namespace "/" name-pattern
//! namespace = "*" | 1*64 [A-Za-z0-9_-]
//! name-pattern = token *("." token)    ; '>' only as the last token
//! token     = 1*[A-Za-z0-9_-] | "*" | ">"
//! ```
//!
//! `*` matches exactly one dot-separated token, a final `>` one or more, as in subscription
//! patterns: `payments/orders.>` covers `orders.eu` and `orders.eu.fr` but not `orders`.
//!
//! [`Permissions::compile`] turns grants into per-action lists so a check is a few token
//! comparisons without allocation.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest namespace in a pattern, as in resource names.
const MAX_NAMESPACE_LEN: usize = 64;
/// Longest name pattern, as in resource names.
const MAX_NAME_LEN: usize = 255;
/// Most grants a token may carry: bounds the work of compiling and of every check.
pub const MAX_GRANTS: usize = 64;
/// Most resource patterns per grant.
pub const MAX_RESOURCES_PER_GRANT: usize = 64;

/// Something a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Action {
    /// Publish to a stream.
    Publish,
    /// Subscribe to a stream (each stream a wildcard subscription matches is checked).
    Subscribe,
    /// Consume from a queue group (pull, ack, nack, dead letters).
    Consume,
    /// Read a cache.
    CacheRead,
    /// Write a cache (put, delete, CAS).
    CacheWrite,
    /// Create or change streams, caches and groups.
    Admin,
}

impl Action {
    /// Every action, in a fixed order (the index of the compiled tables).
    pub const ALL: [Action; 6] = [
        Action::Publish,
        Action::Subscribe,
        Action::Consume,
        Action::CacheRead,
        Action::CacheWrite,
        Action::Admin,
    ];

    /// The name used in tokens, role definitions and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Publish => "publish",
            Action::Subscribe => "subscribe",
            Action::Consume => "consume",
            Action::CacheRead => "cache.read",
            Action::CacheWrite => "cache.write",
            Action::Admin => "admin",
        }
    }

    /// Parses a token/role action name (not `*`, which [`Grant`] handles).
    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Actions on resources, as carried in a token's `perms` claim and in role definitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Action names ([`Action::as_str`]) or `"*"` for all of them.
    pub actions: Vec<String>,
    /// Resource patterns (see the module documentation).
    pub resources: Vec<String>,
}

impl Grant {
    /// Checks the grant against the grammar without compiling it.
    pub fn validate(&self) -> Result<(), PermError> {
        Permissions::compile(std::slice::from_ref(self)).map(|_| ())
    }
}

/// Why a grant was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PermError {
    /// An action name that is neither a known action nor `*`.
    #[error("unknown action {0:?} (known: publish, subscribe, consume, cache.read, cache.write, admin, *)")]
    UnknownAction(String),
    /// A resource pattern outside the grammar.
    #[error("bad resource pattern {pattern:?}: {reason}")]
    BadResource {
        /// The pattern as given.
        pattern: String,
        /// What rule it breaks.
        reason: &'static str,
    },
    /// More grants or patterns than a token may carry.
    #[error("too many {0} (at most {1})")]
    TooMany(&'static str, usize),
    /// A grant without actions or without resources grants nothing and is a mistake.
    #[error("a grant needs at least one action and one resource")]
    Empty,
}

/// One compiled resource pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    /// `None` = any namespace.
    namespace: Option<Box<str>>,
    /// Name tokens; `None` = the whole tenant (`>` alone).
    name: Option<Box<[Tok]>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(Box<str>),
    One,
    Tail,
}

impl Pattern {
    fn parse(s: &str) -> Result<Pattern, PermError> {
        let bad = |reason| PermError::BadResource {
            pattern: s.chars().take(300).collect(),
            reason,
        };
        if s == ">" {
            return Ok(Pattern {
                namespace: None,
                name: None,
            });
        }
        let (ns, name) = s
            .split_once('/')
            .ok_or_else(|| bad("expected NAMESPACE/NAME or '>'"))?;
        let namespace = if ns == "*" {
            None
        } else {
            if ns.is_empty() || ns.len() > MAX_NAMESPACE_LEN || !ns.chars().all(is_name_char) {
                return Err(bad("namespace must be '*' or 1-64 of A-Z a-z 0-9 '_' '-'"));
            }
            Some(ns.into())
        };
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(bad("name pattern must be 1-255 bytes"));
        }
        let parts: Vec<&str> = name.split('.').collect();
        let mut toks = Vec::with_capacity(parts.len());
        for (i, t) in parts.iter().enumerate() {
            toks.push(match *t {
                "*" => Tok::One,
                ">" if i + 1 == parts.len() => Tok::Tail,
                ">" => return Err(bad("'>' may only be the last token")),
                "" => return Err(bad("empty token (leading, trailing or doubled '.')")),
                t if t.chars().all(is_name_char) => Tok::Lit(t.into()),
                _ => return Err(bad("tokens are A-Z a-z 0-9 '_' '-', '*' or a final '>'")),
            });
        }
        Ok(Pattern {
            namespace,
            name: Some(toks.into()),
        })
    }

    fn matches(&self, namespace: &str, name: &str) -> bool {
        if let Some(ns) = &self.namespace {
            if **ns != *namespace {
                return false;
            }
        }
        let Some(toks) = &self.name else {
            return true;
        };
        let mut parts = name.split('.');
        for tok in toks.iter() {
            match tok {
                // One or more remaining tokens, each non-empty.
                Tok::Tail => return parts.next().is_some_and(|p| !p.is_empty()),
                Tok::One => match parts.next() {
                    Some(p) if !p.is_empty() => {}
                    _ => return false,
                },
                Tok::Lit(l) => match parts.next() {
                    Some(p) if p == &**l => {}
                    _ => return false,
                },
            }
        }
        parts.next().is_none()
    }

    fn covers_namespace(&self, namespace: &str) -> bool {
        self.namespace.as_deref().is_none_or(|ns| ns == namespace)
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Grants compiled per action, checked on every request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    by_action: [Vec<Pattern>; 6],
}

impl Permissions {
    /// Compiles grants; refuses any grant outside the grammar (a token carrying one is refused
    /// as a whole rather than half-applied).
    pub fn compile(grants: &[Grant]) -> Result<Permissions, PermError> {
        if grants.len() > MAX_GRANTS {
            return Err(PermError::TooMany("grants", MAX_GRANTS));
        }
        let mut perms = Permissions::default();
        for g in grants {
            if g.actions.is_empty() || g.resources.is_empty() {
                return Err(PermError::Empty);
            }
            if g.resources.len() > MAX_RESOURCES_PER_GRANT {
                return Err(PermError::TooMany(
                    "resources in a grant",
                    MAX_RESOURCES_PER_GRANT,
                ));
            }
            let mut actions = [false; 6];
            for a in &g.actions {
                if a == "*" {
                    actions = [true; 6];
                } else {
                    let act =
                        Action::parse(a).ok_or_else(|| PermError::UnknownAction(a.clone()))?;
                    actions[act.index()] = true;
                }
            }
            let patterns = g
                .resources
                .iter()
                .map(|r| Pattern::parse(r))
                .collect::<Result<Vec<_>, _>>()?;
            for (i, on) in actions.iter().enumerate() {
                if *on {
                    for p in &patterns {
                        if !perms.by_action[i].contains(p) {
                            perms.by_action[i].push(p.clone());
                        }
                    }
                }
            }
        }
        Ok(perms)
    }

    /// Everything on every resource of the tenant (dev mode, static tokens).
    pub fn all() -> Permissions {
        let all = Pattern {
            namespace: None,
            name: None,
        };
        Permissions {
            by_action: std::array::from_fn(|_| vec![all.clone()]),
        }
    }

    /// Whether `action` is allowed on the resource `namespace/name` of the token's tenant.
    pub fn allows(&self, action: Action, namespace: &str, name: &str) -> bool {
        self.by_action[action.index()]
            .iter()
            .any(|p| p.matches(namespace, name))
    }

    /// Whether `action` is allowed on at least some resource of `namespace`: the check made
    /// when a wildcard subscription is opened (each stream it then matches is checked with
    /// [`Permissions::allows`]).
    pub fn allows_some_in(&self, action: Action, namespace: &str) -> bool {
        self.by_action[action.index()]
            .iter()
            .any(|p| p.covers_namespace(namespace))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(actions: &[&str], resources: &[&str]) -> Grant {
        Grant {
            actions: actions.iter().map(|s| s.to_string()).collect(),
            resources: resources.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn perms(g: &[Grant]) -> Permissions {
        Permissions::compile(g).unwrap()
    }

    #[test]
    fn exact_resource_allows_only_that_action_and_name() {
        let p = perms(&[grant(&["publish"], &["payments/orders"])]);
        assert!(p.allows(Action::Publish, "payments", "orders"));
        assert!(!p.allows(Action::Subscribe, "payments", "orders"));
        assert!(!p.allows(Action::Publish, "payments", "orders.eu"));
        assert!(!p.allows(Action::Publish, "payments", "order"));
        assert!(!p.allows(Action::Publish, "other", "orders"));
    }

    #[test]
    fn star_is_one_token_and_tail_is_one_or_more() {
        let p = perms(&[grant(&["subscribe"], &["ns/orders.*", "ns/audit.>"])]);
        assert!(p.allows(Action::Subscribe, "ns", "orders.eu"));
        assert!(!p.allows(Action::Subscribe, "ns", "orders.eu.fr"));
        assert!(!p.allows(Action::Subscribe, "ns", "orders"));
        assert!(p.allows(Action::Subscribe, "ns", "audit.a"));
        assert!(p.allows(Action::Subscribe, "ns", "audit.a.b"));
        assert!(!p.allows(Action::Subscribe, "ns", "audit"));
        assert!(!p.allows(Action::Subscribe, "ns", "auditx.a"));
    }

    #[test]
    fn any_namespace_and_whole_tenant() {
        let p = perms(&[
            grant(&["cache.read"], &["*/sessions"]),
            grant(&["admin"], &[">"]),
        ]);
        assert!(p.allows(Action::CacheRead, "a", "sessions"));
        assert!(p.allows(Action::CacheRead, "b", "sessions"));
        assert!(!p.allows(Action::CacheWrite, "a", "sessions"));
        assert!(p.allows(Action::Admin, "x", "y.z"));
        assert!(!p.allows(Action::Publish, "x", "y"));
    }

    #[test]
    fn star_action_grants_every_action() {
        let p = perms(&[grant(&["*"], &["ns/>"])]);
        for a in Action::ALL {
            assert!(p.allows(a, "ns", "s"), "{a}");
            assert!(!p.allows(a, "other", "s"), "{a}");
        }
        assert!(Permissions::all().allows(Action::Admin, "q", "r"));
    }

    #[test]
    fn no_grants_allow_nothing() {
        let p = perms(&[]);
        for a in Action::ALL {
            assert!(!p.allows(a, "ns", "s"));
            assert!(!p.allows_some_in(a, "ns"));
        }
    }

    #[test]
    fn allows_some_in_looks_at_the_namespace_only() {
        let p = perms(&[grant(&["subscribe"], &["ns/orders.>"])]);
        assert!(p.allows_some_in(Action::Subscribe, "ns"));
        assert!(!p.allows_some_in(Action::Subscribe, "other"));
        assert!(!p.allows_some_in(Action::Publish, "ns"));
        let any = perms(&[grant(&["subscribe"], &["*/x"])]);
        assert!(any.allows_some_in(Action::Subscribe, "whatever"));
    }

    #[test]
    fn grammar_errors_are_refused_with_the_rule() {
        for (r, why) in [
            ("orders", "expected"),
            ("/orders", "namespace"),
            ("n.s/orders", "namespace"),
            ("ns/", "1-255"),
            ("ns/a..b", "empty token"),
            ("ns/a.>.b", "last token"),
            ("ns/a b", "tokens are"),
            ("ns/or*ders", "tokens are"),
        ] {
            match Grant::validate(&grant(&["publish"], &[r])) {
                Err(PermError::BadResource { reason, .. }) => {
                    assert!(reason.contains(why), "{r}: {reason}")
                }
                other => panic!("{r}: {other:?}"),
            }
        }
        assert_eq!(
            grant(&["publsh"], &[">"]).validate(),
            Err(PermError::UnknownAction("publsh".into()))
        );
        assert_eq!(grant(&[], &[">"]).validate(), Err(PermError::Empty));
        assert_eq!(grant(&["publish"], &[]).validate(), Err(PermError::Empty));
        let many = vec![grant(&["publish"], &[">"]); MAX_GRANTS + 1];
        assert!(matches!(
            Permissions::compile(&many),
            Err(PermError::TooMany("grants", _))
        ));
        let res: Vec<String> = (0..=MAX_RESOURCES_PER_GRANT)
            .map(|i| format!("n/r{i}"))
            .collect();
        let g = Grant {
            actions: vec!["publish".into()],
            resources: res,
        };
        assert!(matches!(g.validate(), Err(PermError::TooMany(..))));
        // Exactly at the bounds is fine.
        assert!(Permissions::compile(&vec![grant(&["publish"], &[">"]); MAX_GRANTS]).is_ok());
    }

    #[test]
    fn action_names_round_trip() {
        for a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()), Some(a));
        }
        assert_eq!(Action::parse("*"), None);
    }

    proptest::proptest! {
        #[test]
        fn matching_never_panics(pat in "[a-c*>./]{1,10}", ns in "[a-c]{0,3}", name in "[a-c.]{0,8}") {
            if let Ok(p) = Permissions::compile(&[grant(&["publish"], &[&pat])]) {
                let _ = p.allows(Action::Publish, &ns, &name);
            }
        }
    }
}
