//! A peer's queue of frames to send, bounded twice: in frames and in
//! bytes.
//!
//! The frame bound alone let a peer that stops reading hold up to
//! `peer_queue` frames, and a frame may be a whole record of up to
//! `max_record_mib`: 1,024 of them is tens of GiB for one socket, filled by
//! asking for records it never reads. The byte bound counts what waits in
//! the queue; one frame is always taken while nothing waits, so a record
//! larger than the budget still reaches a peer that reads.
//!
//! A device may hold many sockets (`max_peers_per_device`), so the bytes
//! are also counted over all of a device's queues together
//! ([`DeviceShare`]), from when a frame is queued until the writer has
//! sent it (a [`Charge`] travels with each frame): 64 sockets that ask for
//! large records and never read would otherwise pin 64 budgets, several
//! GiB, until each times out.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::{TryRecvError, TrySendError};

/// A new queue holding at most `frames` frames and, past its first frame,
/// `bytes` bytes, and no more than its device's `share` allows beside the
/// device's other queues.
pub fn outbox(frames: usize, bytes: usize, share: DeviceShare) -> (Outbox, Drain) {
    let (tx, rx) = mpsc::channel(frames);
    let queued = Arc::new(AtomicUsize::new(0));
    (
        Outbox {
            tx,
            queued: Arc::clone(&queued),
            budget: bytes,
            device: share.clone(),
        },
        Drain {
            rx,
            queued,
            _device: share,
        },
    )
}

/// The bytes waiting in all of one device's queues, and the most they may
/// hold: one frame is always taken while none of them holds anything.
#[derive(Clone, Debug)]
pub struct DeviceShare {
    queued: Arc<AtomicUsize>,
    budget: usize,
}

impl DeviceShare {
    pub fn new(budget: usize) -> Self {
        Self {
            queued: Arc::new(AtomicUsize::new(0)),
            budget,
        }
    }

    /// Bytes waiting in the device's queues.
    pub fn bytes_queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// Whether another queue still counts against this share.
    pub fn in_use(&self) -> bool {
        Arc::strong_count(&self.queued) > 1
    }
}

/// A frame's bytes counted against its device: given back when dropped,
/// once the writer has sent the frame, or with the frame wherever it is
/// dropped unsent (a queue refused it, or closed with it inside).
#[derive(Debug)]
pub struct Charge {
    len: usize,
    device: Arc<AtomicUsize>,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.device.fetch_sub(self.len, Ordering::AcqRel);
    }
}

/// The sending side, one clone per document task that answers the peer.
#[derive(Clone, Debug)]
pub struct Outbox {
    tx: mpsc::Sender<(Vec<u8>, Charge)>,
    /// Bytes in frames queued and not yet taken by the writer.
    queued: Arc<AtomicUsize>,
    budget: usize,
    device: DeviceShare,
}

/// Why a frame was not queued.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotQueued {
    #[error("the peer's queue is full")]
    Full,
    #[error("the queues of the peer's device hold as much as it may")]
    DeviceFull,
    #[error("the peer's connection has closed")]
    Closed,
}

impl Outbox {
    /// Queues `frame` unless the queue is full, by count or by bytes.
    pub fn try_send(&self, frame: Vec<u8>) -> Result<(), NotQueued> {
        let len = frame.len();
        let over = |before: usize, budget: usize| before > 0 && before.saturating_add(len) > budget;
        // Each count taken only if the frame fits it: a frame refused is
        // never seen counted, by this queue's other senders nor by the
        // device's other queues.
        let fits_here = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (!over(queued, self.budget)).then(|| queued.saturating_add(len))
            });
        if fits_here.is_err() {
            return Err(NotQueued::Full);
        }
        let undo = || self.queued.fetch_sub(len, Ordering::AcqRel);
        let fits = self
            .device
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |device| {
                (!over(device, self.device.budget)).then(|| device.saturating_add(len))
            });
        if fits.is_err() {
            undo();
            return Err(NotQueued::DeviceFull);
        }
        let charge = Charge {
            len,
            device: Arc::clone(&self.device.queued),
        };
        // A frame not queued drops its charge with it.
        self.tx.try_send((frame, charge)).map_err(|e| {
            undo();
            match e {
                TrySendError::Full(_) => NotQueued::Full,
                TrySendError::Closed(_) => NotQueued::Closed,
            }
        })
    }

    /// Frames waiting.
    pub fn frames_queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// The most frames the queue holds.
    pub fn max_frames(&self) -> usize {
        self.tx.max_capacity()
    }

    /// Bytes waiting.
    pub fn bytes_queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// The receiving side: the connection's writer.
#[derive(Debug)]
pub struct Drain {
    rx: mpsc::Receiver<(Vec<u8>, Charge)>,
    queued: Arc<AtomicUsize>,
    /// Kept so that the device's share is in use while the writer is.
    _device: DeviceShare,
}

