//! Rate limits: a token bucket per API key (off unless `--rate-limit` or the
//! key's own `rate_limit` sets one), and one per client address for failed
//! authentications (always on), so guessing keys is slow.
//!
//! Answers carry the IETF `RateLimit-Policy` and `RateLimit` fields
//! (draft-ietf-httpapi-ratelimit-headers): `q` requests per `w` seconds, `r`
//! remaining, `t` seconds until the bucket is full again. Over the limit:
//! 429 `rate_limited` with `Retry-After`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use poem::http::{HeaderValue, StatusCode, header};
use uuid::Uuid;

use super::problem::{ErrorCode, Problem};

/// Failed authentications a client address regains per second, after its
/// burst (`--auth-failure-burst`) is spent: one guess a second.
const AUTH_FAILURE_REFILL: f64 = 1.0;
/// Addresses remembered at most; full (idle) buckets are forgotten first.
const MAX_TRACKED_ADDRESSES: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(capacity: f64, now: Instant) -> Self {
        Self {
            tokens: capacity,
            at: now,
        }
    }

    fn refill(&mut self, capacity: f64, per_second: f64, now: Instant) {
        let gained = now.duration_since(self.at).as_secs_f64() * per_second;
        self.tokens = (self.tokens + gained).min(capacity);
        self.at = now;
    }
}

/// What the caller learns from a check: allowed or not, and the figures for
/// the headers.
#[derive(Debug, Clone, Copy)]
pub struct Verdict {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset: u64,
    /// Seconds until one request is allowed again (when refused).
    pub retry_after: u64,
}

impl Verdict {
    /// Adds the RateLimit fields to an answer's headers.
    pub fn headers(&self) -> [(header::HeaderName, HeaderValue); 2] {
        let policy = format!("\"key\";q={};w=1", self.limit);
        let state = format!("\"key\";r={};t={}", self.remaining, self.reset);
        [
            (
                header::HeaderName::from_static("ratelimit-policy"),
                HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static("")),
            ),
            (
                header::HeaderName::from_static("ratelimit"),
                HeaderValue::from_str(&state).unwrap_or(HeaderValue::from_static("")),
            ),
        ]
    }

    pub fn refusal(&self, detail: &str) -> Problem {
        let mut p = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            detail,
        )
        .with_header(
            header::RETRY_AFTER,
            HeaderValue::from(self.retry_after.max(1)),
        );
        for (name, value) in self.headers() {
            p = p.with_header(name, value);
        }
        p
    }
}

pub struct RateLimiter {
    /// Requests per second for keys without a limit of their own; 0: off.
    /// Atomic, like the burst: a reload (SIGHUP) changes both live.
    default: AtomicU32,
    keys: Mutex<HashMap<Uuid, Bucket>>,
    /// Failed authentications an address may make at once; 0: no throttle.
    failure_burst: AtomicU32,
    failures: Mutex<HashMap<IpAddr, Bucket>>,
    /// Entries in `failures`, read without the lock: on the usual path no
    /// address has failed and every request skips the map.
    tracked: AtomicUsize,
}

impl RateLimiter {
    pub fn new(default: Option<u32>, failure_burst: u32) -> Self {
        Self {
            default: AtomicU32::new(default.unwrap_or(0)),
            keys: Mutex::default(),
            failure_burst: AtomicU32::new(failure_burst),
            failures: Mutex::default(),
            tracked: AtomicUsize::new(0),
        }
    }

    /// New limits (`--rate-limit`, `--auth-failure-burst`) from a reload;
    /// buckets keep what they hold and fill to the new size.
    pub fn set(&self, default: Option<u32>, failure_burst: u32) {
        self.default.store(default.unwrap_or(0), Ordering::Relaxed);
        self.failure_burst.store(failure_burst, Ordering::Relaxed);
    }

    fn failure_burst(&self) -> f64 {
        f64::from(self.failure_burst.load(Ordering::Relaxed))
    }

    /// Takes one request from a key's bucket; `None` when the key has no limit.
    pub fn check_key(&self, key: Uuid, own: Option<u32>) -> Option<Verdict> {
        let limit = match own {
            Some(0) => return None,
            Some(n) => n,
            None => match self.default.load(Ordering::Relaxed) {
                0 => return None,
                n => n,
            },
        };
        let capacity = f64::from(limit);
        let now = Instant::now();
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = keys
            .entry(key)
            .or_insert_with(|| Bucket::full(capacity, now));
        bucket.refill(capacity, capacity, now);
        let allowed = bucket.tokens >= 1.0;
        if allowed {
            bucket.tokens -= 1.0;
        }
        Some(verdict(*bucket, capacity, capacity, allowed, limit))
    }

    /// Whether this address may try to authenticate now.
    pub fn check_address(&self, addr: IpAddr) -> Option<Verdict> {
        if self.tracked.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = failures.get_mut(&addr)?;
        bucket.refill(self.failure_burst(), AUTH_FAILURE_REFILL, now);
        (bucket.tokens < 1.0).then(|| {
            verdict(
                *bucket,
                self.failure_burst(),
                AUTH_FAILURE_REFILL,
                false,
                self.failure_burst() as u32,
            )
        })
    }

    /// Counts a failed authentication from this address.
    pub fn failed(&self, addr: IpAddr) {
        if self.failure_burst() < 1.0 {
            return;
        }
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= MAX_TRACKED_ADDRESSES {
            failures.retain(|_, b| {
                b.refill(self.failure_burst(), AUTH_FAILURE_REFILL, now);
                b.tokens < self.failure_burst()
            });
        }
        let bucket = failures
            .entry(addr)
            .or_insert_with(|| Bucket::full(self.failure_burst(), now));
        bucket.refill(self.failure_burst(), AUTH_FAILURE_REFILL, now);
        bucket.tokens = (bucket.tokens - 1.0).max(0.0);
        self.tracked.store(failures.len(), Ordering::Relaxed);
    }
}

fn verdict(b: Bucket, capacity: f64, per_second: f64, allowed: bool, limit: u32) -> Verdict {
    let missing = capacity - b.tokens;
    let secs = |tokens: f64| Duration::from_secs_f64((tokens / per_second).max(0.0)).as_secs_f64();
    Verdict {
        allowed,
        limit,
        remaining: b.tokens.floor().max(0.0) as u32,
        reset: secs(missing).ceil() as u64,
        retry_after: secs(1.0 - b.tokens).ceil() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_limit_then_429_figures() {
        let r = RateLimiter::new(Some(3), 10);
        let k = Uuid::now_v7();
        for left in [2, 1, 0] {
            let v = r.check_key(k, None).unwrap();
            assert!(v.allowed);
            assert_eq!(v.remaining, left);
        }
        let v = r.check_key(k, None).unwrap();
        assert!(!v.allowed);
        assert_eq!(v.retry_after, 1);
        assert_eq!(v.reset, 1);
        // Its own limit wins; 0 means none.
        assert!(r.check_key(Uuid::now_v7(), Some(0)).is_none());
        assert_eq!(r.check_key(Uuid::now_v7(), Some(10)).unwrap().limit, 10);
        // No server default: only keys with their own limit are limited.
        assert!(RateLimiter::new(None, 10).check_key(k, None).is_none());
    }

    #[test]
    fn failed_authentications_throttle_an_address() {
        let r = RateLimiter::new(None, 10);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(r.check_address(a).is_none());
        for _ in 0..10 {
            r.failed(a);
        }
        let v = r.check_address(a).expect("throttled");
        assert!(!v.allowed);
        assert!(v.retry_after >= 1);
        assert!(r.check_address("192.0.2.2".parse().unwrap()).is_none());
    }
}
