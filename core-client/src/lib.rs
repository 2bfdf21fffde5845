//! felix-client: the one Rust client core of Felix.
//!
//! Every language reaches Felix through this crate (directly, through PyO3, napi-rs, or the C
//! ABI), so all protocol, pooling, batching and reconnect logic lives here and nowhere else.
//!
//! - [`Client`]: a pool of QUIC connections, each with several authenticated request streams
//!   carrying many requests in flight (matched by request id), reconnecting with jittered
//!   backoff; every call has a deadline.
//! - publish: [`Client::publish`], [`Client::publish_batch`] and the batching [`Publisher`];
//! - subscribe: [`Client::subscribe`] returns a [`Subscription`] (`futures::Stream`) that
//!   resumes after reconnects from the last offset seen and reports [`Gap`]s;
//! - queue: [`Client::consumer`] returns a [`Consumer`] (pull with long poll, ack, nack,
//!   extend, dead letters);
//! - cache: get, put with TTL, delete, put-if-absent, compare-and-set, multi-get;
//! - [`DirectCall`]: cache get/put/delete sent at once with their outcome handed to a callback
//!   (no future, timer or channel per call), for bindings with their own completion machinery;
//! - [`Driver`]: the runtime bindings share, driven by the thread that waits on a call;
//! - tokens: [`TokenSource`] (static, a callback, or an exchange at the control plane),
//!   refreshed before expiry and sent on live connections with `reauth` where granted;
//! - errors: [`Error`] with a stable [`ErrorCode`] shared with every binding.
//!
//! The client uses the fastest encodings the broker offers (binary cache frames, offset event
//! batches) and falls back to plain v1 where it must.

mod cache;
mod client;
mod config;
mod conn;
mod direct;
mod driver;
mod error;
mod exchange;
mod pool;
mod publish;
mod queue;
mod refresh;
mod subscribe;
pub mod sync;
mod token;

pub use bytes::Bytes;
pub use cache::{CacheValue, PutCondition};
pub use client::{Client, FullPolicy, StreamSettings};
pub use config::{ClientCert, ClientConfig, PublisherConfig, Tls};
pub use direct::{DirectCall, DirectHandle};
pub use driver::{Driver, Flavor, Tracked, Wake, QUIET};
pub use error::{Error, ErrorCode, Result};
pub use felix_transport::default_dev_ca_path;
pub use felix_wire::AckMode;
pub use publish::Publisher;
pub use queue::{Consumer, DeadLetter, GroupSettings, QueueMessage};
pub use refresh::TokenStats;
pub use subscribe::{Event, Gap, Start, Subscription};
pub use token::{
    FetchedToken, Lifetime, SubjectToken, TokenCallback, TokenCallbackError, TokenExchange,
    TokenRefresh, TokenSource, ID_TOKEN_TYPE,
};