impl Drain {
    /// The next frame, and its charge against the device: the writer drops
    /// that once the frame is sent (or given up on).
    pub async fn next_to_send(&mut self) -> Option<(Vec<u8>, Charge)> {
        let (frame, charge) = self.rx.recv().await?;
        self.taken(&frame);
        Some((frame, charge))
    }

    /// As [`Self::next_to_send`], if a frame is waiting.
    pub fn try_next_to_send(&mut self) -> Result<(Vec<u8>, Charge), TryRecvError> {
        let (frame, charge) = self.rx.try_recv()?;
        self.taken(&frame);
        Ok((frame, charge))
    }

    /// The next frame, no longer counted against the device.
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        self.next_to_send().await.map(|(frame, _)| frame)
    }

    /// As [`Self::recv`], if a frame is waiting.
    pub fn try_recv(&mut self) -> Result<Vec<u8>, TryRecvError> {
        self.try_next_to_send().map(|(frame, _)| frame)
    }

    /// Frames waiting.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    fn taken(&self, frame: &[u8]) {
        self.queued.fetch_sub(frame.len(), Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A device of one queue, bounded by the queue's own budget alone.
    fn unshared() -> DeviceShare {
        DeviceShare::new(usize::MAX)
    }

    #[test]
    fn a_devices_queues_together_hold_at_most_its_share() {
        let device = DeviceShare::new(1000);
        let (a, mut a_drain) = outbox(100, 800, device.clone());
        let (b, b_drain) = outbox(100, 800, device.clone());
        a.try_send(vec![0; 700]).unwrap();
        b.try_send(vec![0; 300]).unwrap();
        assert_eq!(device.bytes_queued(), 1000);
        // Each queue is under its own budget; together they are full.
        assert_eq!(b.try_send(vec![0; 1]), Err(NotQueued::DeviceFull));
        assert_eq!(
            device.bytes_queued(),
            1000,
            "a refused frame is not counted"
        );
        assert_eq!(a.bytes_queued(), 700);
        // What one queue's writer has sent makes room for the other; a
        // frame taken and still being written counts.
        let (frame, charge) = a_drain.try_next_to_send().unwrap();
        assert_eq!(frame.len(), 700);
        assert_eq!(a.bytes_queued(), 0);
        assert_eq!(device.bytes_queued(), 1000, "being written");
        drop(charge);
        assert_eq!(device.bytes_queued(), 300);
        b.try_send(vec![0; 400]).unwrap();
        // A queue dropped with frames unsent gives their bytes back.
        drop(b_drain);
        assert_eq!(device.bytes_queued(), 0);
        assert_eq!(b.try_send(vec![0; 1]), Err(NotQueued::Closed));
        assert_eq!(device.bytes_queued(), 0);
        // With nothing waiting on the device, one frame past it still goes.
        a.try_send(vec![0; 5000]).unwrap();
        assert_eq!(a.try_send(vec![0; 1]), Err(NotQueued::Full));
    }

    #[test]
    fn bytes_past_the_budget_wait_until_the_writer_takes_some() {
        let (out, mut drain) = outbox(100, 1000, unshared());
        out.try_send(vec![0; 600]).unwrap();
        out.try_send(vec![0; 400]).unwrap();
        assert_eq!(out.bytes_queued(), 1000);
        assert_eq!(out.try_send(vec![0; 1]), Err(NotQueued::Full));
        assert_eq!(out.bytes_queued(), 1000, "a refused frame is not counted");
        assert_eq!(drain.try_recv().unwrap().len(), 600);
        assert_eq!(out.bytes_queued(), 400);
        out.try_send(vec![0; 600]).unwrap();
        assert_eq!(out.frames_queued(), 2);
    }

    #[test]
    fn one_frame_larger_than_the_budget_goes_when_nothing_waits() {
        let (out, mut drain) = outbox(100, 1000, unshared());
        out.try_send(vec![0; 5000]).unwrap();
        assert_eq!(out.try_send(vec![0; 10]), Err(NotQueued::Full));
        assert_eq!(drain.try_recv().unwrap().len(), 5000);
        assert_eq!(out.bytes_queued(), 0);
        out.try_send(vec![0; 10]).unwrap();
    }

    #[test]
    fn the_frame_count_still_bounds_small_frames() {
        let (out, _drain) = outbox(2, 1 << 20, unshared());
        out.try_send(vec![1]).unwrap();
        out.try_send(vec![2]).unwrap();
        assert_eq!(out.try_send(vec![3]), Err(NotQueued::Full));
        assert_eq!(out.bytes_queued(), 2);
    }

    #[test]
    fn a_closed_queue_says_so_and_counts_nothing() {
        let (out, drain) = outbox(4, 1000, unshared());
        drop(drain);
        assert_eq!(out.try_send(vec![0; 10]), Err(NotQueued::Closed));
        assert_eq!(out.bytes_queued(), 0);
        assert!(out.is_closed());
    }
}
