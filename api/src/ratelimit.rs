//! Per-org request rates (`--org-rate-limit`, `--org-burst`): a token bucket for each org, so
//! that no org causes more than its share of the service's work (lanes, writer, ledger,
//! rounds). An org's requests take one token each; the bucket holds at most `burst` tokens and
//! refills at `rate` per second. A request that finds it empty is answered 429 `rate_limited`
//! with `Retry-After` before it reaches a lane, and does nothing. Off unless `--org-rate-limit`
//! is set. (A refusal still costs about what the cheapest request does: against a flood of
//! raw requests the limit belongs in front of the service; see BENCHMARKS.md, HTTP.)

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pled_core::OrgId;

use crate::error::ApiError;

/// The buckets of every org that has made a request.
#[derive(Debug)]
pub struct OrgLimits {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<OrgId, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl OrgLimits {
    /// `rate` requests per second with bursts of `burst`; `None` when `rate` is 0 (off).
    pub fn new(rate: f64, burst: u32) -> Option<Self> {
        (rate > 0.0).then(|| Self { rate, burst: f64::from(burst.max(1)), buckets: Mutex::default() })
    }

    /// Takes one of `org`'s tokens, or answers 429 with the seconds until one is back.
    pub fn check(&self, org: &OrgId) -> Result<(), ApiError> {
        self.take(org, Instant::now()).map_err(|wait| {
            metrics::counter!("pled_rate_limited_total", "org" => org.as_str().to_owned()).increment(1);
            // Whole seconds for `Retry-After`, rounded up: retrying then finds a token.
            let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            ApiError::RateLimited {
                detail: format!(
                    "org {org} is over its {} requests per second (bursts of {}); retry in {retry_after} s",
                    self.rate, self.burst
                ),
                retry_after,
            }
        })
    }

    /// One token at `now`, or how long until there is one.
    fn take(&self, org: &OrgId, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let bucket = match buckets.get_mut(org) {
            Some(b) => b,
            None => buckets.entry(org.clone()).or_insert(Bucket { tokens: self.burst, at: now }),
        };
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate_and_each_org_on_its_own() {
        let limits = OrgLimits::new(2.0, 3).unwrap();
        let (acme, globex) = (OrgId::new("acme").unwrap(), OrgId::new("globex").unwrap());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limits.take(&acme, t0), Ok(()));
        }
        assert_eq!(limits.take(&acme, t0), Err(Duration::from_millis(500)), "empty: one token every 0.5 s");
        assert_eq!(limits.take(&globex, t0), Ok(()), "another org has its own bucket");
        let t1 = t0 + Duration::from_millis(250);
        assert_eq!(limits.take(&acme, t1), Err(Duration::from_millis(250)), "half a token back");
        let t2 = t0 + Duration::from_millis(500);
        assert_eq!(limits.take(&acme, t2), Ok(()));
        assert!(limits.take(&acme, t2).is_err());
        let later = t2 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(limits.take(&acme, later), Ok(()), "refills up to the burst, no further");
        }
        assert!(limits.take(&acme, later).is_err());
        assert!(OrgLimits::new(0.0, 10).is_none(), "0 is off");
    }

    #[test]
    fn the_answer_is_a_429_with_whole_seconds_to_wait() {
        let limits = OrgLimits::new(0.4, 1).unwrap();
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
