//! API keys and roles: who is calling, whether they may, and how often.
//!
//! A key looks like `nk_3f9a1c2b_<32 hex digits>`. The `nk_3f9a1c2b` part is its public id (shown
//! in lists and the audit log); the store keeps only the SHA-256 of the whole key. Keys are read
//! from the store and cached for a few seconds, so a revoked key stops working within
//! [`CACHE_SECONDS`]; an id the cache does not know reloads it, so a new key works at once. Each key has a token bucket: past its rate, requests get 429 with
//! `Retry-After`.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use chrono::Utc;
use nigrani_domain::AccessRole;
use nigrani_domain::roster::sha256_hex;
use nigrani_store::{ApiKeyRecord, Store, StoreError};

use crate::{ApiError, AppState};

/// How long the key cache is trusted.
pub const CACHE_SECONDS: u64 = 5;
const PREFIX: &str = "nk_";

/// A new key: the whole key (shown once) and the record to store.
pub struct NewKey {
    pub key: String,
    pub record: ApiKeyRecord,
}

/// Makes a key with fresh random bytes from the operating system.
pub fn generate(name: &str, role: AccessRole, source: Option<String>) -> std::io::Result<NewKey> {
    let mut bytes = [0u8; 20];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    let hex = nigrani_domain::roster::hex(&bytes);
    let key = format!("{PREFIX}{}_{}", &hex[..8], &hex[8..]);
    Ok(NewKey {
        record: record_for(&key, name, role, source).map_err(std::io::Error::other)?,
        key,
    })
}

/// The record of a key given by an operator (e.g. the bootstrap admin key from the environment).
pub fn record_for(
    key: &str,
    name: &str,
    role: AccessRole,
    source: Option<String>,
) -> Result<ApiKeyRecord, String> {
    let key_id = key_id(key)
        .ok_or_else(|| "an API key has the form nk_<8 hex digits>_<32 hex digits>".to_owned())?;
    Ok(ApiKeyRecord {
        key_id,
        name: name.to_owned(),
        role,
        source,
        key_hash: sha256_hex(key.as_bytes()),
        created_at: Utc::now(),
        revoked_at: None,
    })
}

/// The public id of a well-formed key.
fn key_id(key: &str) -> Option<String> {
    let rest = key.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id, 8) && hex(secret, 32)).then(|| format!("{PREFIX}{id}"))
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub key_id: String,
    pub role: AccessRole,
    /// Ingest keys: the only source they may send.
    pub source: Option<String>,
}

impl Caller {
    /// 403 unless the caller has one of these roles.
    pub fn require(&self, roles: &[AccessRole]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::new(
                "forbidden",
                format!(
                    "a {} key may not do this; it needs one of: {}",
                    self.role,
                    roles
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ))
        }
    }
}

struct Cache {
    keys: HashMap<String, ApiKeyRecord>,
    loaded: Option<Instant>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Validates keys and meters their use.
pub struct Keys {
    store: Arc<dyn Store>,
    cache: RwLock<Cache>,
    buckets: Mutex<HashMap<String, Bucket>>,
    rate: f64,
    burst: f64,
}

impl Keys {
    /// `rate_per_second` requests per key, with bursts of twice that.
    pub fn new(store: Arc<dyn Store>, rate_per_second: u32) -> Self {
        let rate = f64::from(rate_per_second.max(1));
        Self {
            store,
            cache: RwLock::new(Cache {
                keys: HashMap::new(),
                loaded: None,
            }),
            buckets: Mutex::new(HashMap::new()),
            rate,
            burst: rate * 2.0,
        }
    }

    /// The cached record, and whether the cache may answer for this id without a reload.
    fn cached(&self, key_id: &str) -> (Option<ApiKeyRecord>, bool) {
        let cache = match self.cache.read() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        let record = cache.keys.get(key_id).cloned();
        let age = cache.loaded.map(|t| t.elapsed());
        // An unknown id always reloads (the keys table is small), so a new key works at once.
        let trusted =
            record.is_some() && age.is_some_and(|a| a < Duration::from_secs(CACHE_SECONDS));
        (record, trusted)
    }

    async fn reload(&self) -> Result<(), StoreError> {
        let keys = self.store.api_keys().await?;
        let mut cache = match self.cache.write() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        cache.keys = keys.into_iter().map(|k| (k.key_id.clone(), k)).collect();
        cache.loaded = Some(Instant::now());
        Ok(())
    }

    /// Who the key in the request belongs to.
    pub async fn authenticate(&self, req: &HttpRequest) -> Result<Caller, ApiError> {
        let key = presented_key(req).ok_or_else(|| {
            ApiError::new(
                "missing_key",
                "send an API key as `Authorization: Bearer <key>` (or `X-Api-Key`)",
            )
        })?;
        let invalid = || ApiError::new("invalid_key", "the API key is not valid or was revoked");
        let key_id = key_id(&key).ok_or_else(invalid)?;
        let (mut record, trusted) = self.cached(&key_id);
        if !trusted {
            self.reload().await?;
            record = self.cached(&key_id).0;
        }
        let record = record.ok_or_else(invalid)?;
        if record.revoked_at.is_some() || record.key_hash != sha256_hex(key.as_bytes()) {
            return Err(invalid());
        }
        self.meter(&record.key_id)?;
        Ok(Caller {
            key_id: record.key_id,
            role: record.role,
            source: record.source,
        })
    }

    /// Takes a token from the key's bucket, or says how long to wait.
    fn meter(&self, key_id: &str) -> Result<(), ApiError> {
        let mut buckets = match self.buckets.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        let now = Instant::now();
        let bucket = buckets.entry(key_id.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - bucket.tokens) / self.rate).ceil().max(1.0) as u64;
        Err(ApiError::new(
            "rate_limited",
            format!(
                "this key sent more than {} requests a second; retry in {wait} s",
                self.rate
            ),
        )
        .with_retry_after(wait))
    }
}

fn presented_key(req: &HttpRequest) -> Option<String> {
    let headers = req.headers();
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let value = value.trim();
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .unwrap_or(value);
        return Some(token.trim().to_owned());
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned())
}

/// The caller, for handlers: `caller: Authenticated` authenticates, meters and records the caller
/// in the request's extensions (for the audit log).
pub struct Authenticated(pub Caller);

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = req
                .app_data::<web::Data<AppState>>()
                .ok_or_else(|| ApiError::new("internal_error", "application state missing"))?;
            let caller = state.keys.authenticate(&req).await?;
            req.extensions_mut().insert(caller.clone());
            Ok(Authenticated(caller))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_a_public_id_and_are_stored_hashed() {
        let new = generate("meta", AccessRole::Partner, None).unwrap();
        assert!(new.key.starts_with(&new.record.key_id));
        assert_eq!(new.key.len(), 3 + 8 + 1 + 32);
        assert_ne!(new.record.key_hash, new.key);
        assert_eq!(new.record.key_hash, sha256_hex(new.key.as_bytes()));
        assert_eq!(key_id("nk_1234abcd_short"), None);
        assert_eq!(key_id("xx_1234abcd_0123456789abcdef0123456789abcdef"), None);
    }
}
