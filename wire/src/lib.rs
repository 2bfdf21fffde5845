//! felix-wire: the Felix wire protocol as data, with no I/O.
//!
//! The broker and every client share this one definition, tested on bytes alone (the same
//! split quinn makes between `quinn-proto` and `quinn`). It holds:
//!
//! - [`frame`]: the 12-byte `FLX1` header, flags, and a [`frame::FrameAssembler`] that turns a
//!   byte stream into frames while rejecting bad magic, unknown versions and oversized lengths
//!   before buffering a payload;
//! - [`message`]: JSON control messages, v1 and our extensions;
//! - [`binary`]: the binary data plane (publish batches, event batches, acks);
//! - [`ext`]: negotiated binary fast paths for the cache;
//! - [`features`]: extension bits negotiated in `auth` / `auth_ok`;
//! - [`error`]: decode errors and the stable [`ErrorCode`]s shared by every language.
//!
//! ```
//! use felix_wire::{decode, Decoded, Message, frame::{Frame, DEFAULT_MAX_FRAME}};
//! let bytes = Message::Ok { request_id: None }.to_frame_bytes();
//! let frame = Frame::decode_exact(&bytes, DEFAULT_MAX_FRAME).unwrap();
//! assert!(matches!(decode(frame).unwrap(), Decoded::Json(Message::Ok { .. })));
//! ```

pub mod b64;
pub mod binary;
pub mod error;
pub mod ext;
pub mod features;
pub mod frame;
pub mod message;

pub use binary::{AckError, AckMode, BinaryAck, EventBatch, OffsetEventBatch, PublishBatch};
pub use error::{ErrorCode, WireError};
pub use ext::{encode_cache_request, CacheRequest, CacheTarget, CacheTargetRef, ExtFrame, PutCond};
pub use frame::{flags, Frame, FrameAssembler, FrameHeader};
pub use message::{CacheEntry, DeadLetterMessage, Message, QueueMessage, StartPos};

/// ALPN protocol id of Felix wire v1.
pub const ALPN: &[u8] = b"felix/1";

/// A decoded frame payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// JSON control message.
    Json(Message),
    /// Binary publish batch, acked or not.
    Publish(PublishBatch),
    /// Binary event batch for one subscription.
    Events(EventBatch),
    /// Binary event batch without subscription id.
    EventsNoSub(Vec<Bytes>),
    /// Binary publish ack.
    Ack(BinaryAck),
    /// Extension binary frame.
    Ext(ExtFrame),
    /// Extension event batch with offsets.
    OffsetEvents(OffsetEventBatch),
}

use bytes::Bytes;

/// Decodes a frame's payload according to its flags.
pub fn decode(frame: Frame) -> Result<Decoded, WireError> {
    match frame.flags {
        flags::JSON => Message::decode(&frame.payload).map(Decoded::Json),
        f if f == flags::PUBLISH_BATCH || f == flags::PUBLISH_BATCH | flags::ACKED => {
            PublishBatch::decode(f, frame.payload).map(Decoded::Publish)
        }
        flags::EVENT_BATCH => EventBatch::decode(frame.payload).map(Decoded::Events),
        flags::EVENT_BATCH_NO_SUB => {
            EventBatch::decode_no_sub(frame.payload).map(Decoded::EventsNoSub)
        }
        flags::BINARY_ACK => BinaryAck::decode(frame.payload).map(Decoded::Ack),
        flags::EXT_BINARY => ExtFrame::decode(frame.payload).map(Decoded::Ext),
        flags::EVENT_BATCH_OFFSETS => {
            OffsetEventBatch::decode(frame.payload).map(Decoded::OffsetEvents)
        }
        other => Err(WireError::UnknownFlags(other)),
    }
}
