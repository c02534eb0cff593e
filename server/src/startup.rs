//! Building the router and running the server until shutdown.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use axum::routing::{get, patch, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::Service;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::access::Authenticated;
use crate::auth::{NewDevice, Role};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::settings::Settings;
use crate::store::{InvitedBy, Store};
use crate::{access, admin, api, connection, seed};

/// The whole HTTP surface; tests call it without a socket.
pub fn app(hub: Arc<Hub>) -> Router {
    let static_files = ServeDir::new(&hub.settings.app_dir).append_index_html_on_directories(true);
    let shell = Arc::new(ShellVersion::new(vec![
        hub.settings.app_dir.clone(),
        hub.settings.client_dir.clone(),
    ]));
    Router::new()
        .route("/sync", get(sync))
        .route(
            "/sw-version.js",
            get(move || async move {
                // Files read, and hashed when they changed: off the
                // runtime's threads.
                let version = tokio::task::spawn_blocking(move || shell.current())
                    .await
                    .unwrap_or_default();
                (
                    [
                        (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                        (header::CACHE_CONTROL, "no-cache"),
                    ],
                    format!("self.SHELL_VERSION = {version:?};\n"),
                )
            }),
        )
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::metrics))
        .route("/api/openapi.json", get(api::openapi))
        .route("/api/records", get(api::list))
        .route("/api/records/{id}", get(api::get))
        .route("/api/records/{id}/conflicts", get(api::conflicts))
        .route("/api/records/{id}/history", get(api::history))
        .route("/api/changes", get(api::recent_changes))
        .route("/api/export/agreements.csv", get(api::agreements_csv))
        .route("/api/export/projects.csv", get(api::projects_csv))
        .route("/api/me", get(admin::me))
        .route(
            "/api/invites",
            post(admin::create_invite).get(admin::invites),
        )
        .route("/api/invites/{id}/cancel", post(admin::cancel_invite))
        .route("/api/invites/redeem", post(admin::redeem))
        .route("/api/devices", get(admin::devices))
        .route("/api/devices/{id}", patch(admin::update))
        .route("/api/devices/{id}/revoke", post(admin::revoke))
        .route("/api/quarantine", get(admin::quarantine))
        .route("/api/quarantine/{id}", get(admin::quarantined))
        .route("/api/quarantine/{id}/accept", post(admin::accept))
        .route("/api/quarantine/{id}/discard", post(admin::discard))
        .route("/api/{*rest}", axum::routing::any(api::no_route))
        .method_not_allowed_fallback(api::wrong_method)
        .nest_service("/pkg", ServeDir::new(&hub.settings.client_dir))
        .fallback_service(static_files)
        .layer(axum::middleware::from_fn_with_state(
            hub.settings.header_timeout() * 3,
            body_within,
        ))
        .layer(axum::middleware::from_fn(browser_rules))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .with_state(hub)
}

