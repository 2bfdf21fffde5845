//! Transport knobs, as an operator-facing TOML table.
//!
//! Quinn's defaults are tuned for the public Internet (333 ms initial RTT,
//! 100 concurrent streams, unbounded connection window). A broker on loopback
//! or a LAN wants the opposite trade-offs, and it needs far more streams than
//! 100 because every subscription is a stream. This module owns those choices
//! and turns them into a `quinn::TransportConfig`, rejecting combinations that
//! would only fail later in confusing ways (e.g. keep-alive slower than the
//! idle timeout, which silently drops idle subscribers).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::TransportError;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// QUIC caps stream counts at 2^60 (RFC 9000 §4.6); larger values are a
/// protocol error on the wire, so refuse them at load time.
const MAX_STREAM_COUNT: u64 = 1 << 60;

/// Transport knobs shared by servers and clients.
///
/// `Default` is tuned for latency on loopback / a LAN. Every field may be
/// omitted from a TOML table (`#[serde(default)]`); unknown keys are rejected
/// so a typo does not silently leave a default in force. Because TOML has no
/// null, every `Option` knob also accepts `0` to mean `None`.
///
/// Why each default:
/// - `stream_receive_window` = 2 MiB: a 1 MiB publish burst fits with 2x
///   headroom, and quinn re-grants credit every 1/8 window consumed, so on
///   loopback the sender never waits for a MAX_STREAM_DATA round trip.
/// - `receive_window` = 16 MiB: the real per-connection memory bound for data
///   a peer can make us buffer (4096 subscription streams x 2 MiB would
///   otherwise be 8 GiB), while still letting ~8 streams burst concurrently.
/// - `send_window` = 16 MiB: how much a connection may have queued or
///   unacknowledged before writes apply back-pressure to the broker; same
///   order as the receive side so neither end is the bottleneck.
/// - `max_concurrent_bidi_streams` = 1024: v1 clients open 40 request streams
///   at connect (quinn's default of 100 leaves little room); 1024 leaves room
///   for request pipelining without letting one client pin unbounded state.
/// - `max_concurrent_uni_streams` = 4096: the server opens one uni stream per
///   subscription, so on a client this is the per-connection subscription ceiling. A server
///   ignores it and allows clients none (they never open one; quinn would allocate the
///   state of all 4096 up front for every connection).
/// - `keep_alive_interval_ms` = 5000 with `idle_timeout_ms` = 30000: idle
///   subscribers must not be reaped; six keep-alives fit in one idle period,
///   so several consecutive losses are tolerated before the peer is declared
///   dead, and a dead peer is still noticed within 30 s.
/// - socket buffers = 2 MiB each: absorbs a burst of datagrams while the
///   receiving task is busy, instead of the kernel dropping them and QUIC
///   paying a loss-recovery delay. Linux caps these at `net.core.{r,w}mem_max`
///   (a capped value is logged).
/// - `initial_rtt_us` = 1000: before the first RTT sample quinn assumes
///   333 ms, which makes a lost handshake packet cost ~1 s on loopback. 1 ms is
///   still well above loopback RTT (~75 µs). On a WAN raise it (e.g. 100000)
///   or the handshake will be retransmitted spuriously.
/// - `datagram_receive_buffer` = `None`: Felix v1 uses streams only; not
///   advertising datagram support saves a per-connection buffer.
/// - `allow_migration` = true: long-lived idle subscribers behind NAT see
///   their port rebound; refusing migration would silently kill them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransportConfig {
    /// Per-stream flow-control window, bytes.
    pub stream_receive_window: u64,
    /// Connection-wide flow-control window, bytes (must be >= `stream_receive_window`).
    pub receive_window: u64,
    /// Bytes a connection may have queued/unacknowledged before writes block.
    pub send_window: u64,
    /// Bidirectional streams the peer may have open at once.
    pub max_concurrent_bidi_streams: u64,
    /// Unidirectional streams the peer may have open at once.
    pub max_concurrent_uni_streams: u64,
    /// Send a PING after this much silence; `None`/0 disables.
    pub keep_alive_interval_ms: Option<u64>,
    /// Close the connection after this much silence; 0 means never.
    pub idle_timeout_ms: u64,
    /// `SO_SNDBUF` request; `None`/0 keeps the OS default.
    pub socket_send_buffer_bytes: Option<usize>,
    /// `SO_RCVBUF` request; `None`/0 keeps the OS default.
    pub socket_recv_buffer_bytes: Option<usize>,
    /// RTT assumed before the first measurement, microseconds.
    pub initial_rtt_us: u64,
    /// Buffer for incoming QUIC datagrams; `None`/0 disables datagram support.
    pub datagram_receive_buffer: Option<usize>,
    /// Server only: accept packets from a client whose address changed.
    pub allow_migration: bool,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            stream_receive_window: 2 * MIB,
            receive_window: 16 * MIB,
            send_window: 16 * MIB,
            max_concurrent_bidi_streams: 1024,
            max_concurrent_uni_streams: 4096,
            keep_alive_interval_ms: Some(5_000),
            idle_timeout_ms: 30_000,
            socket_send_buffer_bytes: Some(2 * MIB as usize),
            socket_recv_buffer_bytes: Some(2 * MIB as usize),
            initial_rtt_us: 1_000,
            datagram_receive_buffer: None,
            allow_migration: true,
        }
    }
}

