//! `DocSync::relaying`: a server passing new changes on as they came to
//! the peers that were up to date, instead of asking Automerge for each.
//! Delegates' phones are plain Automerge replicas here, as the official
//! JavaScript client is. Whatever order messages cross in, however the
//! server batches them and whenever a phone reconnects, every phone ends
//! with every change, and none is lost or doubled.

#![allow(clippy::unwrap_used)] // a test panics to fail

mod common;

use std::collections::VecDeque;

use automerge::sync::{self, State, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, Automerge, ChangeHash, ReadDoc};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng};
use rand::RngExt;
use twinsync_shared::protocol::{DocSync, Incoming, Message};
use twinsync_shared::{DocumentId, PeerId};

const WORDS: &[&str] = &["محضر", "السمارة", "réunion", "élan", "Timbuktu", "توأمة"];

struct Phone {
    id: PeerId,
    doc: AutoCommit,
    state: State,
    /// Messages from the server, not yet read: a socket keeps their order.
    inbox: VecDeque<Vec<u8>>,
    /// Messages to the server, not yet read.
    outbox: VecDeque<Vec<u8>>,
    /// Every word it typed, each once.
    typed: Vec<String>,
    /// Changes the server relayed to it that it had made itself.
    echoed: usize,
}

struct Server {
    id: PeerId,
    doc: Automerge,
    sync: DocSync,
    /// Messages it sent, relayed or not.
    sent: u64,
}

fn minutes(doc: &AutoCommit) -> automerge::ObjId {
    doc.get(automerge::ROOT, "minutes").unwrap().unwrap().1
}

/// The minutes every phone starts from, and the server, each phone
/// connected and its first message on the way.
/// Actors are fixed by `seed`, and Automerge leaves timestamps at 0, so a
/// seed gives the same hashes, and a failing case the same run, each time.
fn club(phones: usize, seed: u64) -> (Server, Vec<Phone>) {
    let mut origin = common::meeting();
    let mut server = Server {
        id: PeerId::new("server"),
        doc: origin.document().clone(),
        sync: DocSync::new(DocumentId::random()).relaying(),
        sent: 0,
    };
    let mut phones: Vec<Phone> = (0..phones)
        .map(|i| Phone {
            id: PeerId::new(format!("phone-{i}")),
            doc: origin.fork().with_actor(ActorId::from(
                [&[i as u8 + 2][..], &seed.to_le_bytes()].concat(),
            )),
            state: State::new(),
            inbox: VecDeque::new(),
            outbox: VecDeque::new(),
            typed: Vec::new(),
            echoed: 0,
        })
        .collect();
    for phone in &mut phones {
        server.sync.add_peer(phone.id.clone(), State::new());
        speak(phone);
    }
    (server, phones)
}

/// Types a word somewhere in the minutes, as one change, and says so, as
/// the official client does after every change.
fn type_word(phone: &mut Phone, rng: &mut TestRng) {
    let m = minutes(&phone.doc);
    let at = rng.random_range(0..=phone.doc.length(&m));
    let word = format!(
        " {}-{}-{} ",
        WORDS[rng.random_range(0..WORDS.len())],
        phone.id,
        phone.typed.len()
    );
    phone.doc.splice_text(&m, at, 0, &word).unwrap();
    phone.doc.commit();
    phone.typed.push(word);
    speak(phone);
}

fn speak(phone: &mut Phone) {
    if let Some(m) = phone.doc.sync().generate_sync_message(&mut phone.state) {
        phone.outbox.push_back(m.encode());
    }
}

/// The phone reads its next message from the server and answers it.
fn read_one(phone: &mut Phone) {
    let Some(data) = phone.inbox.pop_front() else {
        return;
    };
    let message = sync::Message::decode(&data).unwrap();
    let actor = phone.doc.get_actor().clone();
    let own: Vec<ChangeHash> = phone
        .doc
        .get_changes(&[])
        .into_iter()
        .filter(|c| *c.actor_id() == actor)
        .map(|c| c.hash())
        .collect();
    // Only a relayed message says we hold exactly our heads; Automerge's
    // own may send a phone the whole record, its own changes included.
    if looks_relayed(&message) {
        phone.echoed += changes_in(&message)
            .iter()
            .filter(|h| own.contains(h))
            .count();
    }
    phone
        .doc
        .sync()
        .receive_sync_message(&mut phone.state, message)
        .unwrap();
    speak(phone);
}

