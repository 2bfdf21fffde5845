//! Bytes in, owned results out.
//!
//! Inputs are borrowed [`FelixBytes`] views, copied before the call returns (so a caller may
//! reuse or free its buffers at once, and Go may pass pointers to its own memory). Every
//! successful call that produces data hands back one owned [`FelixResult`], released with
//! `felix_result_free`; its items point into memory the result owns.

use std::ptr;
use std::sync::Arc;

use bytes::Bytes;

use crate::client::FelixClient;
use crate::error::{quiet, Failure, Res};
use crate::subscribe::FelixSubscription;

/// A borrowed byte string: `ptr` may be NULL only when `len` is 0. Names and keys must be
/// valid UTF-8.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct FelixBytes {
    /// First byte.
    pub ptr: *const u8,
    /// Length in bytes.
    pub len: usize,
}

impl FelixBytes {
    pub(crate) const EMPTY: Self = Self {
        ptr: ptr::null(),
        len: 0,
    };

    fn of(b: &[u8]) -> Self {
        Self {
            ptr: b.as_ptr(),
            len: b.len(),
        }
    }

    /// The bytes, checked for NULL.
    ///
    /// # Safety
    /// `ptr` is valid for `len` bytes for the lifetime `'a`.
    pub(crate) unsafe fn slice<'a>(&self, what: &str) -> Res<&'a [u8]> {
        if self.len == 0 {
            return Ok(&[]);
        }
        if self.ptr.is_null() {
            return Err(Failure::invalid(format!(
                "{what} is NULL with length {}",
                self.len
            )));
        }
        if self.len > isize::MAX as usize {
            return Err(Failure::invalid(format!("{what} is too long")));
        }
        // SAFETY: checked non-NULL; the caller guarantees `len` readable bytes.
        Ok(unsafe { std::slice::from_raw_parts(self.ptr, self.len) })
    }

    /// UTF-8 text (may be empty).
    ///
    /// # Safety
    /// As [`FelixBytes::slice`].
    pub(crate) unsafe fn text(&self, what: &str) -> Res<String> {
        // SAFETY: forwarded.
        unsafe { self.text_ref(what) }.map(str::to_owned)
    }

    /// UTF-8 text (may be empty), borrowed no longer than this view.
    ///
    /// # Safety
    /// As [`FelixBytes::slice`], for as long as the result is used.
    pub(crate) unsafe fn text_ref(&self, what: &str) -> Res<&str> {
        // SAFETY: forwarded.
        let b = unsafe { self.slice(what) }?;
        std::str::from_utf8(b).map_err(|_| Failure::invalid(format!("{what} is not valid UTF-8")))
    }

    /// A non-empty UTF-8 name.
    ///
    /// # Safety
    /// As [`FelixBytes::slice`].
    pub(crate) unsafe fn name(&self, what: &str) -> Res<String> {
        // SAFETY: forwarded.
        unsafe { self.name_ref(what) }.map(str::to_owned)
    }

    /// A non-empty UTF-8 name, borrowed no longer than this view.
    ///
    /// # Safety
    /// As [`FelixBytes::slice`], for as long as the result is used.
    pub(crate) unsafe fn name_ref(&self, what: &str) -> Res<&str> {
        // SAFETY: forwarded.
        let s = unsafe { self.text_ref(what) }?;
        if s.is_empty() {
            return Err(Failure::invalid(format!("{what} must not be empty")));
        }
        Ok(s)
    }

    /// An owned copy of the bytes.
    ///
    /// # Safety
    /// As [`FelixBytes::slice`].
    pub(crate) unsafe fn copy_bytes(&self, what: &str) -> Res<Bytes> {
        // SAFETY: forwarded.
        Ok(Bytes::copy_from_slice(unsafe { self.slice(what) }?))
    }
}

/// Reads `len` items at `ptr` (NULL allowed when `len` is 0).
///
/// # Safety
/// `ptr` is valid for `len` items.
pub(crate) unsafe fn array<'a, T>(ptr: *const T, len: usize, what: &str) -> Res<&'a [T]> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Failure::invalid(format!(
            "{what} is NULL with length {len}"
        )));
    }
    // SAFETY: per the contract.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// One element of a result: a cache value, event, queue message, dead letter or gap. Which
/// fields mean something depends on the call (each call's documentation says).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct FelixItem {
    /// Cache value, event or message payload (owned by the result).
    pub payload: FelixBytes,
    /// UTF-8 text: an event's stream, a dead letter's reason, a gap's stream.
    pub text: FelixBytes,
    /// Event/message/dead-letter offset, cache version, or first missed offset of a gap.
    pub offset: u64,
    /// End (exclusive) of a gap.
    pub end: u64,
    /// Queue delivery attempt (1 on first delivery), or a dead letter's attempts.
    pub attempt: u32,
    /// Milliseconds left on a queue lease when it was handed out.
    pub lease_ms: u32,
    /// Cache: whether the key was found. Events: whether `offset` is known. Gaps: a reset
    /// (the broker recreated the stream's log; see `felix_subscription_take_gaps`).
    pub present: bool,
}