/// What the app's pages may load and do: only the server's own files and
/// sockets, the client's WebAssembly, no frame around them (a page of
/// another site cannot lay the Devices screen's Accept under its own
/// button), no plugin, no form sent elsewhere. The token the app keeps in
/// `localStorage` is so out of reach of any script another site could
/// place in a page.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; worker-src 'self'; manifest-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Marks every `/api` answer `Cache-Control: no-store` unless it says
/// otherwise: the devices, the refused changes and the exports are no
/// business of a browser's disk cache on a shared office computer.
///
/// Sets [`CONTENT_SECURITY_POLICY`] on every answer but `/healthz` and
/// `/metrics`, which are no page of the app: a monitor reads them, and the
/// browser tests load the client on `/healthz` to point it at servers of
/// their own on other ports, which the policy would refuse.
async fn browser_rules(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let path = request.uri().path();
    let api = path.starts_with("/api/");
    let page = !matches!(path, "/healthz" | "/metrics");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if api {
        headers
            .entry(header::CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-store"));
    }
    if page {
        headers
            .entry(header::CONTENT_SECURITY_POLICY)
            .or_insert(HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    }
    response
}

/// The shell's version as served now: the app and the client may be
/// rebuilt under a running server (`cargo xtask build-client`, a deploy of
/// `app/`), and phones learn of a new build only from a new version. The
/// digest is taken again only when a file's size or time changed.
struct ShellVersion {
    dirs: Vec<std::path::PathBuf>,
    /// Each file's path, size and time when the digest was last taken, and
    /// the digest.
    last: std::sync::Mutex<Option<(Vec<FileStamp>, String)>>,
}

type FileStamp = (std::path::PathBuf, u64, Option<std::time::SystemTime>);

impl ShellVersion {
    fn new(dirs: Vec<std::path::PathBuf>) -> Self {
        Self {
            dirs,
            last: std::sync::Mutex::new(None),
        }
    }

    fn current(&self) -> String {
        let stamps: Vec<FileStamp> = self
            .dirs
            .iter()
            .flat_map(|dir| shell_files(dir))
            .map(|file| {
                let meta = std::fs::metadata(&file).ok();
                let len = meta.as_ref().map_or(0, std::fs::Metadata::len);
                let time = meta.and_then(|m| m.modified().ok());
                (file, len, time)
            })
            .collect();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((then, version)) = last.as_ref()
            && *then == stamps
        {
            return version.clone();
        }
        let dirs: Vec<&std::path::Path> = self.dirs.iter().map(|d| d.as_path()).collect();
        let version = shell_version(&dirs);
        *last = Some((stamps, version.clone()));
        version
    }
}

/// Every file under `dir`, sorted.
fn shell_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, &mut files);
    files.sort();
    files
}

