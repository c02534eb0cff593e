//! The browser client's replica, driven over a real WebSocket against the
//! real server: what `client-wasm` does in a browser, minus IndexedDB,
//! whose stand-in here is the list of chunks the replica asked to store.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};
use twinsync_client::replica::{ClientError, Outcome, Replica};
use twinsync_server::auth::Role;
use twinsync_shared::protocol::{RATE_LIMITED, Refusal};
use twinsync_shared::record::{Commit, Edit, Kind};
use twinsync_shared::{DocumentId, PeerId, StorageId};
use twinsync_tests::{TestApp, spawn_app, spawn_app_with};

const LIMIT: Duration = Duration::from_secs(10);

/// A phone: a replica, what it stored, and a socket when online.
struct Device {
    name: String,
    replica: Replica,
    stored: HashMap<DocumentId, Vec<Vec<u8>>>,
    states: HashMap<DocumentId, Vec<u8>>,
    ws: Option<WebSocketStream<MaybeTlsStream<TcpStream>>>,
    /// The server's `error`s, each with its refusal if it has one.
    errors: Vec<(String, Option<Refusal>)>,
    /// The device's token; the app's coordinator when `None`.
    token: Option<String>,
    /// When to send again the records the server did not take yet, as the
    /// browser's timer does.
    retry_at: Option<Instant>,
}

