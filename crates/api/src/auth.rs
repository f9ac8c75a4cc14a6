//! API keys and roles: who is calling, whether they may, and how often.
//!
//! A key looks like `nk_3f9a1c2b_<32 hex digits>`. The `nk_3f9a1c2b` part is its public id (shown
//! in lists and the audit log); the store keeps only the SHA-256 of the whole key. Keys are read
//! from the store and cached for a few seconds, so a revoked key stops working within
//! [`CACHE_SECONDS`]; an id the cache does not know reloads it, so a new key works at once —
//! within [`UNKNOWN_RELOADS_PER_SECOND`], so that invented ids cannot each cost a read of the
//! table. Each key has a token bucket: past its rate, requests get 429 with
//! `Retry-After`; so has each client address for its failed authentications
//! ([`FAILURES_PER_SECOND`]), checked before the key is looked at.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use chrono::Utc;
use nigrani_domain::AccessRole;
use nigrani_domain::roster::sha256_hex;
use nigrani_store::{ApiKeyRecord, Store, StoreError};

use crate::ApiError;
use crate::error::ErrorCode;

/// How long the key cache is trusted.
pub const CACHE_SECONDS: u64 = 5;
/// Reloads of the key table that unknown key ids may cause per second (and in a burst).
pub const UNKNOWN_RELOADS_PER_SECOND: f64 = 10.0;
/// Failed authentications one client address may make per second (bursts of five times that) before
/// it gets 429 without its key being looked at.
pub const FAILURES_PER_SECOND: f64 = 20.0;
/// Client addresses whose failures are remembered; past this, the idle ones are forgotten.
const MAX_FAILING_ADDRESSES: usize = 10_000;
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
    /// The source what this caller sends is stored under: an ingest key's own, else (an admin
    /// key) the route's `default`.
    pub fn source_or(&self, default: &str) -> String {
        self.source.clone().unwrap_or_else(|| default.to_owned())
    }

    /// 403 unless the caller has one of these roles.
    pub fn require(&self, roles: &[AccessRole]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::Forbidden,
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
    failures: Failures,
    unknown_reloads: Mutex<Bucket>,
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
            failures: Failures::default(),
            unknown_reloads: Mutex::new(Bucket {
                tokens: UNKNOWN_RELOADS_PER_SECOND,
                updated: Instant::now(),
            }),
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
        // A known id is trusted for `CACHE_SECONDS`. An unknown one reloads the table, so that a
        // new key works at once — while reloads for unknown ids are left, so that a stream of
        // invented ids costs at most `UNKNOWN_RELOADS_PER_SECOND` reads of the table.
        let trusted = match record {
            Some(_) => age.is_some_and(|a| a < Duration::from_secs(CACHE_SECONDS)),
            None => {
                age.is_some_and(|a| a < Duration::from_secs(CACHE_SECONDS))
                    && !self.may_reload_for_unknown()
            }
        };
        (record, trusted)
    }

    /// Whether the cache holds this key, unrevoked and with its secret (without reloading).
    fn verifies(&self, key: &str) -> bool {
        let Some(key_id) = key_id(key) else {
            return false;
        };
        let cache = match self.cache.read() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        cache.keys.get(&key_id).is_some_and(|record| {
            record.revoked_at.is_none() && record.key_hash == sha256_hex(key.as_bytes())
        })
    }

    /// Takes one of the reloads unknown ids may cause, if one is left.
    fn may_reload_for_unknown(&self) -> bool {
        let mut bucket = match self.unknown_reloads.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        let now = Instant::now();
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens =
            (bucket.tokens + elapsed * UNKNOWN_RELOADS_PER_SECOND).min(UNKNOWN_RELOADS_PER_SECOND);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
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

    /// Who the key in the request belongs to. A client address that keeps failing is refused
    /// with 429 before its key is looked at.
    pub async fn authenticate(&self, req: &HttpRequest) -> Result<Caller, ApiError> {
        let address = req.peer_addr().map(|a| a.ip());
        // A key the cache holds, valid and unrevoked, costs the store nothing, so it passes even
        // from an address that is failing (a shared proxy); anything else waits for the address
        // (a guessed secret for a public key id too).
        let known = presented_key(req).is_some_and(|key| self.verifies(&key));
        if let (false, Some(address)) = (known, address) {
            self.failures.allow(address)?;
        }
        let result = self.authenticate_key(req).await;
        if let (Err(e), Some(address)) = (&result, address)
            && matches!(e.code, ErrorCode::MissingKey | ErrorCode::InvalidKey)
        {
            self.failures.record(address);
        }
        let record = result?;
        self.meter(&record.key_id)?;
        Ok(Caller {
            key_id: record.key_id,
            role: record.role,
            source: record.source,
        })
    }

    async fn authenticate_key(&self, req: &HttpRequest) -> Result<ApiKeyRecord, ApiError> {
        let key = presented_key(req).ok_or_else(|| {
            ApiError::new(
                ErrorCode::MissingKey,
                "send an API key as `Authorization: Bearer <key>` (or `X-Api-Key`, or HTTP Basic \
                 with the key's id as user name and the rest of the key as password)",
            )
        })?;
        let invalid = || {
            ApiError::new(
                ErrorCode::InvalidKey,
                "the API key is not valid or was revoked",
            )
        };
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
        Ok(record)
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
            ErrorCode::RateLimited,
            format!(
                "this key sent more than {} requests a second; retry in {wait} s",
                self.rate
            ),
        )
        .with_retry_after(wait))
    }
}