/// A digest of the app's files and the built client, as served: the
/// service worker keeps one cache per version, so a phone never mixes the
/// client's JavaScript of one build with the `.wasm` of another.
fn shell_version(dirs: &[&std::path::Path]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for dir in dirs {
        let files = shell_files(dir);
        for file in files {
            hasher.update(
                file.strip_prefix(dir)
                    .unwrap_or(&file)
                    .to_string_lossy()
                    .as_bytes(),
            );
            hasher.update(std::fs::read(&file).unwrap_or_default());
        }
    }
    hasher.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Each socket's read buffer. tungstenite's default, 128 KiB, was a fifth
/// of the heap with 200 delegates connected (heaptrack, S1); a larger frame
/// grows the buffer for as long as it takes to read it.
const READ_BUFFER_BYTES: usize = 8 * 1024;

/// The token is checked before the upgrade: without a valid one the
/// answer is HTTP 401 and no socket opens.
async fn sync(
    Authenticated(device): Authenticated,
    ws: WebSocketUpgrade,
    State(hub): State<Arc<Hub>>,
) -> Response {
    let limit = hub.settings.max_frame_bytes;
    // Let frames somewhat over the limit through to the decoder, which
    // answers them with a protocol error naming the limit; the transport
    // cuts off anything larger still.
    let transport = limit.saturating_add((limit / 4).max(64 * 1024));
    ws.protocols([crate::auth::SUBPROTOCOL])
        .max_frame_size(transport)
        .max_message_size(transport)
        .read_buffer_size(READ_BUFFER_BYTES)
        .on_upgrade(move |socket| connection::serve(socket, hub, device))
}

/// A request's span names its method and path, never its query: the
/// official clients carry the device token there on `/sync`.
fn request_span(req: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    tracing::debug_span!("request", method = %req.method(), path = %req.uri().path())
}

/// Opens and migrates the store, stores the demo club (or, with
/// `--no-demo`, the club record alone) while it holds no club record,
/// reopens accepted batches never applied, and builds the hub.
pub fn prepare(settings: Settings) -> anyhow::Result<Arc<Hub>> {
    std::fs::create_dir_all(&settings.data_dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot create data directory {}: {e}",
            settings.data_dir.display()
        )
    })?;
    // Before the database is opened: a second server, or a restore under
    // way, is named rather than shared with.
    let lock = crate::lock::DataDirLock::acquire(&settings.data_dir, crate::lock::Use::Serve)?;
    if let Some(said) = crate::store::restore::finish_cut_off(&settings.data_dir)? {
        tracing::warn!("{said}");
    }
    crate::store::restore::check_not_cut_off(&settings.data_dir)?;
    warn_of_missing_app(&settings);
    // Named whole: a data directory relative to a service manager's
    // working directory is not where the operator looks.
    let path = settings.database_path();
    let named = std::path::absolute(&path).unwrap_or_else(|_| path.clone());
    let in_db = |what: &str| format!("{what} the database {}", named.display());
    let store = Store::open(&path).with_context(|| in_db("cannot open"))?;
    if !store.has_club().with_context(|| in_db("cannot read"))? {
        if settings.no_demo {
            let id = seed::empty_club(&store).with_context(|| in_db("cannot make the club in"))?;
            tracing::info!(club = %id, "made the club record, with no records yet");
        } else {
            let n = seed::demo(&store).with_context(|| in_db("cannot seed the demo club in"))?;
            tracing::info!(records = n, "seeded the demo club");
        }
    }
    // Best effort: a record listed without its date is no reason not to
    // serve.
    match store.fill_dates() {
        Ok(0) => {}
        Ok(n) => tracing::info!(records = n, "listed records kept before dates with theirs"),
        Err(e) => tracing::warn!(error = %e, "records kept before dates not listed with theirs"),
    }
    match store.fill_listings() {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            records = n,
            "noted who listed records listed before listings were kept"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "who listed records listed before listings were kept not noted")
        }
    }
    // Before any accept can start: a batch accepted but never applied is
    // judged again rather than gone.
    match store.reopen_unapplied(time::OffsetDateTime::now_utc().unix_timestamp()) {
        Ok(ids) if ids.is_empty() => {}
        Ok(ids) => tracing::warn!(
            ?ids,
            "batches accepted but never applied (the server stopped or failed in between) are pending review again"
        ),
        Err(e) => tracing::warn!(error = %e, "batches accepted but never applied not looked for"),
    }
    if settings.max_db_mib > 0 {
        let cap = settings.max_db_mib * 1024 * 1024;
        store.set_size_limit(Some(cap))?;
        // SQLite keeps a database already past the cap as it is, and
        // every write needing a page more then fails as if the disk were
        // full, with room on it.
        let size = store.size()?;
        if size >= cap {
            tracing::warn!(
                size_mib = size / (1024 * 1024),
                max_db_mib = settings.max_db_mib,
                "the database is already at --max-db-mib: writes that need more room will fail as \"storage full\"; raise the limit"
            );
        }
    }
    let hub = Hub::new(store, Arc::new(settings), Metrics::new())?;
    *hub.data_lock.lock().unwrap_or_else(|p| p.into_inner()) = Some(lock);
    Ok(hub)
}

/// The most any request's body may hold. Read before the route (and its
/// sign-in) sees it, from any client: every body the API takes is a few
/// fields, and 1,024 connections each holding axum's 2 MiB would pin 2 GiB.
const BODY_LIMIT: usize = 64 << 10;

/// Reads a request's body whole within `deadline` before the route sees
/// it. A body that trickles in, a byte now and then, would otherwise hold
/// its connection's slot for as long as it likes: it is answered 408.
async fn body_within(
    State(deadline): State<std::time::Duration>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::response::IntoResponse;
    let (parts, body) = request.into_parts();
    let bytes = match tokio::time::timeout(deadline, axum::body::to_bytes(body, BODY_LIMIT)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => {
            return crate::api::ApiError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the request's body is over {} KiB, or was cut off",
                    BODY_LIMIT >> 10
                ),
            )
            .into_response();
        }
        Err(_) => {
            return crate::api::ApiError::new(
                axum::http::StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request's body did not arrive within {} s",
                    deadline.as_secs()
                ),
            )
            .into_response();
        }
    };
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
    .await
}

