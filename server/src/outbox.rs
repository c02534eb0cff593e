//! A peer's queue of frames to send, bounded twice: in frames and in
//! bytes.
//!
//! The frame bound alone let a peer that stops reading hold up to
//! `peer_queue` frames, and a frame may be a whole record of up to
//! `max_record_mib`: 1,024 of them is tens of GiB for one socket, filled by
//! asking for records it never reads. The byte bound counts what waits in
//! the queue; one frame is always taken while nothing waits, so a record
//! larger than the budget still reaches a peer that reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::{TryRecvError, TrySendError};

/// A new queue holding at most `frames` frames and, past its first frame,
/// `bytes` bytes.
pub fn outbox(frames: usize, bytes: usize) -> (Outbox, Drain) {
    let (tx, rx) = mpsc::channel(frames);
    let queued = Arc::new(AtomicUsize::new(0));
    (
        Outbox {
            tx,
            queued: Arc::clone(&queued),
            budget: bytes,
        },
        Drain { rx, queued },
    )
}

/// The sending side, one clone per document task that answers the peer.
#[derive(Clone, Debug)]
pub struct Outbox {
    tx: mpsc::Sender<Vec<u8>>,
    /// Bytes in frames queued and not yet taken by the writer.
    queued: Arc<AtomicUsize>,
    budget: usize,
}

/// Why a frame was not queued.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotQueued {
    #[error("the peer's queue is full")]
    Full,
    #[error("the peer's connection has closed")]
    Closed,
}

impl Outbox {
    /// Queues `frame` unless the queue is full, by count or by bytes.
    pub fn try_send(&self, frame: Vec<u8>) -> Result<(), NotQueued> {
        let len = frame.len();
        let before = self.queued.fetch_add(len, Ordering::AcqRel);
        if before > 0 && before.saturating_add(len) > self.budget {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            return Err(NotQueued::Full);
        }
        self.tx.try_send(frame).map_err(|e| {
            self.queued.fetch_sub(len, Ordering::AcqRel);
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
    rx: mpsc::Receiver<Vec<u8>>,
    queued: Arc<AtomicUsize>,
}

impl Drain {
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        let frame = self.rx.recv().await?;
        self.taken(&frame);
        Some(frame)
    }

    pub fn try_recv(&mut self) -> Result<Vec<u8>, TryRecvError> {
        let frame = self.rx.try_recv()?;
        self.taken(&frame);
        Ok(frame)
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

    #[test]
    fn bytes_past_the_budget_wait_until_the_writer_takes_some() {
        let (out, mut drain) = outbox(100, 1000);
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
        let (out, mut drain) = outbox(100, 1000);
        out.try_send(vec![0; 5000]).unwrap();
        assert_eq!(out.try_send(vec![0; 10]), Err(NotQueued::Full));
        assert_eq!(drain.try_recv().unwrap().len(), 5000);
        assert_eq!(out.bytes_queued(), 0);
        out.try_send(vec![0; 10]).unwrap();
    }

    #[test]
    fn the_frame_count_still_bounds_small_frames() {
        let (out, _drain) = outbox(2, 1 << 20);
        out.try_send(vec![1]).unwrap();
        out.try_send(vec![2]).unwrap();
        assert_eq!(out.try_send(vec![3]), Err(NotQueued::Full));
        assert_eq!(out.bytes_queued(), 2);
    }

    #[test]
    fn a_closed_queue_says_so_and_counts_nothing() {
        let (out, drain) = outbox(4, 1000);
        drop(drain);
        assert_eq!(out.try_send(vec![0; 10]), Err(NotQueued::Closed));
        assert_eq!(out.bytes_queued(), 0);
        assert!(out.is_closed());
    }
}