/// A relayed message says we hold exactly our heads (Automerge's own can
/// too, when its shared heads are ours: then the checks are only stricter).
fn looks_relayed(message: &sync::Message) -> bool {
    message
        .have
        .first()
        .is_some_and(|h| h.last_sync == message.heads && h.bloom.to_bytes().is_empty())
}

/// The changes a message carries one a chunk, as relayed messages and
/// Automerge's version 1 messages do (not a whole saved document).
fn changes_in(message: &sync::Message) -> Vec<ChangeHash> {
    message
        .changes
        .iter()
        .filter_map(|chunk| automerge::Change::from_bytes(chunk.to_vec()).ok())
        .map(|c| c.hash())
        .collect()
}

/// The server takes up to `most` waiting messages, the oldest of each
/// socket first, as one batch when it can, then answers everyone.
fn serve(server: &mut Server, phones: &mut [Phone], most: usize, rng: &mut TestRng) {
    let mut taken: Vec<(PeerId, Vec<u8>)> = Vec::new();
    while taken.len() < most {
        let ready: Vec<usize> = (0..phones.len())
            .filter(|i| !phones[*i].outbox.is_empty())
            .collect();
        if ready.is_empty() {
            break;
        }
        let i = ready[rng.random_range(0..ready.len())];
        taken.push((phones[i].id.clone(), phones[i].outbox.pop_front().unwrap()));
    }
    let incoming: Vec<Incoming<'_>> = taken
        .iter()
        .map(|(from, data)| Incoming {
            from,
            data,
            is_request: false,
        })
        .collect();
    let batched = incoming.len() > 1
        && server
            .sync
            .receive_batch(&mut server.doc, &incoming, |_| true, |_, _, _| true)
            .is_some();
    if !batched {
        for (from, data) in &taken {
            server.sync.receive(&mut server.doc, from, data).unwrap();
        }
    }
    for msg in server.sync.generate(&server.doc, &server.id) {
        let Message::Sync {
            target_id, data, ..
        } = msg
        else {
            panic!("the server has the minutes: {msg:?}");
        };
        server.sent += 1;
        let phone = phones.iter_mut().find(|p| p.id == target_id).unwrap();
        phone.inbox.push_back(data);
    }
}

/// The phone's socket drops with messages on the way, and it connects
/// again: both sides keep what a stored sync state keeps, and the server
/// takes the phone up again as it does on a new connection.
fn reconnect(server: &mut Server, phone: &mut Phone) {
    phone.inbox.clear();
    phone.outbox.clear();
    let stored = server.sync.remove_peer(&phone.id).unwrap().encode();
    server
        .sync
        .add_peer(phone.id.clone(), State::decode(&stored).unwrap());
    phone.state = State::decode(&phone.state.encode()).unwrap();
    speak(phone);
}

fn run(seed: u64, phones: usize, rounds: usize) -> (Server, Vec<Phone>) {
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
    let (mut server, mut phones) = club(phones, seed);
    for _ in 0..rounds {
        for _ in 0..rng.random_range(0..=phones.len()) {
            let i = rng.random_range(0..phones.len());
            type_word(&mut phones[i], &mut rng);
        }
        if rng.random_range(0..12) == 0 {
            let i = rng.random_range(0..phones.len());
            reconnect(&mut server, &mut phones[i]);
        }
        let most = rng.random_range(1..=phones.len() + 2);
        serve(&mut server, &mut phones, most, &mut rng);
        for phone in &mut phones {
            for _ in 0..rng.random_range(0..=phone.inbox.len()) {
                read_one(phone);
            }
        }
    }
    settle(&mut server, &mut phones, &mut rng);
    (server, phones)
}

/// Everyone stays connected until nobody has anything to say.
fn settle(server: &mut Server, phones: &mut [Phone], rng: &mut TestRng) {
    for step in 0.. {
        assert!(step < 500, "the exchange never went quiet");
        if phones
            .iter()
            .all(|p| p.inbox.is_empty() && p.outbox.is_empty())
        {
            break;
        }
        let most = phones.len();
        serve(server, phones, most, rng);
        for phone in phones.iter_mut() {
            while !phone.inbox.is_empty() {
                read_one(phone);
            }
        }
    }
}