/// Says so when the app or the browser client is not where the server looks
/// for them (relative paths are from the working directory, which a
/// service manager sets elsewhere): the server would answer every page
/// with 404 while its invite links and `/healthz` look fine.
fn warn_of_missing_app(settings: &Settings) {
    for said in missing_app(settings) {
        tracing::warn!("{said}");
    }
}

/// What [`warn_of_missing_app`] says, one line for each place.
fn missing_app(settings: &Settings) -> Vec<String> {
    let places = [
        (
            &settings.app_dir,
            "index.html",
            "--app-dir",
            "TWINSYNC_APP_DIR",
        ),
        (
            &settings.client_dir,
            "twinsync_client.js",
            "--client-dir",
            "TWINSYNC_CLIENT_DIR",
        ),
    ];
    places
        .into_iter()
        .filter(|(dir, file, ..)| !dir.join(file).is_file())
        .map(|(dir, file, flag, env)| {
            let shown = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
            format!(
                "no {file} in {}: the app will not load; give its directory with {flag} or {env}",
                shown.display()
            )
        })
        .collect()
}

/// With no device provisioned yet, makes a one-time coordinator invite and
/// returns its link, so the first user opens the app in one click.
pub fn first_invite(hub: &Hub, base_url: &str) -> anyhow::Result<Option<String>> {
    if hub.store.has_devices()? {
        return Ok(None);
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let hours = i64::try_from(hub.settings.invite_hours).unwrap_or(72);
    let invite = hub.store.add_invite(
        &NewDevice {
            name: "First coordinator".into(),
            role: Role::Coordinator,
            cities: Vec::new(),
            person: None,
        },
        InvitedBy::Server,
        now,
        now + hours * 3600,
    )?;
    // An invite made by nobody in particular is always stored.
    Ok(invite.map(|i| admin::invite_link(base_url, &i.code)))
}

/// Serves until `shutdown` resolves, then closes every document cleanly.
///
/// The accept loop is hyper's own rather than `axum::serve`, for limits
/// against slowloris: a client must send its request headers within
/// `header_timeout_secs` (from the moment it connects: HTTP/1 only, as
/// telling HTTP/2 apart would wait on a silent socket for ever) and a
/// request's body within three times that, and at most
/// `max_http_connections` sockets may be in their HTTP phase (before a
/// WebSocket upgrade) at once; more are closed as they are accepted.
pub async fn run(
    listener: TcpListener,
    hub: Arc<Hub>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let watcher = tokio::spawn(watch_devices(Arc::clone(&hub)));
    let trimmer = tokio::spawn(crate::memory::keep_trimming(
        Arc::clone(&hub),
        std::time::Duration::from_secs(10),
    ));
    let mut make_service =
        app(Arc::clone(&hub)).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(hub.settings.header_timeout());
    let stopping = tokio_util::sync::CancellationToken::new();
    let connections = tokio_util::task::TaskTracker::new();
    let open = Arc::new(Semaphore::new(hub.settings.max_http_connections.max(1)));
    // Each connection's place in the count from its address, given back
    // when the connection ends its HTTP phase.
    let by_address = crate::auth::Slots::default();
    tokio::pin!(shutdown);
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, most often: wait, do not spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let per_address = hub.settings.max_http_connections_per_address.max(1);
        // Every client behind a trusted proxy comes from its address: the
        // overall cap is the proxy's, and its own cap per address.
        let slot = if access::is_trusted(remote.ip(), &hub.settings.trusted_proxies) {
            Some(None)
        } else {
            // An IPv6 client by its /64, as the other limits count it: a
            // phone holds the whole /64, and could use an address of it
            // for each connection.
            by_address
                .take(&access::counted(remote.ip()), per_address)
                .map(Some)
        };
        let (Ok(permit), Some(slot)) = (Arc::clone(&open).try_acquire_owned(), slot) else {
            hub.metrics.connections_refused.inc();
            tracing::debug!(%remote, "too many connections in their HTTP phase; closed");
            continue;
        };
        // Sync frames are small and each one waits for an answer: with
        // Nagle's algorithm a frame can sit behind the peer's delayed ACK
        // for tens of milliseconds, so every accepted socket sends at once.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "cannot set TCP_NODELAY; frames may wait");
        }
        let Ok(service) = make_service.call(remote).await;
        let conn = builder
            .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(service))
            .with_upgrades();
        let stopping = stopping.clone();
        connections.spawn(async move {
            let mut conn = std::pin::pin!(conn);
            let ended = tokio::select! {
                ended = conn.as_mut() => ended,
                () = stopping.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
            // An upgraded WebSocket lives on in its own task; only the HTTP
            // phase counts against the limits.
            drop((permit, slot));
        });
    }
    drop(listener);
    stopping.cancel();
    connections.close();
    if tokio::time::timeout(std::time::Duration::from_secs(10), connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("HTTP requests still running 10 s after shutdown began; closing them");
    }
    watcher.abort();
    trimmer.abort();
    hub.shutdown().await;
    // Every record is closed: the next server may start.
    hub.data_lock
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    Ok(())
}

