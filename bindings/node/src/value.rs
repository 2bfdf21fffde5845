//! Conversions between JavaScript values and the core's types: argument checks (numbers
//! that must be integers or durations) and the objects handed back to JavaScript, built with
//! raw napi calls on the JavaScript thread.

use std::ffi::CStr;
use std::ptr;
use std::time::Duration;

use napi::sys;

use crate::error::{invalid, Failure};
use crate::runtime::Settled;

/// Largest integer a JavaScript number holds exactly.
const MAX_SAFE: f64 = 9_007_199_254_740_991.0;

/// A non-negative integer (offset, version, count) given as a JavaScript number.
pub(crate) fn uint(what: &str, v: f64) -> Result<u64, Failure> {
    if (0.0..=MAX_SAFE).contains(&v) && v.fract() == 0.0 {
        Ok(v as u64)
    } else {
        Err(invalid(format!(
            "{what} must be a non-negative integer, got {v}"
        )))
    }
}

/// A 32-bit count.
pub(crate) fn uint32(what: &str, v: f64) -> Result<u32, Failure> {
    let n = uint(what, v)?;
    u32::try_from(n).map_err(|_| invalid(format!("{what} must be at most {}", u32::MAX)))
}

/// Offsets of a queue call.
pub(crate) fn offsets(v: &[f64]) -> Result<Vec<u64>, Failure> {
    v.iter().map(|o| uint("offset", *o)).collect()
}

/// A duration given in milliseconds (fractions allowed).
pub(crate) fn millis(what: &str, v: f64) -> Result<Duration, Failure> {
    if v.is_finite() && (0.0..=MAX_SAFE).contains(&v) {
        Ok(Duration::from_secs_f64(v / 1000.0))
    } else {
        Err(invalid(format!(
            "{what} must be a non-negative number of milliseconds, got {v}"
        )))
    }
}

/// An optional duration in milliseconds.
pub(crate) fn opt_millis(what: &str, v: Option<f64>) -> Result<Option<Duration>, Failure> {
    v.map(|v| millis(what, v)).transpose()
}

/// Fails with `invalid_argument` unless a napi call succeeded.
fn ok(status: sys::napi_status) -> Result<(), Failure> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(Failure::new(
            felix_client::ErrorCode::Internal,
            format!("napi call failed with status {status}"),
        ))
    }
}

/// Builders of JavaScript values. Every function must run on the JavaScript thread with a
/// live `env` (they are only called from promise settlement and napi callbacks).
pub(crate) struct Js(pub sys::napi_env);

impl Js {
    pub(crate) fn undefined(&self) -> Settled {
        let mut v = ptr::null_mut();
        // SAFETY: see the type's contract.
        ok(unsafe { sys::napi_get_undefined(self.0, &mut v) })?;
        Ok(v)
    }

    pub(crate) fn null(&self) -> Settled {
        let mut v = ptr::null_mut();
        // SAFETY: see the type's contract.
        ok(unsafe { sys::napi_get_null(self.0, &mut v) })?;
        Ok(v)
    }

    pub(crate) fn bool(&self, b: bool) -> Settled {
        let mut v = ptr::null_mut();
        // SAFETY: see the type's contract.
        ok(unsafe { sys::napi_get_boolean(self.0, b, &mut v) })?;
        Ok(v)
    }

    pub(crate) fn number(&self, n: f64) -> Settled {
        let mut v = ptr::null_mut();
        // SAFETY: see the type's contract.
        ok(unsafe { sys::napi_create_double(self.0, n, &mut v) })?;
        Ok(v)
    }

    pub(crate) fn string(&self, s: &str) -> Settled {
        let mut v = ptr::null_mut();
        // SAFETY: see the type's contract; the pointer and length describe `s`.
        ok(unsafe {
            sys::napi_create_string_utf8(self.0, s.as_ptr().cast(), s.len() as isize, &mut v)
        })?;
        Ok(v)
    }

    /// A `Buffer` holding a copy of `bytes`.
    pub(crate) fn buffer(&self, bytes: &[u8]) -> Settled {
        let mut v = ptr::null_mut();
        let mut data = ptr::null_mut();
        // SAFETY: see the type's contract; napi copies `bytes`.
        ok(unsafe {
            sys::napi_create_buffer_copy(
                self.0,
                bytes.len(),
                bytes.as_ptr().cast(),
                &mut data,
                &mut v,
            )
        })?;
        Ok(v)
    }

    pub(crate) fn object(&self, fields: &[(&CStr, sys::napi_value)]) -> Settled {
        let mut o = ptr::null_mut();
        // SAFETY: see the type's contract.
        unsafe {
            ok(sys::napi_create_object(self.0, &mut o))?;
            for (k, v) in fields {
                ok(sys::napi_set_named_property(self.0, o, k.as_ptr(), *v))?;
            }
        }
        Ok(o)
    }

    pub(crate) fn array<T>(&self, items: Vec<T>, f: impl Fn(&Js, T) -> Settled) -> Settled {
        let mut a = ptr::null_mut();
        // SAFETY: see the type's contract.
        unsafe {
            ok(sys::napi_create_array_with_length(
                self.0,
                items.len(),
                &mut a,
            ))?;
            for (i, item) in items.into_iter().enumerate() {
                let v = f(self, item)?;
                ok(sys::napi_set_element(self.0, a, i as u32, v))?;
            }
        }
        Ok(a)
    }
}
