//! Requests through the server's real router, as any client may send them:
//! every one must get an answer, and a 500 only when storage failed.

#![no_main]

use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;
use twinsync_fuzz::{Auth, HttpInput, Id, ROUTES};
use twinsync_server::admin::check_new_device;
use twinsync_server::auth::{NewDevice, Role};
use twinsync_server::settings::Settings;
use twinsync_server::startup;

struct Server {
    // Kept so the data directory outlives every request; statics are never
    // dropped, so it stays behind in the temp dir after a run.
    _dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    app: Router,
    coordinator: String,
    delegate: String,
    revoked: String,
    /// What `Id::Known` picks from: record ids, device ids, batch numbers.
    ids: Vec<String>,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("twinsync-fuzz-")
            .tempdir()
            .expect("a temp dir");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let _guard = rt.enter();
        let mut settings = Settings::for_data_dir(dir.path().join("data"));
        // Empty static folders: the fallback must not serve the fuzz crate's cwd.
        settings.app_dir = dir.path().join("app");
        settings.client_dir = dir.path().join("pkg");
        let hub = startup::prepare(settings).expect("the server starts");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_secs() as i64;
        let device = |role, cities: &[&str]| {
            let new = NewDevice {
                name: format!("fuzz {role:?}"),
                role,
                cities: cities.iter().map(|c| (*c).to_owned()).collect(),
                person: None,
            };
            let new = check_new_device(&hub, &new).expect("a valid device");
            hub.store.add_device(&new, now).expect("a device")
        };
        let (_, coordinator) = device(Role::Coordinator, &[]);
        let (delegate_device, delegate) = device(Role::Delegate, &["Smara"]);
        let (revoked_device, revoked) = device(Role::Delegate, &["Smara"]);
        hub.store
            .revoke_device(&revoked_device.id, now, None)
            .expect("a revocation")
            .expect("no guard to refuse it");
        // Not the coordinator's id: revoking it would turn every later
        // request into a 403.
        let mut ids: Vec<String> = hub
            .store
            .list(None, None, None)
            .expect("the records")
            .into_iter()
            .map(|r| r.id)
            .collect();
        ids.extend([delegate_device.id, revoked_device.id]);
        ids.extend(["0", "1", "-1", "9223372036854775807"].map(String::from));
        let app = startup::app(hub);
        Server {
            _dir: dir,
            rt,
            app,
            coordinator,
            delegate,
            revoked,
            ids,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = HttpInput::decode(data) else {
        return;
    };
    let s = server();
    let Some(req) = request(s, &input) else {
        return;
    };
    let line = format!("{} {}", req.method(), req.uri());
    let (status, body) = s.rt.block_on(async {
        let res = s
            .app
            .clone()
            .oneshot(req)
            .await
            .expect("the router is infallible");
        let status = res.status();
        let body = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .expect("the body reads");
        (status, body)
    });
    if twinsync_fuzz::tracing() {
        eprintln!("{line} -> {status} {}", String::from_utf8_lossy(&body));
    }
    // `ApiError` says this, and only this, for a 500 of the store's making.
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.contains("is stored but cannot be read"),
            "500 for {input:?}: {text}"
        );
    }
});

fn request(s: &Server, input: &HttpInput) -> Option<Request<Body>> {
    let id: &[u8] = match &input.id {
        Id::Known(i) => s.ids[usize::from(*i) % s.ids.len()].as_bytes(),
        Id::Raw(bytes) => bytes,
    };
    let path = ROUTES[input.route].replace("{id}", &escape(id, b""));
    // `&`, `=` and `%` stay as given, so the fuzzer shapes the query,
    // malformed escapes included.
    let mut query = escape(&input.query, b"&=%+");
    let mut bearer = None;
    match input.auth {
        Auth::None => {}
        Auth::Coordinator => bearer = Some(s.coordinator.as_bytes().to_vec()),
        Auth::CoordinatorInQuery => {
            if !query.is_empty() {
                query.push('&');
            }
            query.push_str("token=");
            query.push_str(&s.coordinator);
        }
        Auth::Delegate => bearer = Some(s.delegate.as_bytes().to_vec()),
        Auth::Revoked => bearer = Some(s.revoked.as_bytes().to_vec()),
        Auth::Bad => bearer = Some(input.bad_token.clone()),
    }
    let uri = if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    };
    // `post` asks for the route's writing method: PATCH for a device.
    let method = match (input.post, ROUTES[input.route]) {
        (false, _) => Method::GET,
        (true, "/api/devices/{id}") => Method::PATCH,
        (true, _) => Method::POST,
    };
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(token) = bearer {
        // A token that is no valid header value never reaches the server.
        builder = builder.header(
            header::AUTHORIZATION,
            [b"Bearer ".as_slice(), &token].concat(),
        );
    }
    if input.json {
        builder = builder.header(header::CONTENT_TYPE, "application/json");
    }
    builder.body(Body::from(input.body.clone())).ok()
}

/// Percent-encodes all but unreserved characters and `keep`.
fn escape(bytes: &[u8], keep: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
