//! felix-broker: the log, streams, queues, cache and auth of a Felix broker, and the QUIC
//! server that exposes them.
//!
//! Three semantics are projections over one core [`log`]: [`stream`] (fanout cursors per
//! subscription), [`queue`] (shared consumer-group cursors with leases and acks) and
//! [`cache`] (key -> latest value with TTL and a byte budget). [`registry`] names them per
//! tenant and namespace; [`server`] speaks the wire protocol; [`auth`] is the one place a
//! token is checked.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let broker = felix_broker::server::Broker::start(Default::default()).await?;
//! println!("listening on {}", broker.local_addr());
//! broker.shutdown().await;
//! # Ok(()) }
//! ```

pub mod audit;
pub mod auth;
pub mod budget;
pub mod cache;
pub mod config;
pub mod datadir;
pub mod defs;
pub mod error;
mod http;
pub mod log;
pub mod metrics;
pub mod names;
pub mod queue;
pub mod quota;
pub mod registry;
pub mod server;
pub mod stream;

pub use config::BrokerConfig;
pub use error::BrokerError;
pub use server::Broker;
