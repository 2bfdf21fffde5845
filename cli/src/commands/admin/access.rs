//! `felix admin role ...` and `felix admin issuer ...`: who may do what. Grants and claim
//! rules are parsed and checked here before any request, so a typo is refused with a message
//! naming the rule instead of a round trip.

use clap::Subcommand;
use felix_auth::Grant;
use serde_json::{json, Value};
use ureq::http::Method;

use super::http::{seg, Api};
use super::{deleted, item, list, written, Emit, IfMatch};
use crate::output::Failure;

/// `felix admin role`.
#[derive(Debug, Subcommand)]
pub enum RoleCmd {
    /// Create or replace a role.
    #[command(after_long_help = "\
A grant is ACTIONS:RESOURCES, both comma-separated:
  actions    publish, subscribe, consume, cache.read, cache.write, admin, or *
  resources  NAMESPACE/NAMEPATTERN (* as namespace = any; * one token, final > the rest),
             or > alone for everything in the tenant
Example:
  felix admin role set acme orders-rw --grant 'publish,subscribe:orders/>' \\
      --grant 'cache.read:sessions/*'")]
    Set {
        /// Tenant.
        tenant: String,
        /// Role name: 1-64 of [A-Za-z0-9_.-].
        name: String,
        /// A grant, `ACTIONS:RESOURCES` (repeat for more).
        #[arg(long = "grant", value_name = "ACTIONS:RESOURCES", required = true)]
        grants: Vec<String>,
        #[command(flatten)]
        if_match: IfMatch,
    },
    /// Show a role.
    Get {
        /// Tenant.
        tenant: String,
        /// Role name.
        name: String,
    },
    /// List a tenant's roles.
    List {
        /// Tenant.
        tenant: String,
    },
    /// Delete a role.
    Delete {
        /// Tenant.
        tenant: String,
        /// Role name.
        name: String,
    },
}

/// `felix admin issuer`.
#[derive(Debug, Subcommand)]
pub enum IssuerCmd {
    /// Trust an OIDC issuer for a tenant (or replace the entry).
    #[command(after_long_help = "\
A rule is CLAIM=VALUE:ROLES (ROLES comma-separated; VALUE may contain ':'): a subject token
whose top-level CLAIM equals VALUE (or is an array containing it) gets those roles.
Example:
  felix admin issuer set acme corp --url https://login.example.com/realms/acme \\
      --audience felix --rule 'groups=payments-admins:admin' \\
      --rule 'sub=system:serviceaccount:shop:orders:orders-writer'")]
    Set {
        /// Tenant.
        tenant: String,
        /// Entry name: 1-64 of [A-Za-z0-9_.-].
        name: String,
        /// Issuer URL: the tokens' `iss` (https; http on loopback in dev only).
        #[arg(long, value_name = "URL")]
        url: String,
        /// Accepted `aud` value (repeat for more; at least one).
        #[arg(long = "audience", value_name = "AUD", required = true)]
        audiences: Vec<String>,
        /// A claim rule, `CLAIM=VALUE:ROLES` (repeat for more).
        #[arg(long = "rule", value_name = "CLAIM=VALUE:ROLES")]
        rules: Vec<String>,
        #[command(flatten)]
        if_match: IfMatch,
    },
    /// Show an issuer entry.
    Get {
        /// Tenant.
        tenant: String,
        /// Entry name.
        name: String,
    },
    /// List a tenant's trusted issuers.
    List {
        /// Tenant.
        tenant: String,
    },
    /// Stop trusting an issuer.
    Delete {
        /// Tenant.
        tenant: String,
        /// Entry name.
        name: String,
    },
}

