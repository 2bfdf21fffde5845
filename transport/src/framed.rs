//! Reads whole Felix frames from a QUIC receive stream (shared by the broker and the
//! client core, so both enforce the same limits the same way).

use felix_wire::{Frame, FrameAssembler, WireError};

/// Why no frame could be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadFrameError {
    /// The bytes were not a valid frame; framing is lost for this stream.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The stream or connection failed.
    #[error(transparent)]
    Read(#[from] quinn::ReadError),
    /// The peer finished the stream in the middle of a frame.
    #[error("stream ended inside a frame")]
    Truncated,
}

/// Splits a QUIC receive stream into frames.
pub struct FrameReader {
    recv: quinn::RecvStream,
    asm: FrameAssembler,
}

impl FrameReader {
    /// A reader enforcing `max_frame` on payloads.
    pub fn new(recv: quinn::RecvStream, max_frame: u32) -> Self {
        Self {
            recv,
            asm: FrameAssembler::new(max_frame),
        }
    }

    /// The next frame; `Ok(None)` when the peer finished the stream cleanly between frames.
    pub async fn next(&mut self) -> Result<Option<Frame>, ReadFrameError> {
        loop {
            if let Some(f) = self.asm.next_frame()? {
                return Ok(Some(f));
            }
            // Ask for what is missing but accept whatever quinn has buffered, so a burst of
            // small frames costs one call.
            let want = self.asm.needed().max(16 * 1024);
            match self.recv.read_chunk(want, true).await? {
                Some(chunk) => self.asm.push(&chunk.bytes),
                None if self.asm.buffered() == 0 => return Ok(None),
                None => return Err(ReadFrameError::Truncated),
            }
        }
    }

    /// Tells the peer to stop sending (used after a framing error).
    pub fn stop(&mut self, code: u32) {
        let _ = self.recv.stop(quinn::VarInt::from_u32(code));
    }
}
