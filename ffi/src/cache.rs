//! The cache: get, put with TTL, put-if-absent / compare-and-set, delete, multi-get.
//!
//! Results: a get gives one item (`present`: found; `payload`: the value; `offset`: its
//! version); a multi-get gives one item per key, in order; a put gives `value` = the new
//! version; a delete gives `value` = 1 if a live entry existed, else 0.

use std::time::Duration;

use felix_client::{CacheValue, PutCondition};

use crate::bytes::{array, FelixBytes, FelixResult, ItemData, Output};
use crate::client::{finish, live, FelixClient};
use crate::completion::{start, start_work, FelixCompletionQueue};
use crate::error::{guard, Failure, FelixError, FelixStatus, Res};
use crate::runtime::{Call, Direct, Work};

/// Condition of `felix_cache_put_if`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FelixPutCondition {
    /// Always write.
    Always = 0,
    /// Only when no live entry exists (else `FELIX_STATUS_CONFLICT`).
    IfAbsent = 1,
    /// Only when the live entry has `version` (else `FELIX_STATUS_CONFLICT`).
    IfVersion = 2,
}

fn item(v: Option<CacheValue>) -> ItemData {
    match v {
        Some(v) => ItemData {
            payload: v.value,
            offset: v.version,
            present: true,
            ..Default::default()
        },
        None => ItemData::default(),
    }
}

fn ttl(ttl_ms: u64) -> Option<Duration> {
    (ttl_ms > 0).then(|| Duration::from_millis(ttl_ms))
}

// The direct forms of get, put and delete (see `felix_client::DirectCall`): a started call is
// sent without a future of its own. `None` when the client has no live connection yet: the
// future form then waits for one.

/// The client and the names of a single-key call, borrowed no longer than the views.
///
/// # Safety
/// `client` is NULL or live; the byte views are valid while the result is used.
unsafe fn key_args<'a>(
    client: *const FelixClient,
    namespace: &'a FelixBytes,
    cache: &'a FelixBytes,
    key: &'a FelixBytes,
) -> Res<(&'a felix_client::Client, &'a str, &'a str, &'a str)> {
    // SAFETY: per the contract.
    unsafe {
        Ok((
            live(client)?,
            namespace.name_ref("namespace")?,
            cache.name_ref("cache")?,
            key.name_ref("key")?,
        ))
    }
}

fn get_output(v: Option<CacheValue>) -> Option<Output> {
    Output::items(vec![item(v)])
}

unsafe fn get_direct(
    client: *const FelixClient,
    namespace: FelixBytes,
    cache: FelixBytes,
    key: FelixBytes,
) -> Res<Option<Work>> {
    // SAFETY: forwarded from the export's contract.
    let (c, ns, name, key) = unsafe { key_args(client, &namespace, &cache, &key) }?;
    direct(c.cache_get_direct(ns, name, key), get_output)
}

#[allow(clippy::too_many_arguments)]
unsafe fn put_direct(
    client: *const FelixClient,
    namespace: FelixBytes,
    cache: FelixBytes,
    key: FelixBytes,
    value: FelixBytes,
    ttl_ms: u64,
    condition: u32,
    version: u64,
) -> Res<Option<Work>> {
    let cond = put_condition(condition, version)?;
    // SAFETY: forwarded from the export's contract.
    let (c, ns, name, key) = unsafe { key_args(client, &namespace, &cache, &key) }?;
    // SAFETY: as above.
    let value = unsafe { value.copy_bytes("value") }?;
    let call = c.cache_put_direct(ns, name, key, value, ttl(ttl_ms), cond);
    direct(call, Output::value)
}

unsafe fn delete_direct(
    client: *const FelixClient,
    namespace: FelixBytes,
    cache: FelixBytes,
    key: FelixBytes,
) -> Res<Option<Work>> {
    // SAFETY: forwarded from the export's contract.
    let (c, ns, name, key) = unsafe { key_args(client, &namespace, &cache, &key) }?;
    let call = c.cache_delete_direct(ns, name, key);
    direct(call, |existed: bool| Output::value(existed.into()))
}

fn direct<T: Send + 'static>(
    call: Option<felix_client::Result<felix_client::DirectCall<T>>>,
    output: fn(T) -> Option<Output>,
) -> Res<Option<Work>> {
    Ok(match call {
        None => None,
        Some(Ok(call)) => Some(Work::Direct(Box::new(Direct { call, output }))),
        // Refused before anything was sent (too large, not offered by the broker): reported
        // as the call's completion, as the future form reports it.
        Some(Err(e)) => Some(Work::Future(Box::pin(async move { Err(Failure::from(e)) }))),
    })
}

/// Starts `direct` when it gives a call, else the future `call`.
///
/// # Safety
/// `queue` is NULL or live.
unsafe fn start_either(
    queue: *const FelixCompletionQueue,
    token: u64,
    direct: impl FnOnce() -> Res<Option<Work>>,
    call: impl FnOnce() -> Res<Call>,
) -> Res<()> {
    // SAFETY: per the contract.
    unsafe {
        if queue.is_null() {
            return Err(Failure::invalid("completion queue is NULL"));
        }
        if let Some(w) = direct()? {
            return start_work(queue, token, Ok(w));
        }
        start(queue, token, call())
    }
}