/// TOML cannot express `None`, so `0` doubles as "off" for optional knobs.
fn nonzero<T: PartialEq + Default + Copy>(v: Option<T>) -> Option<T> {
    v.filter(|x| *x != T::default())
}

fn varint(name: &str, value: u64) -> Result<quinn::VarInt, TransportError> {
    quinn::VarInt::from_u64(value)
        .map_err(|_| TransportError::InvalidConfig(format!("{name} = {value} exceeds 2^62-1")))
}

impl TransportConfig {
    /// Keep-alive interval after normalising `0` to "disabled".
    pub fn keep_alive_interval(&self) -> Option<Duration> {
        nonzero(self.keep_alive_interval_ms).map(Duration::from_millis)
    }

    /// Idle timeout after normalising `0` to "never".
    pub fn idle_timeout(&self) -> Option<Duration> {
        (self.idle_timeout_ms != 0).then(|| Duration::from_millis(self.idle_timeout_ms))
    }

    /// Check ranges and cross-field consistency without building anything.
    pub fn validate(&self) -> Result<(), TransportError> {
        let bad = |msg: String| Err(TransportError::InvalidConfig(msg));
        if self.stream_receive_window == 0 {
            return bad("stream_receive_window must be > 0".into());
        }
        if self.stream_receive_window > self.receive_window {
            // quinn would accept it, but the per-stream window could then
            // never be used in full: almost certainly a units mistake.
            return bad(format!(
                "stream_receive_window ({}) must not exceed receive_window ({})",
                self.stream_receive_window, self.receive_window
            ));
        }
        if self.send_window == 0 {
            return bad("send_window must be > 0".into());
        }
        for (name, v) in [
            (
                "max_concurrent_bidi_streams",
                self.max_concurrent_bidi_streams,
            ),
            (
                "max_concurrent_uni_streams",
                self.max_concurrent_uni_streams,
            ),
        ] {
            if v > MAX_STREAM_COUNT {
                return bad(format!("{name} = {v} exceeds the QUIC limit of 2^60"));
            }
        }
        if self.initial_rtt_us == 0 {
            return bad("initial_rtt_us must be > 0".into());
        }
        if let (Some(ka), Some(idle)) = (self.keep_alive_interval(), self.idle_timeout()) {
            if ka >= idle {
                return bad(format!(
                    "keep_alive_interval_ms ({}) must be below idle_timeout_ms ({}), \
                     otherwise idle connections time out between keep-alives",
                    ka.as_millis(),
                    idle.as_millis()
                ));
            }
        }
        Ok(())
    }

