//! Helpers for end-to-end tests: the server in-process on port 0 with a
//! fresh SQLite file ([`spawn_app`]), the server as a real process (for
//! `kill -9`), and a test peer speaking protocol v1 through the shared sync
//! engine over a real WebSocket.

#![allow(clippy::unwrap_used)]
// a test panics to fail

// Test helpers hold sockets and processes that have nothing useful to print.
#![allow(missing_debug_implementations)]

pub mod campaign;
pub mod peer;
pub mod process;
pub mod proxy;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::sync::oneshot;
use twinsync_server::auth::{NewDevice, Role};
use twinsync_server::hub::Hub;
use twinsync_server::settings::Settings;
use twinsync_server::startup;

pub use peer::TestPeer;

/// A running server a test peer can sign in to.
pub trait Server {
    fn addr(&self) -> SocketAddr;
    /// A coordinator's device token.
    fn token(&self) -> &str;
}

impl Server for TestApp {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    fn token(&self) -> &str {
        &self.token
    }
}

impl Server for process::ServerProcess {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    fn token(&self) -> &str {
        &self.token
    }
}

/// The repository root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_owned()
}

/// A server running in this process.
pub struct TestApp {
    pub addr: SocketAddr,
    pub hub: Arc<Hub>,
    pub data_dir: PathBuf,
    /// A coordinator's device token, provisioned at start.
    pub token: String,
    /// That device's id.
    pub device: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _temp: Option<tempfile::TempDir>,
}

/// Starts the server on port 0 with a fresh database holding the demo club.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// As [`spawn_app`], with settings adjusted by `tune`.
pub async fn spawn_app_with(tune: impl FnOnce(&mut Settings)) -> TestApp {
    init_logs();
    let temp = tempfile::tempdir().expect("a temporary directory");
    let mut settings = Settings::for_data_dir(temp.path().to_owned());
    settings.app_dir = workspace().join("app");
    settings.client_dir = workspace().join("client-wasm/pkg");
    tune(&mut settings);
    let mut app = start(settings).await;
    app._temp = Some(temp);
    app
}

/// Starts a server on an existing data directory (after a restart).
pub async fn start(settings: Settings) -> TestApp {
    let data_dir = settings.data_dir.clone();
    let hub = startup::prepare(settings).expect("the server starts");
    let (device, token) = hub
        .store
        .add_device(
            &NewDevice {
                name: "test coordinator".into(),
                role: Role::Coordinator,
                cities: Vec::new(),
                person: None,
            },
            now(),
        )
        .expect("a device");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("an address");
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(startup::run(listener, Arc::clone(&hub), async move {
        let _ = rx.await;
    }));
    TestApp {
        addr,
        hub,
        data_dir,
        token,
        device: device.id,
        shutdown: Some(tx),
        task: Some(task),
        _temp: None,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// GET with the coordinator's token.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.get_as(path, &self.token).await
    }

    /// GET with `token`.
    pub async fn get_as(&self, path: &str, token: &str) -> reqwest::Response {
        reqwest::Client::new()
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("the API answers")
    }

    /// POST JSON with `token`.
    pub async fn post_as(
        &self,
        path: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        self.send_as(reqwest::Method::POST, path, token, body).await
    }

    /// PATCH JSON with `token`.
    pub async fn patch_as(
        &self,
        path: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        self.send_as(reqwest::Method::PATCH, path, token, body)
            .await
    }

    async fn send_as(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        reqwest::Client::new()
            .request(method, self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("the API answers")
    }

    /// Provisions a device and returns its token.
    pub fn device(&self, role: Role, cities: &[&str], person: Option<&str>) -> String {
        let new = NewDevice {
            name: format!("test {}", role.as_str()),
            role,
            cities: cities.iter().map(|c| (*c).to_owned()).collect(),
            person: person.map(str::to_owned),
        };
        self.hub.store.add_device(&new, now()).expect("a device").1
    }

    /// A peer signed in as this app's coordinator.
    pub fn peer(&self, id: &str) -> TestPeer {
        TestPeer::new(id).with_token(&self.token)
    }

    /// Revokes the device of `token` as this app's coordinator, through
    /// the API; its answer.
    pub async fn revoke(&self, token: &str) -> serde_json::Value {
        let device_id = token.split('.').next().expect("a device token");
        let path = format!("/api/devices/{device_id}/revoke");
        let res = self
            .post_as(&path, &self.token, &serde_json::json!({}))
            .await;
        assert_eq!(res.status(), 200, "POST {path}");
        res.json().await.expect("JSON")
    }

    /// Accepts quarantined batch `id` as this app's coordinator, through
    /// the API; the answer, whatever it is.
    pub async fn accept(&self, id: impl std::fmt::Display) -> reqwest::Response {
        self.post_as(
            &format!("/api/quarantine/{id}/accept"),
            &self.token,
            &serde_json::json!({}),
        )
        .await
    }

    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let res = self.get(path).await;
        assert!(res.status().is_success(), "GET {path}: {}", res.status());
        res.json().await.expect("JSON")
    }

    /// The first record of `kind` the API lists.
    pub async fn first(&self, kind: &str) -> twinsync_shared::DocumentId {
        let list = self.get_json(&format!("/api/records?kind={kind}")).await;
        list[0]["id"]
            .as_str()
            .expect("an id")
            .parse()
            .expect("a document id")
    }

    /// Stops gracefully and hands back the data directory (kept alive).
    pub async fn stop(mut self) -> (PathBuf, Option<tempfile::TempDir>) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("the server task")
                .expect("the server stops cleanly");
        }
        (self.data_dir.clone(), self._temp.take())
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Writes a test's figures or pictures under `target/test-artefacts/`.
pub fn artefact(path: &str, contents: &str) {
    let file = workspace().join("target/test-artefacts").join(path);
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).expect("the artefacts directory");
    }
    std::fs::write(&file, contents).expect("the artefact is written");
}

/// Logs show only when `TEST_LOG` is set.
pub fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        twinsync_server::telemetry::init("debug");
    }
}

/// `len` bytes that do not compress (Automerge packs repetitive ones to
/// little, so they would not fill a disk or pass a size limit), the same
/// for the same `seed`.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.random()).collect()
}

/// Puts `ops` integers into `doc` under keys the schema does not read, in
/// one change: one Automerge op each, which compress to a few bytes.
pub fn tally(doc: &mut automerge::Automerge, name: &str, ops: usize) {
    use automerge::transaction::Transactable;
    let mut tx = doc.transaction();
    for i in 0..ops {
        tx.put(automerge::ROOT, format!("{name}-{i}"), i as i64)
            .expect("a put into a fresh transaction");
    }
    tx.commit();
}

/// `len` characters drawn from `alphabet`: text that does not compress,
/// the same for the same `seed`.
pub fn random_text(seed: u64, alphabet: &str, len: usize) -> String {
    let chars: Vec<char> = alphabet.chars().collect();
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len)
        .map(|_| chars[rng.random_range(0..chars.len())])
        .collect()
}

/// Waits until `done` holds, checking every 20 ms; panics naming `what`
/// after `limit`. For the server's own state (its gauges), which no
/// message announces.
pub async fn eventually(limit: std::time::Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} within {limit:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
