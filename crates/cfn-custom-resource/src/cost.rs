//! What an invocation cost in AWS requests: how many went out through [`crate::https_client`]
//! and how long at least one of them was in flight. The guard logs both with every response
//! (`aws_calls`, `aws_us` on "response delivered"), beside the handler's whole time, so a reader
//! of the logs (or `make bench`) can tell waiting on AWS from our own code.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// Requests sent since the process started, retries included.
static CALLS: AtomicU64 = AtomicU64::new(0);

static WAITING: Mutex<Waiting> = Mutex::new(Waiting {
    in_flight: 0,
    since: None,
    total_us: 0,
});

/// (requests sent, microseconds during which at least one was in flight) since the process
/// started; the guard logs the difference an invocation made, a benchmark may read it around its
/// own calls.
pub fn aws_calls() -> (u64, u64) {
    (CALLS.load(Ordering::Relaxed), lock().total_us)
}

fn lock() -> MutexGuard<'static, Waiting> {
    WAITING.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The union of the requests' in-flight intervals: concurrent requests count once, so the total
/// never exceeds the wall time it covers.
struct Waiting {
    in_flight: u32,
    since: Option<Instant>,
    total_us: u64,
}

impl Waiting {
    fn start(&mut self, now: Instant) {
        if self.in_flight == 0 {
            self.since = Some(now);
        }
        self.in_flight += 1;
    }

    fn end(&mut self, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if self.in_flight == 0
            && let Some(since) = self.since.take()
        {
            self.total_us += now.saturating_duration_since(since).as_micros() as u64;
        }
    }
}

/// One request in flight, from its first poll until it is answered or dropped (a timeout).
#[cfg_attr(not(feature = "aws"), allow(dead_code))]
pub(crate) struct InFlight(());

#[cfg_attr(not(feature = "aws"), allow(dead_code))]
impl InFlight {
    pub(crate) fn start() -> Self {
        CALLS.fetch_add(1, Ordering::Relaxed);
        lock().start(Instant::now());
        Self(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        lock().end(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn overlapping_requests_count_once_and_gaps_not_at_all() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut waiting = Waiting {
            in_flight: 0,
            since: None,
            total_us: 0,
        };
        // Two requests together 0–10 and 5–12 ms (a join), then one 20–23 ms after a gap.
        waiting.start(at(0));
        waiting.start(at(5));
        waiting.end(at(10));
        assert_eq!(waiting.total_us, 0, "still one in flight");
        waiting.end(at(12));
        waiting.start(at(20));
        waiting.end(at(23));
        assert_eq!(waiting.total_us, 15_000);
        // An end without a start (cannot happen; must not underflow or count).
        waiting.end(at(30));
        assert_eq!((waiting.in_flight, waiting.total_us), (0, 15_000));
    }
}
