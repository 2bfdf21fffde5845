//! `felix admin tenant ...` and `felix admin namespace ...`.

use clap::Subcommand;
use serde_json::{json, Value};
use ureq::http::Method;

use super::http::{seg, Api};
use super::{deleted, item, list, written, Emit, IfMatch};
use crate::output::Failure;

/// `felix admin tenant`.
#[derive(Debug, Subcommand)]
pub enum TenantCmd {
    /// Create a tenant (or replace its description).
    Create {
        /// Tenant name: 1-64 of [A-Za-z0-9_-].
        name: String,
        /// Free text.
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        if_match: IfMatch,
    },
    /// Show a tenant.
    Get {
        /// Tenant name.
        name: String,
    },
    /// List tenants.
    List,
    /// Delete a tenant (its namespaces, roles and issuers must be deleted first).
    Delete {
        /// Tenant name.
        name: String,
    },
}

/// `felix admin namespace`.
#[derive(Debug, Subcommand)]
pub enum NamespaceCmd {
    /// Create a namespace (or replace its description).
    Create {
        /// Tenant it belongs to.
        tenant: String,
        /// Namespace name: 1-64 of [A-Za-z0-9_-].
        name: String,
        /// Free text.
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        if_match: IfMatch,
    },
    /// Show a namespace.
    Get {
        /// Tenant.
        tenant: String,
        /// Namespace.
        name: String,
    },
    /// List a tenant's namespaces.
    List {
        /// Tenant.
        tenant: String,
    },
    /// Delete a namespace (its definitions must be deleted first).
    Delete {
        /// Tenant.
        tenant: String,
        /// Namespace.
        name: String,
    },
}

fn described(description: Option<String>) -> Value {
    match description {
        Some(d) => json!({ "description": d }),
        None => json!({}),
    }
}

pub fn tenant(api: &Api, c: TenantCmd) -> Result<Emit, Failure> {
    match c {
        TenantCmd::Create {
            name,
            description,
            if_match,
        } => {
            let path = format!("/v1/tenants/{}", seg(&name)?);
            let body = described(description);
            let r = api.call(Method::PUT, &path, Some(&body), if_match.if_match)?;
            Ok(written("tenant", r))
        }
        TenantCmd::Get { name } => {
            let path = format!("/v1/tenants/{}", seg(&name)?);
            Ok(item(api.call(Method::GET, &path, None, None)?))
        }
        TenantCmd::List => Ok(list(api.call(Method::GET, "/v1/tenants", None, None)?)),
        TenantCmd::Delete { name } => {
            let path = format!("/v1/tenants/{}", seg(&name)?);
            api.call(Method::DELETE, &path, None, None)?;
            Ok(deleted("tenant", &name))
        }
    }
}

pub fn namespace(api: &Api, c: NamespaceCmd) -> Result<Emit, Failure> {
    let base =
        |t: &str| -> Result<String, Failure> { Ok(format!("/v1/tenants/{}/namespaces", seg(t)?)) };
    match c {
        NamespaceCmd::Create {
            tenant,
            name,
            description,
            if_match,
        } => {
            let path = format!("{}/{}", base(&tenant)?, seg(&name)?);
            let body = described(description);
            let r = api.call(Method::PUT, &path, Some(&body), if_match.if_match)?;
            Ok(written("namespace", r))
        }
        NamespaceCmd::Get { tenant, name } => {
            let path = format!("{}/{}", base(&tenant)?, seg(&name)?);
            Ok(item(api.call(Method::GET, &path, None, None)?))
        }
        NamespaceCmd::List { tenant } => {
            Ok(list(api.call(Method::GET, &base(&tenant)?, None, None)?))
        }
        NamespaceCmd::Delete { tenant, name } => {
            let path = format!("{}/{}", base(&tenant)?, seg(&name)?);
            api.call(Method::DELETE, &path, None, None)?;
            Ok(deleted("namespace", &format!("{tenant}/{name}")))
        }
    }
}
