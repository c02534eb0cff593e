//! The wire decoder on arbitrary frames: it must never panic, and what it
//! accepts must survive encoding and decoding again.

#![no_main]

use libfuzzer_sys::fuzz_target;
use twinsync_shared::protocol::{FrameLimit, Message};

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = Message::decode(data, FrameLimit::default()) else {
        return;
    };
    let frame = msg.encode();
    let again = Message::decode(&frame, FrameLimit::default())
        .unwrap_or_else(|e| panic!("our own encoding of {msg:?} does not decode: {e}"));
    // A NaN timestamp in `remote-heads-changed` is never equal to itself,
    // so compare the re-encoded bytes, which holds for NaN too.
    assert_eq!(again.encode(), frame, "re-encoding changed {msg:?}");
    if !has_nan(&msg) {
        assert_eq!(again, msg);
    }
});

fn has_nan(msg: &Message) -> bool {
    match msg {
        Message::RemoteHeadsChanged { new_heads, .. } => {
            new_heads.values().any(|h| h.timestamp.is_nan())
        }
        _ => false,
    }
}
