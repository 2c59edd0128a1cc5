//! Client keys as the config gives them: `[[gateway.keys]]` tables, each a named key with the
//! endpoints it may use, its rate limits and whether it administers every tenant's jobs. The
//! flat `api_keys` list still works: each entry is a key of its own, on every endpoint,
//! without limits.

use serde::{Deserialize, Serialize};

/// One client key (`[[gateway.keys]]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientKey {
    /// Shown in logs and errors, never the key itself; unique. It also names the tenant the
    /// key's jobs and batches belong to.
    pub name: String,
    /// The key itself. Exactly one of `key`, `key_sha256` and `key_env` is given.
    #[serde(default)]
    pub key: Option<String>,
    /// The key's SHA-256, 64 hex digits (so the config need not hold the key).
    #[serde(default)]
    pub key_sha256: Option<String>,
    /// The environment variable holding the key, read when the gateway starts.
    #[serde(default)]
    pub key_env: Option<String>,
    /// Endpoints the key may use, by name; `"*"` (the default) is all. Any other endpoint
    /// answers 404, as if it did not exist.
    #[serde(default = "every_endpoint")]
    pub endpoints: Vec<String>,
    /// Requests per minute, as a token bucket holding a minute's worth; `None`: no limit.
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    /// Prompt + completion tokens per minute, charged when a request's job ends with its
    /// usage (a request is refused while the bucket is empty; one request may overdraw it);
    /// `None`: no limit.
    #[serde(default)]
    pub tokens_per_minute: Option<u32>,
    /// Requests in flight at once on one gateway; `None`: no limit.
    #[serde(default)]
    pub max_concurrent: Option<u32>,
    /// An admin key sees and purges every tenant's jobs and batches.
    #[serde(default)]
    pub admin: bool,
}

fn every_endpoint() -> Vec<String> {
    vec!["*".to_string()]
}

impl ClientKey {
    /// A key of the flat `api_keys` list: named `api_keys[i]`, every endpoint, no limits.
    pub fn flat(i: usize, key: &str) -> Self {
        ClientKey {
            name: format!("api_keys[{i}]"),
            key: Some(key.to_string()),
            key_sha256: None,
            key_env: None,
            endpoints: every_endpoint(),
            requests_per_minute: None,
            tokens_per_minute: None,
            max_concurrent: None,
            admin: false,
        }
    }

    /// Whether the key may use `endpoint`.
    pub fn allows(&self, endpoint: &str) -> bool {
        self.endpoints.iter().any(|e| e == "*" || e == endpoint)
    }

    /// The key's secret as configured: the key itself, or its SHA-256 (decoded hex).
    /// Errors: not exactly one of `key`, `key_sha256` and `key_env`; an unset variable; bad
    /// hex; a zero limit.
    pub fn secret(&self) -> Result<Secret, String> {
        let at = format!("gateway.keys `{}`", self.name);
        if [
            self.requests_per_minute,
            self.tokens_per_minute,
            self.max_concurrent,
        ]
        .contains(&Some(0))
        {
            return Err(format!(
                "{at}: limits must be at least 1 (leave one out for none)"
            ));
        }
        match (&self.key, &self.key_sha256, &self.key_env) {
            (Some(k), None, None) if !k.is_empty() => Ok(Secret::Plain(k.clone())),
            (None, Some(h), None) => decode_hex(h)
                .map(Secret::Sha256)
                .ok_or_else(|| format!("{at}: key_sha256 must be 64 hex digits")),
            (None, None, Some(var)) => match std::env::var(var) {
                Ok(k) if !k.is_empty() => Ok(Secret::Plain(k)),
                _ => Err(format!("{at}: environment variable {var} is not set")),
            },
            _ => Err(format!(
                "{at}: give exactly one of key, key_sha256 and key_env (a non-empty key)"
            )),
        }
    }
}

/// A key's secret as the config gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Secret {
    /// The key itself.
    Plain(String),
    /// Its SHA-256.
    Sha256([u8; 32]),
}

fn decode_hex(h: &str) -> Option<[u8; 32]> {
    let h = h.trim();
    if h.len() != 64 || !h.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&h[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Check a config's keys: each has one secret source and valid limits, names are unique, and
/// scopes name known endpoints (`known`). Errors: the first problem, naming the key.
pub fn check_keys(keys: &[ClientKey], known: &[String]) -> Result<(), String> {
    for (i, k) in keys.iter().enumerate() {
        if k.name.is_empty() || keys[..i].iter().any(|o| o.name == k.name) {
            return Err(format!(
                "gateway.keys: name `{}` is empty or repeated",
                k.name
            ));
        }
        // An unset `key_env` is reported when the gateway starts, not when a tool reads the
        // config.
        if k.key_env.is_none() {
            k.secret()?;
        }
        if let Some(e) = k.endpoints.iter().find(|e| *e != "*" && !known.contains(e)) {
            return Err(format!("gateway.keys `{}`: unknown endpoint `{e}`", k.name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(toml_text: &str) -> ClientKey {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn keys_need_one_secret_and_known_endpoints() {
        let k =
            key("name = \"a\"\nkey = \"sk-1\"\nendpoints = [\"echo\"]\nrequests_per_minute = 5");
        assert_eq!(k.secret().unwrap(), Secret::Plain("sk-1".into()));
        assert!(k.allows("echo") && !k.allows("other"));
        let known = vec!["echo".to_string()];
        assert!(check_keys(std::slice::from_ref(&k), &known).is_ok());
        let twice = check_keys(&[k.clone(), k.clone()], &known).unwrap_err();
        assert!(twice.contains("repeated"), "{twice}");
        let both = key("name = \"b\"\nkey = \"x\"\nkey_sha256 = \"00\"");
        assert!(both.secret().unwrap_err().contains("exactly one"));
        let hashed = key(&format!(
            "name = \"c\"\nkey_sha256 = \"{}\"",
            "ab".repeat(32)
        ));
        assert_eq!(hashed.secret().unwrap(), Secret::Sha256([0xab; 32]));
        let scoped = key("name = \"d\"\nkey = \"y\"\nendpoints = [\"nope\"]");
        assert!(check_keys(&[scoped], &known).unwrap_err().contains("nope"));
        let zero = key("name = \"e\"\nkey = \"z\"\nmax_concurrent = 0");
        assert!(zero.secret().is_err());
        assert!(ClientKey::flat(0, "k").allows("anything"));
    }
}