/// `ACTIONS:RESOURCES` → a grant checked with `felix_auth`'s grammar.
pub fn parse_grant(text: &str) -> Result<Grant, Failure> {
    let refuse = |why: String| Failure::usage(format!("--grant {text:?}: {why}"));
    let (actions, resources) = text.split_once(':').ok_or_else(|| {
        refuse("expected ACTIONS:RESOURCES, e.g. 'publish,subscribe:orders/>'".into())
    })?;
    let split = |s: &str| -> Vec<String> {
        s.split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let grant = Grant {
        actions: split(actions),
        resources: split(resources),
    };
    grant.validate().map_err(|e| refuse(e.to_string()))?;
    Ok(grant)
}

/// `CLAIM=VALUE:ROLES` → `{"claim", "equals", "roles"}`.
pub fn parse_rule(text: &str) -> Result<Value, Failure> {
    let refuse = |why: &str| {
        Failure::usage(format!(
            "--rule {text:?}: {why} (expected CLAIM=VALUE:ROLES, e.g. 'groups=admins:admin')"
        ))
    };
    let (claim, rest) = text.split_once('=').ok_or_else(|| refuse("no '='"))?;
    let (value, roles) = rest
        .rsplit_once(':')
        .ok_or_else(|| refuse("no ':' before the roles"))?;
    let roles: Vec<&str> = roles
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .collect();
    if claim.trim().is_empty() {
        return Err(refuse("empty claim name"));
    }
    if roles.is_empty() {
        return Err(refuse("no roles"));
    }
    Ok(json!({"claim": claim.trim(), "equals": value, "roles": roles}))
}

fn base(tenant: &str, kind: &str) -> Result<String, Failure> {
    Ok(format!("/v1/tenants/{}/{kind}", seg(tenant)?))
}

pub fn role(api: &Api, c: RoleCmd) -> Result<Emit, Failure> {
    match c {
        RoleCmd::Set {
            tenant,
            name,
            grants,
            if_match,
        } => {
            let grants = grants
                .iter()
                .map(|g| parse_grant(g))
                .collect::<Result<Vec<_>, _>>()?;
            let body = json!({ "grants": grants });
            let path = format!("{}/{}", base(&tenant, "roles")?, seg(&name)?);
            Ok(written(
                "role",
                api.call(Method::PUT, &path, Some(&body), if_match.if_match)?,
            ))
        }
        RoleCmd::Get { tenant, name } => {
            let path = format!("{}/{}", base(&tenant, "roles")?, seg(&name)?);
            Ok(item(api.call(Method::GET, &path, None, None)?))
        }
        RoleCmd::List { tenant } => Ok(list(api.call(
            Method::GET,
            &base(&tenant, "roles")?,
            None,
            None,
        )?)),
        RoleCmd::Delete { tenant, name } => {
            let path = format!("{}/{}", base(&tenant, "roles")?, seg(&name)?);
            api.call(Method::DELETE, &path, None, None)?;
            Ok(deleted("role", &format!("{tenant}/{name}")))
        }
    }
}

pub fn issuer(api: &Api, c: IssuerCmd) -> Result<Emit, Failure> {
    match c {
        IssuerCmd::Set {
            tenant,
            name,
            url,
            audiences,
            rules,
            if_match,
        } => {
            let rules = rules
                .iter()
                .map(|r| parse_rule(r))
                .collect::<Result<Vec<_>, _>>()?;
            let body = json!({ "issuer": url, "audiences": audiences, "rules": rules });
            let path = format!("{}/{}", base(&tenant, "issuers")?, seg(&name)?);
            Ok(written(
                "issuer",
                api.call(Method::PUT, &path, Some(&body), if_match.if_match)?,
            ))
        }
        IssuerCmd::Get { tenant, name } => {
            let path = format!("{}/{}", base(&tenant, "issuers")?, seg(&name)?);
            Ok(item(api.call(Method::GET, &path, None, None)?))
        }
        IssuerCmd::List { tenant } => Ok(list(api.call(
            Method::GET,
            &base(&tenant, "issuers")?,
            None,
            None,
        )?)),
        IssuerCmd::Delete { tenant, name } => {
            let path = format!("{}/{}", base(&tenant, "issuers")?, seg(&name)?);
            api.call(Method::DELETE, &path, None, None)?;
            Ok(deleted("issuer", &format!("{tenant}/{name}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_parse_and_typos_name_the_rule() {
        let g = parse_grant("publish,subscribe:orders/>").unwrap();
        assert_eq!(g.actions, ["publish", "subscribe"]);
        assert_eq!(g.resources, ["orders/>"]);
        let Failure::Error { message, exit, .. } = parse_grant("publsh:orders/>").unwrap_err()
        else {
            panic!("quiet")
        };
        assert_eq!(exit, 2);
        assert!(message.contains("publsh"), "{message}");
        assert!(parse_grant("publish").is_err());
        assert!(parse_grant("publish:").is_err());
    }

    #[test]
    fn rules_split_claim_value_and_roles() {
        let r = parse_rule("sub=system:serviceaccount:shop:orders:writer,reader").unwrap();
        assert_eq!(r["claim"], "sub");
        assert_eq!(r["equals"], "system:serviceaccount:shop:orders");
        assert_eq!(r["roles"], json!(["writer", "reader"]));
        assert!(parse_rule("groups:admin").is_err());
        assert!(parse_rule("groups=admins:").is_err());
    }
}
