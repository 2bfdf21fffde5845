//! The Felix token contract, shared by the control plane (which issues tokens), the broker
//! (which verifies them and enforces their permissions) and the client core (which carries
//! them). One definition, as `felix-wire` is for frames.
//!
//! * [`perms`]: actions, grants and the resource-pattern grammar, compiled for fast checks.
//! * [`claims`]: the claims of a Felix JWT, the JWKS of Felix keys and the revocation feed.
//! * [`peek`]: a token's `exp` read without verifying it (a client's refresh schedule).
//! * [`token`]: Ed25519 (EdDSA) signing and verification of Felix JWTs, time as an argument.
//!
//! See `docs/security.md` for the trust chain these pieces form.

pub mod claims;
pub mod peek;
pub mod perms;
pub mod token;
pub mod url;

pub use claims::{Claims, Jwk, Jwks, RevocationList, RevokedJti, RevokedSubject};
pub use peek::{unverified_times, UnverifiedTimes};
pub use perms::{Action, Grant, PermError, Permissions};
pub use token::{KeyError, SigningKey, TokenError, Verifier, VerifierConfig};
