//! Per-org request rates (`--org-rate-limit`, `--org-burst`): a token bucket for each org, so
//! that no org causes more than its share of the service's work (lanes, writer, ledger,
//! rounds). An org's requests take one token each; the bucket holds at most `burst` tokens and
//! refills at `rate` per second. A request that finds it empty is answered 429 `rate_limited`
//! with `Retry-After` before it reaches a lane, and does nothing. Off unless `--org-rate-limit`
//! is set. `--org-limit ORG=RATE[/BURST]` (or `[org_limits]` in the config file) gives an org
//! its own rate and burst, or none (rate 0), whatever the default; `SIGHUP` applies a changed
//! configuration file at once. (A refusal still costs about what the cheapest request does:
//! against a flood of raw requests the limit belongs in front of the service; see
//! BENCHMARKS.md, HTTP.)

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pled_core::OrgId;

use crate::config::OrgLimit;
use crate::error::ApiError;

/// The limits, and the buckets of every limited org that has made a request. The limits can be
/// replaced while the service runs ([`OrgLimits::set`], on `SIGHUP`).
#[derive(Debug, Default)]
pub struct OrgLimits {
    /// Whether any org is limited: when none is, a request costs one atomic load.
    active: AtomicBool,
    inner: Mutex<Limits>,
}

#[derive(Debug, Default)]
struct Limits {
    /// For orgs not in `orgs`; `None`: unlimited.
    default: Option<Limit>,
    /// Orgs with limits of their own (`None`: unlimited).
    orgs: HashMap<OrgId, Option<Limit>>,
    buckets: HashMap<OrgId, Bucket>,
}

/// A rate (requests per second, above 0) and a bucket size.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Limit {
    rate: f64,
    burst: f64,
}

