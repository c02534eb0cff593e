//! Stored bytes, as the server's store and the client's IndexedDB hold
//! them: checking, loading and reading must never panic, whatever loads.

#![no_main]

use automerge::Automerge;
use libfuzzer_sys::fuzz_target;
use twinsync_fuzz::split_u32;
use twinsync_shared::record::{
    RecordDoc, check_chunk, load_chunks, load_document, read_document, summarise,
};

fuzz_target!(|data: &[u8]| {
    let chunks = split_u32(data);
    for chunk in &chunks {
        let _ = check_chunk(chunk);
        if let Ok(doc) = RecordDoc::load(chunk) {
            // What the API serves from a record that loaded.
            let _ = doc.record();
            let _ = doc.conflicts();
            let _ = doc.history();
        }
        // `load` stops at the first validation error; reading a document
        // that loads but is no record covers the rest of the reader.
        if let Ok(doc) = load_document(chunk) {
            read(&doc);
        }
    }
    let owned: Vec<Vec<u8>> = chunks.iter().map(|c| c.to_vec()).collect();
    if let Ok(doc) = load_chunks(&owned) {
        read(&doc);
    }
});

fn read(doc: &Automerge) {
    let _ = read_document(doc);
    let _ = summarise(doc);
}