fn put_condition(condition: u32, version: u64) -> Res<PutCondition> {
    match condition {
        0 => Ok(PutCondition::Always),
        1 => Ok(PutCondition::IfAbsent),
        2 => Ok(PutCondition::IfVersion(version)),
        n => Err(Failure::invalid(format!("unknown put condition {n}"))),
    }
}

unsafe fn get_call(
    client: *const FelixClient,
    namespace: FelixBytes,
    cache: FelixBytes,
    key: FelixBytes,
) -> Res<Call> {
    // SAFETY: forwarded from the export's contract.
    let (c, ns, name, key) = unsafe { key_args(client, &namespace, &cache, &key) }?;
    let (c, ns, name, key) = (c.clone(), ns.to_owned(), name.to_owned(), key.to_owned());
    Ok(Box::pin(async move {
        let v = c.cache_get(&ns, &name, &key).await?;
        Ok(get_output(v))
    }))
}

#[allow(clippy::too_many_arguments)]
unsafe fn put_call(
    client: *const FelixClient,
    namespace: FelixBytes,
    cache: FelixBytes,
    key: FelixBytes,
    value: FelixBytes,
    ttl_ms: u64,
    condition: u32,
    version: u64,
) -> Res<Call> {
    let cond = put_condition(condition, version)?;
    // SAFETY: forwarded from the export's contract.
    let (c, ns, name, key) = unsafe { key_args(client, &namespace, &cache, &key) }?;
    let (c, ns, name, key) = (c.clone(), ns.to_owned(), name.to_owned(), key.to_owned());
    // SAFETY: as above.
    let value = unsafe { value.copy_bytes("value") }?;
    Ok(Box::pin(async move {
        let v = c
            .cache_put_if(&ns, &name, &key, value, ttl(ttl_ms), cond)
            .await?;
        Ok(Output::value(v))
    }))
}

unsafe fn delete_call(
    client: *const FelixClient,
    namespace: FelixBytes,
    cache: FelixBytes,
    key: FelixBytes,
) -> Res<Call> {
    // SAFETY: forwarded from the export's contract.
    let (c, ns, name, key) = unsafe { key_args(client, &namespace, &cache, &key) }?;
    let (c, ns, name, key) = (c.clone(), ns.to_owned(), name.to_owned(), key.to_owned());
    Ok(Box::pin(async move {
        let existed = c.cache_delete(&ns, &name, &key).await?;
        Ok(Output::value(existed.into()))
    }))
}

unsafe fn get_many_call(
    client: *const FelixClient,
    namespace: FelixBytes,
    cache: FelixBytes,
    keys: *const FelixBytes,
    keys_len: usize,
) -> Res<Call> {
    // SAFETY: forwarded from the export's contract.
    let (c, ns, name, keys) = unsafe {
        (
            live(client)?.clone(),
            namespace.name("namespace")?,
            cache.name("cache")?,
            array(keys, keys_len, "keys")?
                .iter()
                .map(|k| k.name("key"))
                .collect::<Res<Vec<String>>>()?,
        )
    };
    Ok(Box::pin(async move {
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let vs = c.cache_get_many(&ns, &name, &refs).await?;
        Ok(Output::items(vs.into_iter().map(item).collect()))
    }))
}

/// Reads a key (blocking). `*out` gets one item: `present` says whether it was found.
///
/// # Safety
/// `client` live; byte views valid for their lengths; `out`, `error` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn felix_cache_get(
    client: *const FelixClient,
    namespace: FelixBytes,
    cache: FelixBytes,
    key: FelixBytes,
    out: *mut *mut FelixResult,
    error: *mut *mut FelixError,
) -> FelixStatus {
    // SAFETY: per the contract.
    guard(error, || unsafe {
        finish(get_call(client, namespace, cache, key), out)
    })
}

/// Starts a get; completes on `queue` under `token` with the same result as `felix_cache_get`.
///
/// # Safety
/// As `felix_cache_get`; `queue` live.
#[no_mangle]
pub unsafe extern "C" fn felix_cache_get_start(
    client: *const FelixClient,
    namespace: FelixBytes,
    cache: FelixBytes,
    key: FelixBytes,
    queue: *const FelixCompletionQueue,
    token: u64,
    error: *mut *mut FelixError,
) -> FelixStatus {
    // SAFETY: per the contract.
    guard(error, || unsafe {
        start_either(
            queue,
            token,
            || get_direct(client, namespace, cache, key),
            || get_call(client, namespace, cache, key),
        )
    })
}

/// Writes a key (blocking); `ttl_ms` 0 uses the cache's default TTL. `*version_out` (if
/// non-NULL) gets the new version.
///
/// # Safety
/// `client` live; byte views valid for their lengths; out-params NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn felix_cache_put(
    client: *const FelixClient,
    namespace: FelixBytes,
    cache: FelixBytes,
    key: FelixBytes,
    value: FelixBytes,
    ttl_ms: u64,
    version_out: *mut u64,
    error: *mut *mut FelixError,
) -> FelixStatus {
    // SAFETY: per the contract.
    unsafe {
        felix_cache_put_if(
            client,
            namespace,
            cache,
            key,
            value,
            ttl_ms,
            FelixPutCondition::Always as u32,
            0,
            version_out,
            error,
        )
    }
}