impl Limit {
    fn new(rate: f64, burst: u32) -> Option<Self> {
        (rate > 0.0).then(|| Self { rate, burst: f64::from(burst.max(1)) })
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl OrgLimits {
    /// `rate` requests per second with bursts of `burst` for every org (0: none), except the
    /// orgs of `orgs` (their own rate, 0 for none, and burst, `burst` if not given).
    pub fn new(rate: f64, burst: u32, orgs: &BTreeMap<OrgId, OrgLimit>) -> Self {
        let limits = Self::default();
        limits.set(rate, burst, orgs);
        limits
    }

    /// Replaces the limits. Buckets keep their tokens (up to the new burst); an org limited
    /// for the first time starts with a full bucket.
    pub fn set(&self, rate: f64, burst: u32, orgs: &BTreeMap<OrgId, OrgLimit>) {
        let orgs: HashMap<OrgId, Option<Limit>> =
            orgs.iter().map(|(org, l)| (org.clone(), Limit::new(l.rate, l.burst.unwrap_or(burst)))).collect();
        let default = Limit::new(rate, burst);
        let active = default.is_some() || orgs.values().any(Option::is_some);
        let mut inner = self.lock();
        (inner.default, inner.orgs) = (default, orgs);
        self.active.store(active, Ordering::Release);
    }

    /// Whether any org is limited.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Limits> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes one of `org`'s tokens, or answers 429 with the seconds until one is back.
    pub fn check(&self, org: &OrgId) -> Result<(), ApiError> {
        if !self.is_active() {
            return Ok(());
        }
        let now = Instant::now();
        let refused = {
            let mut inner = self.lock();
            let Some(limit) = inner.limit(org) else { return Ok(()) };
            inner.take(org, limit, now).err().map(|wait| (wait, limit))
        };
        let Some((wait, limit)) = refused else { return Ok(()) };
        metrics::counter!("pled_rate_limited_total", "org" => org.as_str().to_owned()).increment(1);
        // Whole seconds for `Retry-After`, rounded up: retrying then finds a token.
        let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Err(ApiError::RateLimited {
            detail: format!(
                "org {org} is over its {} requests per second (bursts of {}); retry in {retry_after} s",
                limit.rate, limit.burst
            ),
            retry_after,
        })
    }
}

impl Limits {
    fn limit(&self, org: &OrgId) -> Option<Limit> {
        self.orgs.get(org).copied().unwrap_or(self.default)
    }

    /// One token at `now` from `org`'s bucket, which has `limit`, or how long until there is one.
    fn take(&mut self, org: &OrgId, limit: Limit, now: Instant) -> Result<(), Duration> {
        let bucket = match self.buckets.get_mut(org) {
            Some(b) => b,
            None => self.buckets.entry(org.clone()).or_insert(Bucket { tokens: limit.burst, at: now }),
        };
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * limit.rate).min(limit.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / limit.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(slug: &str) -> OrgId {
        OrgId::new(slug).unwrap()
    }

    /// `take` with the org's limit, as `check` does.
    fn take(limits: &OrgLimits, org: &OrgId, now: Instant) -> Result<(), Duration> {
        let mut inner = limits.lock();
        let limit = inner.limit(org).unwrap();
        inner.take(org, limit, now)
    }

    fn limit(limits: &OrgLimits, org: &OrgId) -> Option<Limit> {
        limits.lock().limit(org)
    }

    #[test]
    fn a_burst_then_the_rate_and_each_org_on_its_own() {
        let limits = OrgLimits::new(2.0, 3, &BTreeMap::new());
        let (acme, globex) = (org("acme"), org("globex"));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(take(&limits, &acme, t0), Ok(()));
        }
        assert_eq!(take(&limits, &acme, t0), Err(Duration::from_millis(500)), "empty: one token every 0.5 s");
        assert_eq!(take(&limits, &globex, t0), Ok(()), "another org has its own bucket");
        let t1 = t0 + Duration::from_millis(250);
        assert_eq!(take(&limits, &acme, t1), Err(Duration::from_millis(250)), "half a token back");
        let t2 = t0 + Duration::from_millis(500);
        assert_eq!(take(&limits, &acme, t2), Ok(()));
        assert!(take(&limits, &acme, t2).is_err());
        let later = t2 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(take(&limits, &acme, later), Ok(()), "refills up to the burst, no further");
        }
        assert!(take(&limits, &acme, later).is_err());
        assert!(!OrgLimits::new(0.0, 10, &BTreeMap::new()).is_active(), "0 is off");
    }

    #[test]
    fn an_org_of_its_own_has_its_own_rate_and_burst_or_none() {
        let orgs = BTreeMap::from([
            (org("bigco"), OrgLimit { rate: 100.0, burst: Some(5) }),
            (org("trusted"), OrgLimit { rate: 0.0, burst: None }),
            (org("small"), OrgLimit { rate: 1.0, burst: None }),
        ]);
        let limits = OrgLimits::new(2.0, 3, &orgs);
        let t0 = Instant::now();
        let taken = |slug: &str| (0..10).take_while(|_| take(&limits, &org(slug), t0).is_ok()).count();
        assert_eq!(taken("bigco"), 5, "its own burst");
        assert_eq!(take(&limits, &org("bigco"), t0), Err(Duration::from_millis(10)), "its own rate");
        assert_eq!(taken("small"), 3, "the default burst");
        assert_eq!(take(&limits, &org("small"), t0), Err(Duration::from_secs(1)), "its own rate");
        assert_eq!(taken("acme"), 3, "the default");
        assert!(limit(&limits, &org("trusted")).is_none());
        for _ in 0..1000 {
            limits.check(&org("trusted")).unwrap();
        }

        // No default: only the orgs named are limited.
        let limits = OrgLimits::new(0.0, 3, &orgs);
        assert!(limit(&limits, &org("acme")).is_none() && limit(&limits, &org("small")).is_some());
        let only_unlimited = BTreeMap::from([(org("trusted"), OrgLimit { rate: 0.0, burst: None })]);
        assert!(!OrgLimits::new(0.0, 3, &only_unlimited).is_active(), "limits nobody");
    }

    #[test]
    fn new_limits_apply_at_once_and_buckets_keep_what_they_hold() {
        let limits = OrgLimits::new(0.0, 3, &BTreeMap::new());
        for _ in 0..10 {
            limits.check(&org("acme")).unwrap();
        }
        let t0 = Instant::now();
        limits.set(1.0, 2, &BTreeMap::new());
        assert!(limits.is_active());
        assert_eq!((take(&limits, &org("acme"), t0), take(&limits, &org("acme"), t0)), (Ok(()), Ok(())));
        assert!(take(&limits, &org("acme"), t0).is_err(), "a new bucket of 2");
        // A larger burst does not refill by itself; a smaller one caps what is held.
        limits.set(1.0, 10, &BTreeMap::new());
        assert!(take(&limits, &org("acme"), t0).is_err());
        limits.set(0.0, 10, &BTreeMap::from([(org("acme"), OrgLimit { rate: 0.0, burst: None })]));
        assert!(!limits.is_active());
        limits.check(&org("acme")).unwrap();
    }

    #[test]
    fn the_answer_is_a_429_with_whole_seconds_to_wait() {
        let limits = OrgLimits::new(0.4, 1, &BTreeMap::new());
        let acme = OrgId::new("acme").unwrap();
        limits.check(&acme).unwrap();
        match limits.check(&acme) {
            Err(ApiError::RateLimited { retry_after, detail }) => {
                assert_eq!(retry_after, 3, "2.5 s rounded up");
                assert!(detail.contains("org acme is over its 0.4 requests per second"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
    }
}