/// Every phone and the server hold every change made and the same
/// minutes, as long as every word typed, letter for letter.
fn check(server: &Server, phones: &mut [Phone]) {
    let heads = server.doc.get_heads();
    let text = {
        let (_, m) = server.doc.get(automerge::ROOT, "minutes").unwrap().unwrap();
        server.doc.text(&m).unwrap()
    };
    let typed: usize = phones
        .iter()
        .flat_map(|p| &p.typed)
        .map(|w| w.chars().count())
        .sum();
    assert_eq!(
        text.chars().count(),
        "Procès-verbal. ".chars().count() + typed
    );
    let made: Vec<ChangeHash> = phones
        .iter_mut()
        .flat_map(|p| {
            let actor = p.doc.get_actor().clone();
            p.doc
                .get_changes(&[])
                .into_iter()
                .filter(|c| *c.actor_id() == actor)
                .map(|c| c.hash())
                .collect::<Vec<_>>()
        })
        .collect();
    for hash in &made {
        assert!(
            server.doc.get_change_by_hash(hash).is_some(),
            "the server lacks {hash}"
        );
    }
    for phone in phones.iter_mut() {
        assert_eq!(phone.doc.get_heads(), heads, "{} differs", phone.id);
        let m = minutes(&phone.doc);
        assert_eq!(phone.doc.text(&m).unwrap(), text, "{}'s minutes", phone.id);
    }
}

proptest! {
    #![proptest_config(Config { cases: 64, ..Config::default() })]

    #[test]
    fn phones_converge_and_lose_nothing(seed in any::<u64>(), phones in 2usize..=8, rounds in 1usize..=40) {
        let (server, mut phones) = run(seed, phones, rounds);
        check(&server, &mut phones);
    }
}

#[test]
fn most_messages_are_relayed_and_no_phone_hears_its_own_changes() {
    let (server, mut phones) = run(7, 8, 60);
    check(&server, &mut phones);
    let typed: usize = phones.iter().map(|p| p.typed.len()).sum();
    assert!(typed > 100, "only {typed} words typed");
    assert!(
        server.sync.relayed() * 2 > server.sent,
        "{} of {} messages relayed",
        server.sync.relayed(),
        server.sent
    );
    for phone in &phones {
        assert_eq!(phone.echoed, 0, "{} heard its own changes", phone.id);
    }
}

#[test]
fn a_phone_asking_for_a_change_is_answered_while_others_type() {
    let mut rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[5; 32]);
    let (mut server, mut phones) = club(3, 1);
    settle(&mut server, &mut phones, &mut rng);
    type_word(&mut phones[0], &mut rng);
    settle(&mut server, &mut phones, &mut rng);
    let relayed = server.sync.relayed();
    assert!(relayed > 0, "nothing relayed: the test would prove nothing");
    // Phone 2 asks again for phone 0's change, as after a Bloom filter
    // false positive, in the batch where phone 1's next change arrives.
    let wanted = phones[0].doc.get_last_local_change().unwrap().hash();
    let mut state = State::decode(&phones[2].state.encode()).unwrap();
    let mut ask = phones[2]
        .doc
        .sync()
        .generate_sync_message(&mut state)
        .unwrap();
    ask.need = vec![wanted];
    type_word(&mut phones[1], &mut rng);
    phones[2].outbox.push_back(ask.encode());
    serve(&mut server, &mut phones, 2, &mut rng);
    let answer = sync::Message::decode(phones[2].inbox.back().unwrap()).unwrap();
    // What the answer brings to the minutes as they first were.
    let mut first = Automerge::new();
    first
        .apply_changes(server.doc.get_changes(&[]).into_iter().take(1))
        .unwrap();
    first
        .load_incremental(&answer.changes.iter().collect::<Vec<_>>().concat())
        .unwrap();
    assert!(
        first.get_change_by_hash(&wanted).is_some(),
        "asked for {wanted}, not sent"
    );
    // Phone 0 was up to date, and had phone 1's change relayed.
    assert!(server.sync.relayed() > relayed);
    let typed = phones[1].doc.get_last_local_change().unwrap().hash();
    let to_first = sync::Message::decode(phones[0].inbox.back().unwrap()).unwrap();
    assert!(looks_relayed(&to_first), "phone 0 was not relayed to");
    assert_eq!(changes_in(&to_first), vec![typed]);
}