/// Writes a key if `condition` (a `FelixPutCondition`) holds; otherwise fails with
/// `FELIX_STATUS_CONFLICT`. `version` is used by `FELIX_PUT_CONDITION_IF_VERSION`.
///
/// # Safety
/// As `felix_cache_put`.
#[no_mangle]
pub unsafe extern "C" fn felix_cache_put_if(
    client: *const FelixClient,
    namespace: FelixBytes,
    cache: FelixBytes,
    key: FelixBytes,
    value: FelixBytes,
    ttl_ms: u64,
    condition: u32,
    version: u64,
    version_out: *mut u64,
    error: *mut *mut FelixError,
) -> FelixStatus {
    guard(error, || {
        let mut r = std::ptr::null_mut();
        // SAFETY: per the contract.
        unsafe {
            let call = put_call(
                client, namespace, cache, key, value, ttl_ms, condition, version,
            );
            finish(call, &mut r)?;
            if !version_out.is_null() && !r.is_null() {
                *version_out = (*r).value;
            }
            crate::bytes::felix_result_free(r);
        }
        Ok(())
    })
}

/// Starts a (conditional) put; the result's `value` is the new version.
///
/// # Safety
/// As `felix_cache_put_if`; `queue` live.
#[no_mangle]
pub unsafe extern "C" fn felix_cache_put_start(
    client: *const FelixClient,
    namespace: FelixBytes,
    cache: FelixBytes,
    key: FelixBytes,
    value: FelixBytes,
    ttl_ms: u64,
    condition: u32,
    version: u64,
    queue: *const FelixCompletionQueue,
    token: u64,
    error: *mut *mut FelixError,
) -> FelixStatus {
    // SAFETY: per the contract.
    guard(error, || unsafe {
        start_either(
            queue,
            token,
            || {
                put_direct(
                    client, namespace, cache, key, value, ttl_ms, condition, version,
                )
            },
            || {
                put_call(
                    client, namespace, cache, key, value, ttl_ms, condition, version,
                )
            },
        )
    })
}

/// Deletes a key (blocking); `*existed` (if non-NULL) says whether a live entry existed.
///
/// # Safety
/// `client` live; byte views valid for their lengths; out-params NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn felix_cache_delete(
    client: *const FelixClient,
    namespace: FelixBytes,
    cache: FelixBytes,
    key: FelixBytes,
    existed: *mut bool,
    error: *mut *mut FelixError,
) -> FelixStatus {
    guard(error, || {
        let mut r = std::ptr::null_mut();
        // SAFETY: per the contract.
        unsafe {
            finish(delete_call(client, namespace, cache, key), &mut r)?;
            if !existed.is_null() && !r.is_null() {
                *existed = (*r).value != 0;
            }
            crate::bytes::felix_result_free(r);
        }
        Ok(())
    })
}

/// Starts a delete; the result's `value` is 1 if a live entry existed.
///
/// # Safety
/// As `felix_cache_delete`; `queue` live.
#[no_mangle]
pub unsafe extern "C" fn felix_cache_delete_start(
    client: *const FelixClient,
    namespace: FelixBytes,
    cache: FelixBytes,
    key: FelixBytes,
    queue: *const FelixCompletionQueue,
    token: u64,
    error: *mut *mut FelixError,
) -> FelixStatus {
    // SAFETY: per the contract.
    guard(error, || unsafe {
        start_either(
            queue,
            token,
            || delete_direct(client, namespace, cache, key),
            || delete_call(client, namespace, cache, key),
        )
    })
}

/// Reads `keys_len` keys in one round trip (blocking): one item per key, in order.
///
/// # Safety
/// `client` live; `keys` valid for `keys_len` views; out-params NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn felix_cache_get_many(
    client: *const FelixClient,
    namespace: FelixBytes,
    cache: FelixBytes,
    keys: *const FelixBytes,
    keys_len: usize,
    out: *mut *mut FelixResult,
    error: *mut *mut FelixError,
) -> FelixStatus {
    // SAFETY: per the contract.
    guard(error, || unsafe {
        finish(get_many_call(client, namespace, cache, keys, keys_len), out)
    })
}

/// Starts a multi-get (keys are copied before this returns).
///
/// # Safety
/// As `felix_cache_get_many`; `queue` live.
#[no_mangle]
pub unsafe extern "C" fn felix_cache_get_many_start(
    client: *const FelixClient,
    namespace: FelixBytes,
    cache: FelixBytes,
    keys: *const FelixBytes,
    keys_len: usize,
    queue: *const FelixCompletionQueue,
    token: u64,
    error: *mut *mut FelixError,
) -> FelixStatus {
    // SAFETY: per the contract.
    guard(error, || unsafe {
        let call = get_many_call(client, namespace, cache, keys, keys_len);
        start(queue, token, call)
    })
}