/// Closes the sockets of devices revoked, or whose rights changed, from the
/// command line (another process): every two seconds, each socket's device
/// as it signed in is compared with the device as stored now. No clock is
/// involved, so a change committed late, or under a clock that stepped
/// back, is not missed. And notes each connected device as seen, once a
/// minute: a token lasts `--token-ttl-days` after the last sighting, and a
/// secretariat's computer may keep one socket open for months.
async fn watch_devices(hub: Arc<Hub>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
    loop {
        tick.tick().await;
        if !hub.has_sessions() {
            continue;
        }
        let store = hub.store.clone();
        let connected = hub.connected_devices();
        let checked = tokio::task::spawn_blocking(move || {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            if let Err(e) = store.touch_devices(&connected, now) {
                tracing::warn!(error = %e, "cannot note the connected devices as seen");
            }
            store.device_rights()
        });
        match checked.await {
            Ok(Ok(now)) => {
                for id in hub.disconnect_stale(&now) {
                    tracing::info!(device = %id, "device revoked or changed: its socket closed");
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot check for revoked or changed devices"),
            Err(_) => {}
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM. A second one, while the server stops
/// (sockets leave, requests end, every record closes: seconds, and more
/// on a slow disk), ends the process at once: what was acknowledged is in
/// SQLite's log already, and an operator who asks twice means it.
pub async fn shutdown_signal() {
    // Listened to from here on, so that a second signal sent at once is
    // not lost between the two waits.
    let mut asked = StopSignals::new();
    asked.next().await;
    tracing::info!("shutting down (Ctrl-C or SIGTERM again stops at once)");
    tokio::spawn(async move {
        let status = asked.next().await;
        eprintln!("stopped at once: asked again while shutting down");
        std::process::exit(status);
    });
}

/// Ctrl-C and SIGTERM, as they come.
struct StopSignals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Self {
                interrupt: signal(SignalKind::interrupt()).ok(),
                terminate: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// Waits for the next one; answers the exit status a shell gives a
    /// process it ended (128 and the signal's number).
    async fn next(&mut self) -> i32 {
        #[cfg(unix)]
        {
            async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                () = recv(&mut self.interrupt) => 130,
                () = recv(&mut self.terminate) => 143,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            130
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ShellVersion, missing_app, shell_version};

    #[test]
    fn a_database_file_that_is_not_one_is_named_by_its_whole_path() {
        let data = tempfile::tempdir().expect("a directory");
        let settings = crate::settings::Settings::for_data_dir(data.path().to_owned());
        std::fs::write(settings.database_path(), b"not a database, only words").expect("written");
        let Err(e) = super::prepare(settings.clone()) else {
            panic!("a server on a file that is no database")
        };
        let said = format!("{e:#}");
        assert!(
            said.contains(&settings.database_path().display().to_string()),
            "{said}"
        );
        assert!(said.contains("not a database"), "{said}");
    }

    #[test]
    fn an_app_not_where_the_server_looks_is_said_with_the_flag_that_says_where() {
        let data = tempfile::tempdir().expect("a directory");
        let mut settings = crate::settings::Settings::for_data_dir(data.path().to_owned());
        settings.app_dir = data.path().join("app");
        settings.client_dir = data.path().join("pkg");
        let said = missing_app(&settings);
        assert_eq!(said.len(), 2, "{said:?}");
        assert!(
            said[0].contains("no index.html in") && said[0].contains("--app-dir"),
            "{said:?}"
        );
        assert!(
            said[0].contains(&data.path().join("app").display().to_string()),
            "{said:?}"
        );
        assert!(said[1].contains("--client-dir"), "{said:?}");
        // Both there: nothing to say.
        std::fs::create_dir(&settings.app_dir).expect("app");
        std::fs::write(settings.app_dir.join("index.html"), "<!doctype html>").expect("index");
        std::fs::create_dir(&settings.client_dir).expect("pkg");
        std::fs::write(settings.client_dir.join("twinsync_client.js"), "").expect("client");
        assert!(missing_app(&settings).is_empty());
    }

    #[test]
    fn the_shell_version_changes_with_any_served_file_and_only_then() {
        let app = tempfile::tempdir().expect("a directory");
        let pkg = tempfile::tempdir().expect("a directory");
        std::fs::create_dir(app.path().join("icons")).expect("icons");
        std::fs::write(app.path().join("app.js"), "one").expect("app.js");
        std::fs::write(app.path().join("icons/icon.svg"), "<svg/>").expect("icon");
        std::fs::write(pkg.path().join("client_bg.wasm"), [0, 97, 115, 109]).expect("wasm");
        let dirs = [app.path(), pkg.path()];
        let first = shell_version(&dirs);
        assert_eq!(first.len(), 16);
        assert_eq!(
            shell_version(&dirs),
            first,
            "the same files, the same version"
        );
        std::fs::write(pkg.path().join("client_bg.wasm"), [0, 97, 115, 110]).expect("wasm");
        let second = shell_version(&dirs);
        assert_ne!(second, first, "a new client is a new version");
        std::fs::write(app.path().join("icons/icon.svg"), "<svg />").expect("icon");
        assert_ne!(shell_version(&dirs), second, "a file in a subfolder counts");
    }

    /// The version served follows a rebuild under a running server, as
    /// phones learn of a new build only from a new version.
    #[test]
    fn the_shell_version_served_follows_a_rebuild() {
        let app = tempfile::tempdir().expect("a directory");
        let pkg = tempfile::tempdir().expect("a directory");
        std::fs::write(app.path().join("app.js"), "one").expect("app.js");
        std::fs::write(pkg.path().join("client_bg.wasm"), [0, 97, 115, 109]).expect("wasm");
        let served = ShellVersion::new(vec![app.path().to_owned(), pkg.path().to_owned()]);
        let first = served.current();
        assert_eq!(served.current(), first);
        std::fs::write(pkg.path().join("client_bg.wasm"), [0, 97, 115, 109, 1]).expect("wasm");
        let second = served.current();
        assert_ne!(second, first, "a rebuilt client is a new version");
        assert_eq!(second, shell_version(&[app.path(), pkg.path()]));
        std::fs::write(app.path().join("new.js"), "x").expect("new.js");
        assert_ne!(served.current(), second, "a new file is a new version");
    }
}