/// Failed authentications per client address, as token buckets: each failure takes a token,
/// and an address with none left is refused until they refill.
#[derive(Default)]
struct Failures {
    buckets: Mutex<HashMap<std::net::IpAddr, Bucket>>,
}

impl Failures {
    const BURST: f64 = FAILURES_PER_SECOND * 5.0;

    fn refilled(bucket: &mut Bucket, now: Instant) {
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * FAILURES_PER_SECOND).min(Self::BURST);
        bucket.updated = now;
    }

    /// The unit an address is counted in: itself for IPv4, its /64 for IPv6 (one host usually
    /// has a whole /64, and would otherwise have endless addresses to fail from).
    fn unit(address: std::net::IpAddr) -> std::net::IpAddr {
        match address {
            std::net::IpAddr::V6(v6) => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                std::net::IpAddr::V6(bits.into())
            }
            v4 => v4,
        }
    }

    /// 429 when the address has used up its failures.
    fn allow(&self, address: std::net::IpAddr) -> Result<(), ApiError> {
        let address = Self::unit(address);
        let mut buckets = match self.buckets.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        let Some(bucket) = buckets.get_mut(&address) else {
            return Ok(());
        };
        Self::refilled(bucket, Instant::now());
        if bucket.tokens >= 1.0 {
            return Ok(());
        }
        let wait = ((1.0 - bucket.tokens) / FAILURES_PER_SECOND)
            .ceil()
            .max(1.0) as u64;
        Err(ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "too many requests with a missing or invalid key from this address; retry in \
                 {wait} s"
            ),
        )
        .with_retry_after(wait))
    }

    fn record(&self, address: std::net::IpAddr) {
        let address = Self::unit(address);
        let mut buckets = match self.buckets.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        let now = Instant::now();
        if buckets.len() >= MAX_FAILING_ADDRESSES && !buckets.contains_key(&address) {
            // Forget the addresses whose buckets have refilled: they are not failing now. If
            // all are, forget the one failing least, so that a new address is still counted.
            buckets.retain(|_, bucket| {
                Self::refilled(bucket, now);
                bucket.tokens < Self::BURST
            });
            if buckets.len() >= MAX_FAILING_ADDRESSES {
                let least = buckets
                    .iter()
                    .max_by(|a, b| a.1.tokens.total_cmp(&b.1.tokens))
                    .map(|(address, _)| *address);
                if let Some(least) = least {
                    buckets.remove(&least);
                }
            }
        }
        let bucket = buckets.entry(address).or_insert(Bucket {
            tokens: Self::BURST,
            updated: now,
        });
        Self::refilled(bucket, now);
        bucket.tokens = (bucket.tokens - 1.0).max(0.0);
    }
}

fn presented_key(req: &HttpRequest) -> Option<String> {
    let headers = req.headers();
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        // The scheme is case-insensitive (RFC 9110 §11.1); a bare key is taken as it is.
        let value = value.trim();
        let token = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token,
            Some((scheme, credentials)) if scheme.eq_ignore_ascii_case("basic") => {
                return basic_key(credentials.trim());
            }
            _ => value,
        };
        return Some(token.trim().to_owned());
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned())
}

/// The key in HTTP Basic credentials, as learning record store clients send it: the key's id as
/// the user name and the rest of the key as the password (`nk_3f9a1c2b` and its 32 hex digits),
/// or the whole key as the password.
fn basic_key(credentials: &str) -> Option<String> {
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    if password.starts_with(PREFIX) {
        Some(password.to_owned())
    } else {
        Some(format!("{user}_{password}"))
    }
}

/// The caller, for handlers: `caller: Authenticated` authenticates, meters and records the caller
/// in the request's extensions (for the audit log).
pub struct Authenticated(pub Caller);

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    /// The caller [`crate::access::check`] authorised. A route without an access rule has none,
    /// and is refused rather than served unchecked.
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let authorized = req.extensions().get::<crate::access::Authorized>().cloned();
        std::future::ready(match authorized {
            Some(crate::access::Authorized(caller)) => {
                req.extensions_mut().insert(caller.clone());
                Ok(Authenticated(caller))
            }
            None => {
                tracing::error!(path = req.path(), "A route has no access rule.");
                Err(ApiError::new(
                    ErrorCode::InternalError,
                    "this route has no access rule; the cause is in nigrani's log",
                ))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_carry_the_key_split_at_its_id_or_whole() {
        use base64::Engine as _;
        let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
        let key = "nk_3f9a1c2b_00112233445566778899aabbccddeeff";
        assert_eq!(
            basic_key(&encode("nk_3f9a1c2b:00112233445566778899aabbccddeeff")).as_deref(),
            Some(key)
        );
        assert_eq!(
            basic_key(&encode(&format!("lrs:{key}"))).as_deref(),
            Some(key)
        );
        assert_eq!(basic_key("not base64!"), None);
        assert_eq!(basic_key(&encode("no colon")), None);
    }

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
