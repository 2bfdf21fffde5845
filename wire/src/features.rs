//! Extension feature bits, negotiated in `auth` (`client_features` low 32 bits,
//! `client_features_hi` high 32 bits) and `auth_ok` (`server_features`,
//! `server_features_hi`). A broker never sends an extension to a stream whose client did not
//! ask for it; the effective set is the intersection.

/// Errors carry a stable `code` and `retryable` (JSON errors, binary ack trailer).
pub const ERROR_CODES: u64 = 1 << 0;
/// Consumer groups: `group_create`, `queue_pull`, `queue_ack`, `queue_nack`, `queue_extend`,
/// dead letters.
pub const QUEUES: u64 = 1 << 1;
/// Cache delete, put-if-absent, compare-and-set, multi-get and versions on values.
pub const CACHE_EXT: u64 = 1 << 2;
/// Binary extension frames (`0x0020`) for cache get/put/delete.
pub const BINARY_EXT: u64 = 1 << 3;
/// Wildcard stream patterns (`orders.*`, `orders.>`) in `subscribe`.
pub const WILDCARD: u64 = 1 << 4;
/// `start` in `subscribe` (`latest`, `earliest`, or an offset).
pub const SUBSCRIBE_FROM: u64 = 1 << 5;
/// Offsets on events (`0x0040` batches, `offset(s)` in JSON events) and `subscription_end`.
pub const EVENT_OFFSETS: u64 = 1 << 6;
/// Explicit creation of streams, caches and groups with settings.
pub const ADMIN: u64 = 1 << 7;
/// `ping` / `pong` on request streams.
pub const PING: u64 = 1 << 8;
/// `reauth` on request streams: a fresh token replaces the connection's current one without
/// reconnecting; a token that expires unrefreshed ends the streams acting on it.
pub const TOKEN_REFRESH: u64 = 1 << 9;

/// Every feature this implementation knows.
pub const ALL: u64 = ERROR_CODES
    | QUEUES
    | CACHE_EXT
    | BINARY_EXT
    | WILDCARD
    | SUBSCRIBE_FROM
    | EVENT_OFFSETS
    | ADMIN
    | PING
    | TOKEN_REFRESH;

/// Joins the two 32-bit halves carried in JSON.
pub fn join(lo: Option<u32>, hi: Option<u32>) -> u64 {
    u64::from(lo.unwrap_or(0)) | (u64::from(hi.unwrap_or(0)) << 32)
}

/// Splits a feature set into the (low, high) halves carried in JSON.
pub fn split(bits: u64) -> (u32, u32) {
    (bits as u32, (bits >> 32) as u32)
}
