//! Authentication (bearer JWTs and PLED personal access tokens) and authorization (roles).
//!
//! The org of every request comes from its credential, never from the URL or body; every
//! read and write is scoped to it, and another org's resource answers 404.
//!
//! | permission | admin | editor | operator | viewer |
//! | --- | --- | --- | --- | --- |
//! | `read`: everything in the org (templates, executions, ledger, proofs, streams) | ✓ | ✓ | ✓ | ✓ |
//! | `edit_templates`: create/edit/duplicate/delete templates, publish versions, rules | ✓ | ✓ | | |
//! | `run`: start executions, post events, take snapshots, dry-run replays | ✓ | ✓ | ✓ | |
//! | `operate`: pause/resume/cancel/complete, run or re-run actions, mint tokens | ✓ | | ✓ | |
//! | `administer`: access tokens, audit log, forced transitions, replays that write | ✓ | | | |

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use pled_core::OrgId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::state::AppState;

/// A role; each grants a fixed set of [`Permission`]s (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including access tokens and the audit log.
    Admin,
    /// Designs templates; can also run executions.
    Editor,
    /// Runs and operates executions.
    Operator,
    /// Reads.
    Viewer,
}

/// What a request needs to be allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    /// Read anything in the org.
    Read,
    /// Create and change templates.
    EditTemplates,
    /// Start executions and post events.
    Run,
    /// Operator controls and actions.
    Operate,
    /// Tokens, audit log, forced transitions.
    Administer,
}

impl Role {
    /// Whether the role grants the permission.
    pub fn allows(self, p: Permission) -> bool {
        use Permission as P;
        match self {
            Role::Admin => true,
            Role::Editor => matches!(p, P::Read | P::EditTemplates | P::Run),
            Role::Operator => matches!(p, P::Read | P::Run | P::Operate),
            Role::Viewer => matches!(p, P::Read),
        }
    }

    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Editor => "editor",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "admin" => Ok(Role::Admin),
            "editor" => Ok(Role::Editor),
            "operator" => Ok(Role::Operator),
            "viewer" => Ok(Role::Viewer),
            other => Err(format!("unknown role {other:?} (admin, editor, operator, viewer)")),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who is calling: their org, role and a subject for audit records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The org every read and write is scoped to.
    pub org: OrgId,
    /// The role.
    pub role: Role,
    /// `jwt:<sub>` or `pat:<token id>`: who did it, for audit records and admin entries.
    pub subject: String,
}

impl Principal {
    /// Refuses with 403 unless the role grants `p`.
    pub fn require(&self, p: Permission) -> Result<(), ApiError> {
        if self.role.allows(p) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!("role {} may not {}", self.role, describe(p))))
        }
    }
}

fn describe(p: Permission) -> &'static str {
    match p {
        Permission::Read => "read",
        Permission::EditTemplates => "edit templates",
        Permission::Run => "start executions or post events",
        Permission::Operate => "operate executions",
        Permission::Administer => "perform admin actions",
    }
}

/// How JWTs are checked. With neither a secret nor a JWKS file, JWTs are refused and only
/// access tokens work.
#[derive(Clone, Default)]
pub struct JwtConfig {
    /// HS256 shared secret (from `PLED_JWT_SECRET`; never a flag or a file in the repo).
    pub hs256_secret: Option<Vec<u8>>,
    /// RS256 public keys, by `kid`.
    pub rs256_keys: HashMap<String, DecodingKey>,
    /// Required `iss`.
    pub issuer: String,
    /// Required `aud`.
    pub audience: String,
}

impl fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtConfig")
            .field("hs256", &self.hs256_secret.is_some())
            .field("rs256_kids", &self.rs256_keys.keys().collect::<Vec<_>>())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

impl JwtConfig {
    /// Loads RS256 keys from a JWKS file (keys without `kid` are refused: a token must say
    /// which key signed it).
    pub fn load_jwks(&mut self, json: &str) -> anyhow::Result<()> {
        let set: JwkSet = serde_json::from_str(json)?;
        for jwk in &set.keys {
            let kid = jwk.common.key_id.clone().ok_or_else(|| anyhow::anyhow!("a JWKS key has no kid"))?;
            self.rs256_keys.insert(kid, DecodingKey::from_jwk(jwk)?);
        }
        Ok(())
    }

    /// Whether any JWT key is configured.
    pub fn enabled(&self) -> bool {
        self.hs256_secret.is_some() || !self.rs256_keys.is_empty()
    }
}

/// The claims PLED reads from a JWT.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Subject (user or service).
    pub sub: String,
    /// Org slug.
    pub org: String,
    /// Role name.
    pub role: String,
    /// Expiry (seconds since the epoch); required.
    pub exp: u64,
    /// Issuer; must equal the configured one.
    pub iss: String,
    /// Audience; must include the configured one.
    pub aud: serde_json::Value,
}

impl JwtConfig {
    /// Verifies a JWT's signature, expiry, issuer and audience, and reads its principal.
    pub fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        let bad = |why: String| ApiError::Unauthorized(format!("invalid token: {why}"));
        if !self.enabled() {
            return Err(bad("JWTs are not enabled on this server; use a PLED access token".into()));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| bad(e.to_string()))?;
        let key = match header.alg {
            Algorithm::HS256 => DecodingKey::from_secret(
                self.hs256_secret.as_deref().ok_or_else(|| bad("HS256 is not enabled".into()))?,
            ),
            Algorithm::RS256 => {
                let kid = header.kid.as_deref().ok_or_else(|| bad("RS256 token without kid".into()))?;
                self.rs256_keys.get(kid).cloned().ok_or_else(|| bad(format!("unknown key id {kid:?}")))?
            }
            other => return Err(bad(format!("algorithm {other:?} is not accepted"))),
        };
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = 30;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &v).map_err(|e| bad(e.to_string()))?;
        let c = data.claims;
        Ok(Principal {
            org: OrgId::new(&c.org).map_err(|e| bad(e.to_string()))?,
            role: c.role.parse().map_err(bad)?,
            subject: format!("jwt:{}", c.sub),
        })
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(p) = parts.extensions.get::<Principal>() {
            return Ok(p.clone());
        }
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::Unauthorized("missing Authorization: Bearer <token>".into()))?
            .to_str()
            .map_err(|_| ApiError::Unauthorized("malformed Authorization header".into()))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| ApiError::Unauthorized("Authorization must be a Bearer token".into()))?
            .trim();
        let principal = if token.starts_with(crate::repo::tokens::PREFIX) {
            state.tokens.verify(&state.store, token)?
        } else {
            state.jwt.verify(token)?
        };
        tracing::Span::current().record("org", principal.org.as_str());
        state.limits.check(&principal.org)?;
        parts.extensions.insert(principal.clone());
        Ok(principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_table() {
        use Permission as P;
        let all = [P::Read, P::EditTemplates, P::Run, P::Operate, P::Administer];
        let granted = |r: Role| all.iter().filter(|p| r.allows(**p)).count();
        assert_eq!(granted(Role::Admin), 5);
        assert!(Role::Editor.allows(P::EditTemplates) && !Role::Editor.allows(P::Operate));
        assert!(Role::Operator.allows(P::Operate) && !Role::Operator.allows(P::EditTemplates));
        assert_eq!(granted(Role::Viewer), 1);
        assert!(!Role::Operator.allows(P::Administer));
    }
}
