//! Gives the memory of evicted documents back to the system.
//!
//! glibc's allocator hands freed pages back only from the top of each
//! arena; pages freed below a live allocation stay resident. A burst of
//! loaded records therefore left the server at its peak for good: in the
//! S3 benchmark (500 peers open 40 of 20,000 records, then leave), every
//! document was evicted and RSS stayed at 958 MiB, until `malloc_trim(0)`
//! brought it to 51 MiB. So after documents are evicted or peers leave,
//! the server asks glibc to trim, at most once per interval.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::hub::Hub;

/// Whether memory was freed in bulk since the last trim.
#[derive(Debug, Default)]
pub struct Trim {
    pending: AtomicBool,
}

impl Trim {
    /// Notes that a document was evicted or a peer left.
    pub fn freed(&self) {
        self.pending.store(true, Ordering::Relaxed);
    }

    fn take(&self) -> bool {
        self.pending.swap(false, Ordering::Relaxed)
    }
}

/// Every `every`, trims if anything was freed since the last look. The
/// trim walks every arena (tens of milliseconds on a large heap), so it
/// runs on a blocking thread.
pub async fn keep_trimming(hub: Arc<Hub>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !hub.trim.take() {
            continue;
        }
        let started = Instant::now();
        let released = tokio::task::spawn_blocking(release).await.unwrap_or(false);
        hub.metrics.memory_trims.inc();
        tracing::debug!(
            released,
            ms = started.elapsed().as_millis() as u64,
            "gave freed memory back to the system"
        );
    }
}

/// Asks the allocator to return every free page it holds; whether it
/// returned any. Elsewhere than glibc it does nothing: musl's and other
/// systems' allocators give memory back by themselves.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[expect(unsafe_code, reason = "malloc_trim is a C function")]
pub fn release() -> bool {
    // SAFETY: malloc_trim takes no pointer and glibc serialises it with
    // every other allocator call; 0 asks to keep no spare memory.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release() -> bool {
    false
}