/// A Bloom filter false positive: a phone's filter wrongly claims a change
/// the server holds, which Automerge then does not send it; a change made
/// on top of it is relayed to the phone, which cannot apply it and asks
/// again from nothing (Automerge's reset). It must get the missing change,
/// not the whole record.
#[test]
fn a_phone_that_missed_a_change_gets_it_alone() {
    let mut rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[9; 32]);
    let (mut server, mut phones) = club(3, 1);
    // A record of some size, which every phone holds.
    for round in 0..30 {
        type_word(&mut phones[round % 3], &mut rng);
        settle(&mut server, &mut phones, &mut rng);
    }
    // Phone 1's next change arrives together with a message from phone 2
    // whose filter claims it (a summary from nothing, as a fresh phone's).
    type_word(&mut phones[1], &mut rng);
    let missed = phones[1].doc.get_last_local_change().unwrap().hash();
    let mut state = State::decode(&phones[2].state.encode()).unwrap();
    let mut claim = phones[2]
        .doc
        .sync()
        .generate_sync_message(&mut state)
        .unwrap();
    let mut held: Vec<ChangeHash> = phones[2]
        .doc
        .get_changes(&[])
        .iter()
        .map(|c| c.hash())
        .collect();
    held.push(missed);
    claim.have = vec![sync::Have {
        last_sync: Vec::new(),
        bloom: sync::BloomFilter::from_hashes(held.iter()),
    }];
    phones[2].outbox.push_back(claim.encode());
    serve(&mut server, &mut phones, 2, &mut rng);
    let told = sync::Message::decode(phones[2].inbox.back().unwrap()).unwrap();
    assert!(
        !changes_in(&told).contains(&missed),
        "the false positive did not happen"
    );
    // Phone 0 types on top of the missed change, which is relayed to
    // phone 2; count what the server then sends phone 2.
    while !phones[0].inbox.is_empty() {
        read_one(&mut phones[0]);
    }
    type_word(&mut phones[0], &mut rng);
    let whole = server.doc.save().len();
    // Phone 2 reads the relayed change it cannot apply, and types before
    // its reset is answered: its next reset names a head we lack.
    let waiting = bytes_to(&phones[2]);
    serve(&mut server, &mut phones, 3, &mut rng);
    let mut to_2 = bytes_to(&phones[2]) - waiting;
    while !phones[2].inbox.is_empty() {
        read_one(&mut phones[2]);
    }
    type_word(&mut phones[2], &mut rng);
    for _ in 0..20 {
        let waiting = bytes_to(&phones[2]);
        serve(&mut server, &mut phones, 3, &mut rng);
        to_2 += bytes_to(&phones[2]) - waiting;
        for phone in &mut phones {
            while !phone.inbox.is_empty() {
                read_one(phone);
            }
        }
    }
    check(&server, &mut phones);
    assert!(
        to_2 < whole,
        "{to_2} bytes sent to phone 2 to mend one change; the whole record is {whole}"
    );
}

/// Bytes waiting for `phone` from the server.
fn bytes_to(phone: &Phone) -> usize {
    phone.inbox.iter().map(Vec::len).sum()
}

/// A burst of changes is relayed while it is under a third of the record,
/// and the record's size is kept from burst to burst (Automerge counts its
/// changes only by listing them all): a count left where the last burst
/// found it would send the second burst Automerge's way.
#[test]
fn bursts_under_a_third_of_the_record_are_relayed_as_it_grows() {
    let mut rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[3; 32]);
    let (mut server, mut phones) = club(2, 1);
    for _ in 0..40 {
        type_word(&mut phones[0], &mut rng);
        settle(&mut server, &mut phones, &mut rng);
    }
    let held = server.doc.get_changes(&[]).len();
    // 17 changes of 58, then 20 of 78: over a third of the first count.
    for burst in [17, 20] {
        assert!(burst * 3 > held, "the second burst would prove nothing");
        for _ in 0..burst {
            type_word(&mut phones[0], &mut rng);
        }
        let relayed = server.sync.relayed();
        serve(&mut server, &mut phones, burst, &mut rng);
        let total = server.doc.get_changes(&[]).len();
        assert!(burst * 3 <= total);
        let to_other = sync::Message::decode(phones[1].inbox.back().unwrap()).unwrap();
        assert!(
            looks_relayed(&to_other),
            "a burst of {burst} changes to a record of {total} was not relayed"
        );
        assert_eq!(changes_in(&to_other).len(), burst);
        assert!(server.sync.relayed() > relayed);
        settle(&mut server, &mut phones, &mut rng);
    }
    check(&server, &mut phones);
}