/// An owned result: release with `felix_result_free`. Fields are read-only for the caller and
/// stay valid until the result is freed.
#[repr(C)]
#[derive(Debug)]
pub struct FelixResult {
    /// Items, in order (`len` of them; NULL when `len` is 0).
    pub items: *const FelixItem,
    /// Number of items.
    pub len: usize,
    /// The call's scalar answer: a put's new version, a delete's "existed" (0/1), an
    /// ack/nack/extend/redrive/discard count, a ping's round trip in microseconds.
    pub value: u64,
}

/// The owning allocation behind a `FelixResult*` (the public part comes first).
#[repr(C)]
struct ResultBox {
    public: FelixResult,
    items: Vec<FelixItem>,
    payloads: Vec<Bytes>,
    texts: Vec<Arc<str>>,
    client: Option<Box<FelixClient>>,
    subscription: Option<Box<FelixSubscription>>,
}

// SAFETY: the raw pointers point into data the box owns; it is moved between threads whole.
unsafe impl Send for ResultBox {}

/// Data of one item before it is laid out for C.
#[derive(Debug, Default)]
pub(crate) struct ItemData {
    pub payload: Bytes,
    pub text: Option<Arc<str>>,
    pub offset: u64,
    pub end: u64,
    pub attempt: u32,
    pub lease_ms: u32,
    pub present: bool,
}

/// What a call produced, before it becomes a `FelixResult`.
#[derive(Default)]
pub(crate) struct Output {
    pub value: u64,
    pub items: Vec<ItemData>,
    pub client: Option<Box<FelixClient>>,
    pub subscription: Option<Box<FelixSubscription>>,
}

impl Output {
    pub fn value(value: u64) -> Option<Output> {
        Some(Output {
            value,
            ..Default::default()
        })
    }
    pub fn items(items: Vec<ItemData>) -> Option<Output> {
        Some(Output {
            items,
            ..Default::default()
        })
    }

    /// Lays the output out for C.
    pub fn into_raw(self) -> *mut FelixResult {
        let n = self.items.len();
        let mut b = Box::new(ResultBox {
            public: FelixResult {
                items: ptr::null(),
                len: n,
                value: self.value,
            },
            items: Vec::with_capacity(n),
            payloads: Vec::with_capacity(n),
            texts: Vec::new(),
            client: self.client,
            subscription: self.subscription,
        });
        for it in self.items {
            let text = match &it.text {
                Some(t) => FelixBytes::of(t.as_bytes()),
                None => FelixBytes::EMPTY,
            };
            b.items.push(FelixItem {
                payload: FelixBytes::of(&it.payload),
                text,
                offset: it.offset,
                end: it.end,
                attempt: it.attempt,
                lease_ms: it.lease_ms,
                present: it.present,
            });
            // Moving `Bytes`/`Arc<str>` does not move the bytes they point to.
            b.payloads.push(it.payload);
            if let Some(t) = it.text {
                b.texts.push(t);
            }
        }
        if n > 0 {
            b.public.items = b.items.as_ptr();
        }
        Box::into_raw(b).cast()
    }
}

/// Writes an optional output to a `FelixResult**` (NULL result when there is none; an
/// unwanted result is freed when `out` is NULL).
///
/// # Safety
/// `out` is NULL or valid for a write.
pub(crate) unsafe fn store(out: *mut *mut FelixResult, o: Option<Output>) {
    let raw = o.map_or(ptr::null_mut(), Output::into_raw);
    if out.is_null() {
        // SAFETY: `raw` was just made by `into_raw`.
        unsafe { felix_result_free(raw) };
    } else {
        // SAFETY: per the contract.
        unsafe { *out = raw };
    }
}

/// Releases a result (and any handle in it that was not taken). NULL is a no-op.
///
/// # Safety
/// `result` is NULL or a result from this library, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn felix_result_free(result: *mut FelixResult) {
    quiet((), || {
        if !result.is_null() {
            // SAFETY: every `FelixResult*` is the head of a `ResultBox`.
            drop(unsafe { Box::from_raw(result.cast::<ResultBox>()) });
        }
    })
}

/// Takes the client out of the result of `felix_client_connect_start` (NULL if there is
/// none or it was taken). The caller owns it: release with `felix_client_free`.
///
/// # Safety
/// `result` is NULL or a live result from this library.
#[no_mangle]
pub unsafe extern "C" fn felix_result_take_client(result: *mut FelixResult) -> *mut FelixClient {
    quiet(ptr::null_mut(), || {
        if result.is_null() {
            return ptr::null_mut();
        }
        // SAFETY: every `FelixResult*` is the head of a `ResultBox`.
        let b = unsafe { &mut *result.cast::<ResultBox>() };
        b.client.take().map_or(ptr::null_mut(), Box::into_raw)
    })
}

/// Takes the subscription out of the result of `felix_subscribe_start` (NULL if there is
/// none or it was taken). The caller owns it: release with `felix_subscription_free`.
///
/// # Safety
/// `result` is NULL or a live result from this library.
#[no_mangle]
pub unsafe extern "C" fn felix_result_take_subscription(
    result: *mut FelixResult,
) -> *mut FelixSubscription {
    quiet(ptr::null_mut(), || {
        if result.is_null() {
            return ptr::null_mut();
        }
        // SAFETY: every `FelixResult*` is the head of a `ResultBox`.
        let b = unsafe { &mut *result.cast::<ResultBox>() };
        b.subscription.take().map_or(ptr::null_mut(), Box::into_raw)
    })
}
