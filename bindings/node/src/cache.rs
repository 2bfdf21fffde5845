//! Cache: get (value, or value with version), put with TTL and condition (always,
//! if-absent, if-version), delete, multi-get, and cache creation.

use bytes::Bytes;
use felix_client::{CacheValue, PutCondition};
use napi::bindgen_prelude::*;
use napi::sys;
use napi_derive::napi;

use crate::client::NativeClient;
use crate::error::{invalid, Outcome};
use crate::runtime::{promise, rejected, Settled};
use crate::value::{opt_millis, uint, Js};

/// Options of `cachePut`.
#[napi(object)]
#[derive(Default)]
pub struct PutOptions {
    /// Time to live, ms (positive; absent: the cache's default TTL).
    pub ttl_ms: Option<f64>,
    /// Only write when no live entry exists (else `conflict`).
    pub if_absent: Option<bool>,
    /// Only write when the live entry has this version (compare-and-set; else `conflict`).
    pub if_version: Option<f64>,
}

/// Settings of `createCache`.
#[napi(object)]
#[derive(Default)]
pub struct CacheOptions {
    /// Byte budget.
    pub max_bytes: Option<f64>,
    /// Default time to live, ms (positive).
    pub default_ttl_ms: Option<f64>,
}

/// A cached value with its version (type declaration only).
#[napi(object)]
#[allow(dead_code)] // declares the TypeScript shape; values are built by `value::Js`
pub struct CacheEntry {
    pub value: Buffer,
    /// Version assigned when written (for `ifVersion`).
    pub version: f64,
}

fn put_condition(o: &PutOptions) -> Outcome<PutCondition> {
    match (o.if_absent == Some(true), o.if_version) {
        (true, Some(_)) => Err(invalid("give at most one of ifAbsent and ifVersion")),
        (true, None) => Ok(PutCondition::IfAbsent),
        (false, Some(v)) => Ok(PutCondition::IfVersion(uint("ifVersion", v)?)),
        (false, None) => Ok(PutCondition::Always),
    }
}

fn ttl(what: &str, v: Option<f64>) -> Outcome<Option<std::time::Duration>> {
    // Zero goes to the core, which rejects it with `invalid_argument` like every binding.
    opt_millis(what, v)
}

fn entry_to_js(js: &Js, e: Option<CacheValue>) -> Settled {
    match e {
        None => js.null(),
        Some(e) => js.object(&[
            (c"value", js.buffer(&e.value)?),
            (c"version", js.number(e.version as f64)?),
        ]),
    }
}

macro_rules! reject_on {
    ($env:expr, $e:expr) => {
        match $e {
            Ok(v) => v,
            Err(f) => return rejected(&$env, f),
        }
    };
}

#[napi]
impl NativeClient {
    /// Reads a key: its value, or `null` when missing or expired.
    #[napi(ts_return_type = "Promise<Buffer | null>")]
    pub fn cache_get(
        &self,
        env: Env,
        namespace: String,
        cache: String,
        key: String,
    ) -> Result<sys::napi_value> {
        let client = self.shared.client.clone();
        promise(
            &env,
            async move { Ok(client.cache_get(&namespace, &cache, &key).await?) },
            |env, v| match v {
                Some(v) => Js(env).buffer(&v.value),
                None => Js(env).null(),
            },
        )
    }

    /// Reads a key with its version, or `null` when missing or expired.
    #[napi(ts_return_type = "Promise<CacheEntry | null>")]
    pub fn cache_get_entry(
        &self,
        env: Env,
        namespace: String,
        cache: String,
        key: String,
    ) -> Result<sys::napi_value> {
        let client = self.shared.client.clone();
        promise(
            &env,
            async move { Ok(client.cache_get(&namespace, &cache, &key).await?) },
            |env, v| entry_to_js(&Js(env), v),
        )
    }

    /// Writes a key (optionally with TTL and a condition); resolves to the new version.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn cache_put(
        &self,
        env: Env,
        namespace: String,
        cache: String,
        key: String,
        value: Uint8ArraySlice<'_>,
        options: Option<PutOptions>,
    ) -> Result<sys::napi_value> {
        let o = options.unwrap_or_default();
        let cond = reject_on!(env, put_condition(&o));
        let ttl = reject_on!(env, ttl("ttlMs", o.ttl_ms));
        let value = Bytes::copy_from_slice(&value);
        let client = self.shared.client.clone();
        promise(
            &env,
            async move {
                Ok(client
                    .cache_put_if(&namespace, &cache, &key, value, ttl, cond)
                    .await?)
            },
            |env, v| Js(env).number(v as f64),
        )
    }

    /// Deletes a key; resolves to whether a live entry existed.
    #[napi(ts_return_type = "Promise<boolean>")]
    pub fn cache_delete(
        &self,
        env: Env,
        namespace: String,
        cache: String,
        key: String,
    ) -> Result<sys::napi_value> {
        let client = self.shared.client.clone();
        promise(
            &env,
            async move { Ok(client.cache_delete(&namespace, &cache, &key).await?) },
            |env, b| Js(env).bool(b),
        )
    }

    /// Reads several keys in one round trip; entries (or `null`) in the order of `keys`.
    #[napi(ts_return_type = "Promise<Array<CacheEntry | null>>")]
    pub fn cache_get_many(
        &self,
        env: Env,
        namespace: String,
        cache: String,
        keys: Vec<String>,
    ) -> Result<sys::napi_value> {
        let client = self.shared.client.clone();
        promise(
            &env,
            async move {
                let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
                Ok(client.cache_get_many(&namespace, &cache, &refs).await?)
            },
            |env, vs| Js(env).array(vs, entry_to_js),
        )
    }

    /// Creates a cache with a byte budget and default TTL (idempotent for equal settings).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn create_cache(
        &self,
        env: Env,
        namespace: String,
        cache: String,
        options: Option<CacheOptions>,
    ) -> Result<sys::napi_value> {
        let o = options.unwrap_or_default();
        let max_bytes = reject_on!(env, o.max_bytes.map(|v| uint("maxBytes", v)).transpose());
        let default_ttl = reject_on!(env, ttl("defaultTtlMs", o.default_ttl_ms));
        let client = self.shared.client.clone();
        promise(
            &env,
            async move {
                Ok(client
                    .create_cache(&namespace, &cache, max_bytes, default_ttl)
                    .await?)
            },
            |env, ()| Js(env).undefined(),
        )
    }
}