    /// Build the quinn transport config (validates first).
    pub fn to_quinn(&self) -> Result<quinn::TransportConfig, TransportError> {
        self.validate()?;
        let mut t = quinn::TransportConfig::default();
        t.stream_receive_window(varint("stream_receive_window", self.stream_receive_window)?)
            .receive_window(varint("receive_window", self.receive_window)?)
            .send_window(self.send_window)
            .max_concurrent_bidi_streams(varint(
                "max_concurrent_bidi_streams",
                self.max_concurrent_bidi_streams,
            )?)
            .max_concurrent_uni_streams(varint(
                "max_concurrent_uni_streams",
                self.max_concurrent_uni_streams,
            )?)
            .keep_alive_interval(self.keep_alive_interval())
            .initial_rtt(Duration::from_micros(self.initial_rtt_us))
            .datagram_receive_buffer_size(nonzero(self.datagram_receive_buffer));
        let idle = match self.idle_timeout() {
            Some(d) => Some(quinn::IdleTimeout::try_from(d).map_err(|_| {
                TransportError::InvalidConfig(format!(
                    "idle_timeout_ms = {} is out of range",
                    self.idle_timeout_ms
                ))
            })?),
            None => None,
        };
        t.max_idle_timeout(idle);
        Ok(t)
    }

    pub(crate) fn send_buffer(&self) -> Option<usize> {
        nonzero(self.socket_send_buffer_bytes)
    }

    pub(crate) fn recv_buffer(&self) -> Option<usize> {
        nonzero(self.socket_recv_buffer_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        TransportConfig::default().to_quinn().unwrap();
    }

    #[test]
    fn partial_toml_fills_defaults() {
        let cfg: TransportConfig = toml::from_str(
            "stream_receive_window = 8388608\n\
             receive_window = 67108864\n\
             keep_alive_interval_ms = 0\n",
        )
        .unwrap();
        assert_eq!(cfg.stream_receive_window, 8 * MIB);
        assert_eq!(cfg.receive_window, 64 * MIB);
        assert_eq!(cfg.keep_alive_interval(), None);
        let d = TransportConfig::default();
        assert_eq!(
            cfg.max_concurrent_bidi_streams,
            d.max_concurrent_bidi_streams
        );
        assert_eq!(cfg.idle_timeout_ms, d.idle_timeout_ms);
        assert_eq!(cfg.initial_rtt_us, d.initial_rtt_us);
        cfg.to_quinn().unwrap();
    }

    #[test]
    fn empty_table_is_default_and_roundtrips() {
        let cfg: TransportConfig = toml::from_str("").unwrap();
        assert_eq!(cfg, TransportConfig::default());
        let text = toml::to_string(&cfg).unwrap();
        assert_eq!(toml::from_str::<TransportConfig>(&text).unwrap(), cfg);
    }

    #[test]
    fn unknown_key_is_rejected() {
        let err = toml::from_str::<TransportConfig>("stream_recieve_window = 1").unwrap_err();
        assert!(err.to_string().contains("stream_recieve_window"), "{err}");
    }

    #[test]
    fn inconsistent_knobs_are_rejected() {
        let cases = [
            TransportConfig {
                keep_alive_interval_ms: Some(30_000),
                idle_timeout_ms: 30_000,
                ..Default::default()
            },
            TransportConfig {
                stream_receive_window: 32 * MIB,
                ..Default::default()
            },
            TransportConfig {
                initial_rtt_us: 0,
                ..Default::default()
            },
            TransportConfig {
                max_concurrent_uni_streams: (1 << 60) + 1,
                ..Default::default()
            },
            TransportConfig {
                receive_window: u64::MAX,
                ..Default::default()
            },
        ];
        for cfg in cases {
            assert!(
                matches!(cfg.to_quinn(), Err(TransportError::InvalidConfig(_))),
                "{cfg:?}"
            );
        }
    }

    #[test]
    fn zero_idle_timeout_means_never_and_allows_any_keep_alive() {
        let cfg = TransportConfig {
            idle_timeout_ms: 0,
            keep_alive_interval_ms: Some(60_000),
            ..Default::default()
        };
        assert_eq!(cfg.idle_timeout(), None);
        cfg.to_quinn().unwrap();
    }
}