impl Device {
    fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            replica: Replica::new(PeerId::new(name), StorageId::new(format!("storage-{name}"))),
            stored: HashMap::new(),
            states: HashMap::new(),
            ws: None,
            errors: Vec::new(),
            token: None,
            retry_at: None,
        }
    }

    /// A device of the club whose record is `club`, not yet online.
    fn in_club(name: &str, club: DocumentId) -> Self {
        let mut device = Self::new(name);
        device.replica.set_club(club);
        device
    }

    fn keep(&mut self, out: Outcome) {
        for chunk in out.chunks {
            self.stored.entry(chunk.doc).or_default().push(chunk.bytes);
        }
        self.states.extend(out.sync_states);
        self.errors.extend(out.errors);
        // The soonest due, as in the browser.
        if let Some(secs) = out.retry_after {
            let at = Instant::now() + Duration::from_secs(secs);
            self.retry_at = Some(self.retry_at.map_or(at, |t| t.min(at)));
        }
    }

    /// A page reload: a new replica from what was stored.
    fn reload(&mut self) {
        self.ws = None;
        let club = self.replica.club();
        self.replica = Replica::new(
            PeerId::new(format!("{}-again", self.name)),
            StorageId::new(format!("storage-{}", self.name)),
        );
        for (id, chunks) in &self.stored {
            self.replica
                .restore(*id, chunks, self.states.get(id).cloned())
                .unwrap();
        }
        if let Some(club) = club {
            self.replica.set_club(club);
        }
    }

    async fn online(&mut self, app: &TestApp) {
        let token = self.token.as_deref().unwrap_or(&app.token);
        let url = format!("ws://{}/sync?token={token}", app.addr);
        let (mut ws, _) = connect_async(url).await.unwrap();
        ws.send(WsMessage::Binary(self.replica.join().encode().into()))
            .await
            .unwrap();
        self.ws = Some(ws);
    }

    async fn offline(&mut self) {
        if let Some(mut ws) = self.ws.take() {
            let _ = ws.close(None).await;
        }
        let states = self.replica.disconnected();
        self.states.extend(states);
    }

    /// Creates a record on the phone, online or not, and keeps what it stored.
    fn create(&mut self, kind: Kind, fields: serde_json::Value) -> DocumentId {
        let (id, out) = self
            .replica
            .create(
                kind,
                &fields,
                &Commit::new(format!("new {kind}"), 1_790_000_000),
            )
            .unwrap();
        self.keep(out);
        id
    }

    fn edit(&mut self, id: DocumentId, edits: Vec<Edit>) {
        let out = self
            .replica
            .edit(id, edits, &Commit::new("edit", 1_790_000_000))
            .unwrap();
        self.keep(out);
    }

    /// Exchanges frames until `done` holds; panics after `LIMIT`.
    async fn sync_until(&mut self, mut done: impl FnMut(&Replica) -> bool) {
        let deadline = Instant::now() + LIMIT;
        loop {
            if done(&self.replica) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not get there: unconfirmed {:?}, {} syncing, errors {:?}",
                self.name,
                self.replica.unconfirmed_by_record(),
                self.replica.syncing(),
                self.errors
            );
            self.exchange().await;
        }
    }

    /// Exchanges frames until the server sends an `error`; panics after
    /// `LIMIT`.
    async fn sync_until_told(&mut self) {
        let deadline = Instant::now() + LIMIT;
        while self.errors.is_empty() {
            assert!(Instant::now() < deadline, "{} was told nothing", self.name);
            self.exchange().await;
        }
    }

    /// Sends what the replica has to send and takes in at most one frame.
    async fn exchange(&mut self) {
        if self.retry_at.is_some_and(|at| at <= Instant::now()) {
            self.retry_at = self
                .replica
                .retry_deferred(unix_now())
                .map(|secs| Instant::now() + Duration::from_secs(secs));
        }
        let ws = self.ws.as_mut().expect("online");
        for frame in self.replica.outgoing() {
            ws.send(WsMessage::Binary(frame.into())).await.unwrap();
        }
        if let Ok(Some(Ok(WsMessage::Binary(bytes)))) =
            tokio::time::timeout(Duration::from_millis(100), ws.next()).await
        {
            let out = self.replica.receive(&bytes, unix_now()).unwrap();
            self.keep(out);
        }
    }

    fn text(&self, id: DocumentId, field: &str) -> String {
        self.replica.read(id).unwrap()["record"][field]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// Seconds since the epoch, the clock the replica's deferrals are due by.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

async fn club_of(app: &twinsync_tests::TestApp) -> DocumentId {
    app.first("club").await
}

/// A fresh phone of the club, online until it holds every record the API
/// lists, each of them valid.
async fn phone_with_every_record(app: &TestApp) -> Device {
    let total = app.get_json("/api/records").await.as_array().unwrap().len();
    let mut phone = Device::in_club("phone", club_of(app).await);
    phone.online(app).await;
    phone
        .sync_until(|r| r.list().len() == total && r.syncing() == 0)
        .await;
    assert!(
        phone
            .replica
            .list()
            .iter()
            .all(|s| s["valid"] == json!(true))
    );
    phone
}

#[tokio::test]
async fn a_fresh_device_keeps_every_record_the_club_index_lists() {
    let app = spawn_app().await;
    let phone = phone_with_every_record(&app).await;
    let kinds: Vec<String> = phone
        .replica
        .list()
        .iter()
        .map(|s| s["kind"].as_str().unwrap().to_owned())
        .collect();
    assert!(kinds.iter().any(|k| k == "meeting"), "{kinds:?}");
}

/// A club with more records than the server opens for one device in a
/// minute: those it turns away are asked for again when it says, on the
/// same socket, until the phone holds them all.
#[tokio::test]
async fn records_the_server_did_not_take_yet_are_asked_for_again_when_it_says() {
    let app = spawn_app_with(|s| {
        s.device_docs_per_minute = 20;
        // The window a minute would be; a test cannot wait one out.
        s.rate_window_secs = 2;
    })
    .await;
    let total = app.get_json("/api/records").await.as_array().unwrap().len();
    assert!(total > 20, "the demo club has only {total} records");
    let phone = phone_with_every_record(&app).await;
    let limited: Vec<&Refusal> = phone
        .errors
        .iter()
        .filter_map(|(_, r)| r.as_ref())
        .filter(|r| r.code == RATE_LIMITED)
        .collect();
    assert!(!limited.is_empty(), "no record was turned away");
    // The rest of the window, in whole seconds rounded up.
    assert!(
        limited
            .iter()
            .all(|r| r.retry_after.is_some_and(|s| (1..=2).contains(&s))),
        "{limited:?}"
    );
    assert_eq!(phone.replica.deferred(), 0);
}

#[tokio::test]
async fn offline_edits_of_two_phones_merge_through_the_server_and_survive_a_reload() {
    let app = spawn_app().await;
    let club = club_of(&app).await;
    let meeting = app.first("meeting").await;
    let mut a = Device::new("a");
    let mut b = Device::new("b");
    for d in [&mut a, &mut b] {
        d.replica.set_club(club);
        d.online(&app).await;
        d.sync_until(|r| r.read(meeting).is_ok() && r.syncing() == 0)
            .await;
        d.offline().await;
    }
    let before = a.text(meeting, "minutes");
    let len16 = before.encode_utf16().count();
    a.edit(
        meeting,
        vec![Edit::SpliceText {
            path: "/minutes".into(),
            index: len16,
            delete: 0,
            insert: " [أ: تمت الموافقة]".into(),
        }],
    );
    b.edit(
        meeting,
        vec![Edit::SpliceText {
            path: "/minutes".into(),
            index: 0,
            delete: 0,
            insert: "[B: approuvé] ".into(),
        }],
    );
    assert!(a.replica.unconfirmed() > 0);

    // A reloads while offline: its edit is in what it stored.
    a.reload();
    assert!(a.text(meeting, "minutes").ends_with("[أ: تمت الموافقة]"));

    for d in [&mut a, &mut b] {
        d.online(&app).await;
    }
    let done = |r: &Replica| {
        r.read(meeting).is_ok_and(|m| {
            let t = m["record"]["minutes"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            t.starts_with("[B: approuvé] ") && t.ends_with(" [أ: تمت الموافقة]")
        }) && r.unconfirmed() == 0
    };
    for _ in 0..3 {
        a.sync_until(|r| r.syncing() == 0 || done(r)).await;
        b.sync_until(|r| r.syncing() == 0 || done(r)).await;
    }
    a.sync_until(done).await;
    b.sync_until(done).await;
    assert_eq!(a.text(meeting, "minutes"), b.text(meeting, "minutes"));
    assert!(a.errors.is_empty() && b.errors.is_empty());
}

/// A delegate writes minutes offline while a coordinator adopts them: the
/// server refuses the delegate's change, and the replica reports what the
/// app needs to say so in the person's language, beside the server's
/// English. The change stays on the phone.
#[tokio::test]
async fn minutes_adopted_while_a_delegate_wrote_offline_are_refused_with_a_reason_the_app_translates()
 {
    let app = spawn_app().await;
    let club = club_of(&app).await;
    let meeting = app.first("meeting").await;
    let record = &app.get_json(&format!("/api/records/{meeting}")).await["record"];
    let attendee = record["attendees"]
        .as_array()
        .and_then(|a| a.first())
        .and_then(|p| p.as_str())
        .expect("the demo meeting has attendees")
        .to_owned();
    let adopted = |r: &Replica, yes: bool| {
        r.read(meeting)
            .is_ok_and(|m| m["record"]["adopted"] == json!(yes))
    };
    // The demo's minutes are adopted: a coordinator opens them again.
    let mut desk = Device::in_club("coordinator", club);
    desk.online(&app).await;
    desk.sync_until(|r| r.read(meeting).is_ok()).await;
    let set_adopted = |yes: bool| {
        vec![Edit::Set {
            path: "/adopted".into(),
            value: json!(yes),
        }]
    };
    desk.edit(meeting, set_adopted(false));
    desk.sync_until(|r| r.unconfirmed() == 0).await;
    let mut phone = Device::in_club("delegate", club);
    phone.token = Some(app.device(Role::Delegate, &[], Some(&attendee)));
    phone.online(&app).await;
    phone
        .sync_until(|r| adopted(r, false) && r.syncing() == 0)
        .await;
    phone.offline().await;
    phone.edit(
        meeting,
        vec![Edit::SpliceText {
            path: "/minutes".into(),
            index: 0,
            delete: 0,
            insert: "ملاحظة: ".into(),
        }],
    );
    desk.edit(meeting, set_adopted(true));
    desk.sync_until(|r| r.unconfirmed() == 0).await;

    phone.online(&app).await;
    phone.sync_until_told().await;
    let held = app.get_json("/api/quarantine").await;
    let held = held.as_array().unwrap();
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["code"], "adopted", "{held:?}");
    let [(message, refusal)] = &phone.errors[..] else {
        panic!("{:?}", phone.errors);
    };
    assert!(message.contains("the minutes were adopted"), "{message}");
    assert_eq!(
        refusal.as_ref(),
        Some(&Refusal {
            document_id: meeting,
            code: "adopted".into(),
            path: "/minutes".into(),
            quarantine: held[0]["id"].as_u64(),
            discarded: false,
            retry_after: None,
        })
    );
    // The coordinator judging it sees what it would change: the words the
    // delegate added to the minutes.
    let id = held[0]["id"].as_i64().unwrap();
    let shown = app.get_json(&format!("/api/quarantine/{id}")).await;
    let changes = shown["changes"].as_array().expect("changes shown");
    assert_eq!(changes.len(), 1, "{shown}");
    assert_eq!(changes[0]["path"], "/minutes");
    let added: Vec<&str> = changes[0]["text"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "added")
        .filter_map(|p| p["text"].as_str())
        .collect();
    assert_eq!(added, ["ملاحظة: "], "{shown}");
    assert!(changes[0]["after"].as_str().unwrap().starts_with("ملاحظة: "));
    let none = app.get(&format!("/api/quarantine/{}", id + 1)).await;
    assert_eq!(none.status(), 404);
    // Still on the phone, still waiting: nothing typed is lost.
    assert!(phone.text(meeting, "minutes").starts_with("ملاحظة: "));
    assert!(phone.replica.unconfirmed() > 0);
    // The record damaged on the server: the batch is still shown, with
    // why its changes cannot be.
    assert!(crate::damage_chunks(&app.data_dir, meeting) > 0);
    let shown = app.get_json(&format!("/api/quarantine/{id}")).await;
    assert_eq!(shown["not_shown_code"], "record-damaged", "{shown}");
    assert_eq!(shown["id"], id, "{shown}");
}

#[tokio::test]
async fn a_record_created_offline_reaches_the_server_and_the_club_index() {
    let app = spawn_app().await;
    let club = club_of(&app).await;
    let mut phone = Device::in_club("phone", club);
    phone.online(&app).await;
    phone
        .sync_until(|r| r.read(club).is_ok() && r.syncing() == 0)
        .await;
    phone.offline().await;
    let id = phone.create(
        Kind::Report,
        json!({
            "title": {"ar": "زيارة", "fr": "Visite à Tombouctou", "en": "Visit"},
            "date": "2026-11-20", "report_type": "visit",
            "text": "Rencontre avec la commune — لقاء مع الجماعة",
        }),
    );
    assert!(phone.stored[&club].len() > 1, "the index entry is stored");
    phone.online(&app).await;
    phone.sync_until(|r| r.unconfirmed() == 0).await;

    let stored = app.get_json(&format!("/api/records/{id}")).await;
    assert_eq!(stored["record"]["title"]["fr"], "Visite à Tombouctou");
    // Created by the device that delivered it, whose report it is to write.
    let device = app.token.split('.').next().unwrap();
    assert_eq!(stored["created_by"], device);
    let club_json = app.get_json(&format!("/api/records/{club}")).await;
    assert_eq!(
        club_json["record"]["index"][id.to_string()]["kind"],
        "report"
    );
    assert!(
        club_json["created_by"].is_null(),
        "the demo club is the server's own: {}",
        club_json["created_by"]
    );
}

#[tokio::test]
async fn a_record_created_before_the_club_record_arrived_is_listed_once_it_does() {
    let app = spawn_app().await;
    let club = club_of(&app).await;
    // A fresh phone that knows the club's id but has never been online.
    let mut phone = Device::in_club("fresh", club);
    let id = phone.create(
        Kind::Meeting,
        json!({
            "title": {"ar": "اجتماع أول", "fr": "Première réunion"},
            "date": "2026-11-30",
        }),
    );
    assert!(
        !phone.stored.contains_key(&club),
        "nothing to list it in yet"
    );
    // The phone restarts before it ever connects.
    phone.reload();
    phone.online(&app).await;
    phone
        .sync_until(|r| r.read(club).is_ok() && r.syncing() == 0 && r.unconfirmed() == 0)
        .await;

    let club_json = app.get_json(&format!("/api/records/{club}")).await;
    let entry = &club_json["record"]["index"][id.to_string()];
    assert_eq!(
        entry["kind"], "meeting",
        "record {id} is not in the club index"
    );
    assert_eq!(entry["title"]["fr"], "Première réunion");
    assert!(
        phone.stored[&club].len() > 1,
        "the listing is stored on the phone"
    );
    // Another device learns of the record through the index.
    let mut other = Device::in_club("other", club);
    other.online(&app).await;
    other
        .sync_until(|r| r.read(id).is_ok() && r.syncing() == 0)
        .await;
    assert_eq!(
        other.replica.read(id).unwrap()["record"]["title"]["ar"],
        "اجتماع أول"
    );
}

#[tokio::test]
async fn arabic_edits_at_utf16_offsets_land_where_the_browser_meant() {
    let app = spawn_app().await;
    let club = club_of(&app).await;
    let mut phone = Device::in_club("phone", club);
    let id = phone.create(
        Kind::Report,
        // Shadda and fatha on the mim; an emoji is two UTF-16 units.
        json!({"title": {"ar": "تقرير"}, "report_type": "field", "date": "2026-11-20", "text": "مُحَمَّد 🌍 السمارة"}),
    );
    // Browser offsets: after "مُحَمَّد " (9 units), and after the emoji (11).
    phone.edit(
        id,
        vec![Edit::SpliceText {
            path: "/text".into(),
            index: 11,
            delete: 0,
            insert: " و".into(),
        }],
    );
    phone.edit(
        id,
        vec![Edit::SpliceText {
            path: "/text".into(),
            index: 9,
            delete: 0,
            insert: "ـ".into(),
        }],
    );
    assert_eq!(phone.text(id, "text"), "مُحَمَّد ـ🌍 و السمارة");
    // In one batch, each splice counts from the text the previous one left.
    phone.edit(
        id,
        vec![
            Edit::SpliceText {
                path: "/text".into(),
                index: 0,
                delete: 0,
                insert: "🌙".into(),
            },
            Edit::SpliceText {
                path: "/text".into(),
                index: 2,
                delete: 0,
                insert: "*".into(),
            },
        ],
    );
    assert_eq!(phone.text(id, "text"), "🌙*مُحَمَّد ـ🌍 و السمارة");
    phone.edit(
        id,
        vec![Edit::SpliceText {
            path: "/text".into(),
            index: 0,
            delete: 3,
            insert: String::new(),
        }],
    );
    // An offset inside the emoji's surrogate pair is refused, not guessed.
    let err = phone
        .replica
        .edit(
            id,
            vec![Edit::SpliceText {
                path: "/text".into(),
                index: 11,
                delete: 0,
                insert: "x".into(),
            }],
            &Commit::new("bad", 2),
        )
        .unwrap_err();
    assert!(matches!(err, ClientError::Offset { .. }), "{err}");
    assert_eq!(phone.text(id, "text"), "مُحَمَّد ـ🌍 و السمارة");
}

#[tokio::test]
async fn garbage_from_the_server_is_an_error_and_the_data_stays() {
    let app = spawn_app().await;
    let club = club_of(&app).await;
    let mut phone = Device::in_club("phone", club);
    phone.online(&app).await;
    phone
        .sync_until(|r| r.read(club).is_ok() && r.syncing() == 0)
        .await;
    let before = phone.replica.read(club).unwrap();
    let err = phone
        .replica
        .receive(&[0xa1, 0x01, 0xff], 1_790_000_000)
        .unwrap_err();
    assert!(matches!(err, ClientError::Protocol(_)), "{err}");
    assert_eq!(phone.replica.read(club).unwrap(), before);

    // A damaged stored chunk names its record; the good chunks still load.
    // Automerge itself would skip the damaged chunk with a log line only.
    let mut chunks = phone.stored[&club].clone();
    let good = chunks.len();
    chunks.push(b"not automerge".to_vec());
    let mut other = Replica::new(PeerId::new("x"), StorageId::new("y"));
    let err = other.restore(club, &chunks, None).unwrap_err();
    assert!(err.to_string().contains(&club.to_string()), "{err}");
    assert_eq!(err.chunks.len(), 1);
    assert_eq!(err.chunks[0].0, good);
    assert_eq!(other.read(club).unwrap()["record"], before["record"]);
}
