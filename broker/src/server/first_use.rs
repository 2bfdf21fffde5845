//! Looking a resource up for a request, and creating it on first use: who may create what.
//!
//! The request's own permission (publish, subscribe, consume, cache.read / cache.write) was
//! checked before. A resource that does not exist yet is then created only when:
//!
//! * it has a **definition** from the control plane (`crate::defs`): created with the
//!   definition's settings, whoever uses it first (an administrator defined it; `auto_create`
//!   does not matter);
//! * otherwise, `auto_create` is on **and** the principal may `admin` that resource: created
//!   with the broker's defaults. Creating is an admin change, so a principal granted only
//!   `publish` (say) can no longer create streams by publishing to new names.
//!
//! Anything else is `not_found` (the message says why). Dev mode and static tokens grant every
//! permission in the tenant, so for them this changes nothing; it matters in JWT mode.
//!
//! Explicit creates (`stream_create`, `cache_create`, `group_create`, which need `admin`) start
//! from the definition's settings when there is one, and the request's fields override them.
//! A definition applies when a resource is created: changing it later does not reconfigure a
//! resource that already exists.

use std::sync::Arc;

use felix_wire::ErrorCode;

use super::request::Ctx;
use crate::auth::{Action, Resource};
use crate::cache::CacheConfig;
use crate::error::BrokerError;
use crate::queue::{ConsumerGroup, GroupConfig};
use crate::registry::{CacheEntry, StreamEntry};
use crate::stream::{Start, StreamConfig};

fn is_not_found(r: &Result<impl Sized, BrokerError>) -> bool {
    matches!(r, Err(e) if e.code == ErrorCode::NotFound)
}

impl Ctx {
    /// `Ok` when the principal may create an undefined resource on first use; else the
    /// `not_found` to answer.
    fn may_create(
        &self,
        what: &str,
        tenant: &str,
        ns: &str,
        name: &str,
    ) -> Result<(), BrokerError> {
        if !self.shared.cfg.auto_create() {
            return Err(BrokerError::not_found(format!(
                "{what} {tenant}/{ns}/{name} does not exist (auto_create is off{})",
                if self.shared.definitions.loaded() {
                    " and the control plane has no definition of it"
                } else {
                    ""
                }
            )));
        }
        let admin = self.session.principal.authorize(
            &*self.shared.auth,
            Action::Admin,
            tenant,
            ns,
            Resource::Exact(name),
        );
        if let Err(e) = admin {
            // Expired or revoked credentials keep their own answer.
            if e.code() == ErrorCode::Unauthorized {
                return Err(e.into());
            }
            return Err(BrokerError::not_found(format!(
                "{what} {tenant}/{ns}/{name} does not exist; creating it on first use needs \
                 admin on {ns}/{name}{}",
                if self.shared.definitions.loaded() {
                    " (or a control-plane definition)"
                } else {
                    ""
                }
            )));
        }
        Ok(())
    }

    /// The stream, created on first use as the module says.
    pub fn stream_entry(
        &mut self,
        tenant: &str,
        ns: &str,
        name: &str,
    ) -> Result<Arc<StreamEntry>, BrokerError> {
        let reg = &self.shared.registry;
        let found = reg.stream(&mut self.key, tenant, ns, name, false);
        if !is_not_found(&found) {
            return found;
        }
        let cfg = match self.shared.definitions.stream(tenant, ns, name) {
            Some(c) => c,
            None => {
                self.may_create("stream", tenant, ns, name)?;
                self.shared.cfg.stream_config()
            }
        };
        match self.shared.registry.create_stream(tenant, ns, name, cfg) {
            // Someone created it meanwhile with other settings (an explicit create): use it.
            Err(e) if e.code == ErrorCode::AlreadyExists => {
                self.shared
                    .registry
                    .stream(&mut self.key, tenant, ns, name, false)
            }
            r => r,
        }
    }

    /// The cache, created on first use as the module says.
    pub fn cache_entry(
        &mut self,
        tenant: &str,
        ns: &str,
        name: &str,
    ) -> Result<Arc<CacheEntry>, BrokerError> {
        let reg = &self.shared.registry;
        let found = reg.cache(&mut self.key, tenant, ns, name, false);
        if !is_not_found(&found) {
            return found;
        }
        let cfg = match self.shared.definitions.cache(tenant, ns, name) {
            Some(c) => c,
            None => {
                self.may_create("cache", tenant, ns, name)?;
                self.shared.cfg.cache_config()
            }
        };
        match self.shared.registry.create_cache(tenant, ns, name, cfg) {
            Err(e) if e.code == ErrorCode::AlreadyExists => {
                self.shared
                    .registry
                    .cache(&mut self.key, tenant, ns, name, false)
            }
            r => r,
        }
    }

    /// The consumer group `group` of `stream` (whose entry is `entry`), created on first use
    /// as the module says (creating a group needs `admin` on its stream, as `group_create`).
    pub fn group_entry(
        &mut self,
        entry: &StreamEntry,
        tenant: &str,
        ns: &str,
        stream: &str,
        group: &str,
    ) -> Result<Arc<ConsumerGroup>, BrokerError> {
        let reg = &self.shared.registry;
        let found = reg.group(entry, group, false);
        if !is_not_found(&found) {
            return found;
        }
        let (cfg, start) = match self.shared.definitions.group(tenant, ns, stream, group) {
            Some(d) => (d.config, d.start),
            None => {
                self.may_create("group", tenant, ns, stream)?;
                (self.shared.cfg.group_config(), Start::Earliest)
            }
        };
        self.shared.registry.create_group(entry, group, cfg, start)
    }

    /// Settings an explicit `stream_create` starts from: the definition, else the defaults.
    pub fn stream_base_config(&self, tenant: &str, ns: &str, name: &str) -> StreamConfig {
        self.shared
            .definitions
            .stream(tenant, ns, name)
            .unwrap_or_else(|| self.shared.cfg.stream_config())
    }

    /// Settings an explicit `cache_create` starts from.
    pub fn cache_base_config(&self, tenant: &str, ns: &str, name: &str) -> CacheConfig {
        self.shared
            .definitions
            .cache(tenant, ns, name)
            .unwrap_or_else(|| self.shared.cfg.cache_config())
    }

    /// Settings an explicit `group_create` starts from (its start comes from the request).
    pub fn group_base_config(
        &self,
        tenant: &str,
        ns: &str,
        stream: &str,
        group: &str,
    ) -> GroupConfig {
        self.shared
            .definitions
            .group(tenant, ns, stream, group)
            .map_or_else(|| self.shared.cfg.group_config(), |d| d.config)
    }
}
