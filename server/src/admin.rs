//! People and devices: invites, redemption, the device list, revocation,
//! and the quarantine of refused changes. Everything here but redemption
//! and `/api/me` is for coordinators.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::access::{Authenticated, Coordinator, Denied, client_ip};
use crate::api::{ApiError, ApiJson, ApiPath, ApiResult, blocking};
use crate::auth::{Device, NewDevice, Role};
use crate::document::{AcceptError, DocCommand};
use crate::hub::{DispatchError, Hub, Missing};
use crate::review::{BatchError, PreviewError, batches};
use crate::store::{InvitedBy, PendingInvite, RedeemError, StoreError, UpdateRefused};

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A device as the API shows it, with when its token lapses.
pub fn device_json(hub: &Hub, d: &Device) -> Value {
    json!({
        "id": d.id,
        "name": d.name,
        "role": d.role,
        "cities": d.cities,
        "person": d.person,
        "created_at": d.created_at,
        "last_seen_at": d.last_seen_at,
        "expires_at": d.expires_at(hub.settings.token_ttl()),
        "revoked_at": d.revoked_at,
        "changed_at": d.changed_at,
    })
}

/// The address users open, for links: the configured public URL, else the
/// address the coordinator's browser opened the app at (its `Origin`:
/// behind a proxy, `Host` is often the proxy's upstream, such as
/// `127.0.0.1:8080`, and the scheme `http` where phones use `https`), else
/// the host the request came to.
fn base_url(hub: &Hub, headers: &HeaderMap) -> String {
    if let Some(url) = &hub.settings.public_url {
        return url.trim_end_matches('/').to_owned();
    }
    if let Some(origin) = headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .filter(|o| is_web_origin(o))
    {
        return origin.to_owned();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1:8080");
    format!("http://{host}")
}

/// Whether `origin` is a browser's `Origin` for a web page:
/// `http(s)://host[:port]`, nothing after (not `null`, not a path).
fn is_web_origin(origin: &str) -> bool {
    let Some(rest) = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
    else {
        return false;
    };
    !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}

/// The link that opens the app and redeems `code` in one click.
pub fn invite_link(base: &str, code: &str) -> String {
    format!("{}/#invite={code}", base.trim_end_matches('/'))
}

pub async fn me(State(hub): State<Arc<Hub>>, Authenticated(device): Authenticated) -> Json<Value> {
    Json(device_json(&hub, &device))
}

#[derive(Debug, Deserialize)]
pub struct InviteRequest {
    name: String,
    role: Role,
    #[serde(default)]
    cities: Vec<String>,
    #[serde(default)]
    person: Option<String>,
    /// Hours the invite can be redeemed; the server's default if absent.
    #[serde(default)]
    valid_hours: Option<u64>,
}

/// Why a device's description is not acceptable.
#[derive(Debug, thiserror::Error)]
pub enum DeviceProblem {
    #[error("a device needs a name of 1 to 200 characters, with no control characters")]
    BadName,
    #[error("cannot look up cities: {0}")]
    CitiesUnreadable(String),
    #[error("cannot look up people: {0}")]
    PeopleUnreadable(String),
    #[error("no city record is called or has the id `{0}`")]
    UnknownCity(String),
    #[error(
        "no city record is called `{0}`: there are no cities yet (`twinsync serve` seeds the demo club on its first start; with `--no-demo`, a coordinator adds cities in the app)"
    )]
    NoCities(String),
    #[error("more than one city is called `{0}`; give its id")]
    AmbiguousCity(String),
    #[error("{0} cities given; a device belongs to {MAX_CITIES} at most")]
    TooManyCities(usize),
    #[error("a delegate belongs to at least one member city")]
    DelegateWithoutCity,
    #[error(
        "no person record has the id `{0}` on the server (a record made on a phone arrives once it syncs)"
    )]
    UnknownPerson(String),
}

impl DeviceProblem {
    /// The answer to a request that described the device so.
    fn into_api(self) -> ApiError {
        let (status, code) = match self {
            DeviceProblem::BadName => (StatusCode::BAD_REQUEST, "bad-device-name"),
            DeviceProblem::CitiesUnreadable(_) | DeviceProblem::PeopleUnreadable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "database-unavailable")
            }
            DeviceProblem::UnknownCity(_) | DeviceProblem::NoCities(_) => {
                (StatusCode::BAD_REQUEST, "unknown-city")
            }
            DeviceProblem::AmbiguousCity(_) => (StatusCode::BAD_REQUEST, "ambiguous-city"),
            DeviceProblem::TooManyCities(_) => (StatusCode::BAD_REQUEST, "too-many-cities"),
            DeviceProblem::DelegateWithoutCity => (StatusCode::BAD_REQUEST, "delegate-needs-city"),
            DeviceProblem::UnknownPerson(_) => (StatusCode::BAD_REQUEST, "unknown-person"),
        };
        ApiError::new(status, self.to_string()).code(code)
    }
}

/// Whether a trimmed device name is 1 to 200 characters long, with no
/// control character (a tab or a line break would forge a row of
/// `twinsync device list`, an escape sequence rewrite the operator's
/// terminal) and no bidirectional embedding, override or isolate, which
/// would reorder what is shown after the name.
fn name_fits(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= 200
        && !name.chars().any(|c| {
            c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
}

/// The most cities a device may belong to.
const MAX_CITIES: usize = 100;

/// Checks a device's description: a delegate needs a known city.
pub fn check_new_device(hub: &Hub, new: &NewDevice) -> Result<NewDevice, DeviceProblem> {
    check_device(hub, new, None)
}

/// Checks a device's description, as `check_new_device`; a name or a person
/// the device `had` already passes as it is, so a rule made since does not
/// stop every other change to a device that predates it.
fn check_device(
    hub: &Hub,
    new: &NewDevice,
    had: Option<&Device>,
) -> Result<NewDevice, DeviceProblem> {
    let name = new.name.trim();
    if !name_fits(name) && had.is_none_or(|d| d.name != name) {
        return Err(DeviceProblem::BadName);
    }
    // Each city named is looked up, and the list is read again at every
    // sign-in and write check: held to what a club has.
    if new.cities.len() > MAX_CITIES {
        return Err(DeviceProblem::TooManyCities(new.cities.len()));
    }
    let mut cities: Vec<String> = Vec::new();
    for city in &new.cities {
        let found = hub
            .store
            .find_city(city)
            .map_err(|e| DeviceProblem::CitiesUnreadable(e.public_reason().to_string()))?;
        match found.as_slice() {
            // The same city twice, by name and by id say, is one.
            [one] if cities.contains(one) => {}
            [one] => cities.push(one.clone()),
            [] => {
                let any = hub
                    .store
                    .list(Some("city"), None, None)
                    .map(|l| !l.is_empty())
                    .unwrap_or(true);
                return Err(if any {
                    DeviceProblem::UnknownCity(city.clone())
                } else {
                    DeviceProblem::NoCities(city.clone())
                });
            }
            _ => return Err(DeviceProblem::AmbiguousCity(city.clone())),
        }
    }
    if new.role == Role::Delegate && cities.is_empty() {
        return Err(DeviceProblem::DelegateWithoutCity);
    }
    let person = new
        .person
        .as_deref()
        .map(|p| p.trim().trim_start_matches("automerge:").to_owned())
        .filter(|p| !p.is_empty());
    // The person a device writes for is matched by id against records'
    // attendees and authors: one that names no person gives no rights,
    // without a word.
    if let Some(p) = &person
        && had.is_none_or(|d| d.person.as_ref() != Some(p))
    {
        let known = hub
            .store
            .list(Some("person"), None, None)
            .map_err(|e| DeviceProblem::PeopleUnreadable(e.public_reason().to_string()))?
            .iter()
            .any(|l| &l.id == p);
        if !known {
            return Err(DeviceProblem::UnknownPerson(p.clone()));
        }
    }
    Ok(NewDevice {
        name: name.to_owned(),
        role: new.role,
        cities,
        person,
    })
}

pub async fn create_invite(
    State(hub): State<Arc<Hub>>,
    Coordinator(by): Coordinator,
    headers: HeaderMap,
    ApiJson(req): ApiJson<InviteRequest>,
) -> ApiResult<impl IntoResponse> {
    let wanted = NewDevice {
        name: req.name,
        role: req.role,
        cities: req.cities,
        person: req.person,
    };
    let hours = req
        .valid_hours
        .unwrap_or(hub.settings.invite_hours)
        .clamp(1, 24 * 90);
    let base = base_url(&hub, &headers);
    let hub2 = Arc::clone(&hub);
    let new = tokio::task::spawn_blocking(move || check_new_device(&hub2, &wanted))
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))?
        .map_err(DeviceProblem::into_api)?;
    let store = hub.store.clone();
    let at = now();
    let invite = blocking(move || {
        store.add_invite(
            &new,
            InvitedBy::Device(&by.id),
            at,
            at + i64::try_from(hours).unwrap_or(72) * 3600,
        )
    })
    .await?
    .ok_or_else(|| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "this device is no longer a coordinator",
        )
        .code("not-coordinator")
    })?;
    let link = invite_link(&base, &invite.code);
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": invite.id,
            "code": invite.code,
            "link": link,
            "name": invite.name,
            "role": invite.role,
            "cities": invite.cities,
            "person": invite.person,
            "expires_at": invite.expires_at,
        })),
    ))
}

#[derive(Debug, Deserialize)]
pub struct RedeemRequest {
    code: String,
    #[serde(default)]
    name: Option<String>,
}

pub async fn redeem(
    State(hub): State<Arc<Hub>>,
    request: axum::extract::Request,
) -> Result<impl IntoResponse, axum::response::Response> {
    let (parts, body) = request.into_parts();
    let ip = client_ip(&parts, &hub.settings.trusted_proxies);
    let bytes = axum::body::to_bytes(body, 64 * 1024).await.map_err(|_| {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "the request is too large").into_response()
    })?;
    let req: RedeemRequest = serde_json::from_slice(&bytes)
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("expected {{\"code\": \"…\", \"name\": \"…\"}}: {e}"),
            )
        })
        .map_err(IntoResponse::into_response)?;
    // The name the person gives their phone, if any, is held to the rule
    // a coordinator's invite is; an empty one keeps the invite's.
    if let Some(name) = req.name.as_deref().map(str::trim)
        && !name.is_empty()
        && !name_fits(name)
    {
        return Err(DeviceProblem::BadName.into_api().into_response());
    }
    // Only a code that is no invite counts, as a guess would be: a room of
    // delegates behind one address redeems its invites in the same minute,
    // and may tap a used or withdrawn link again. Counted before the store
    // is asked, so that tries sent at once are held to the limit too, and
    // taken back unless it turns out to be a guess.
    let mut counted = Counted::new(&hub, ip).map_err(|wait| {
        hub.metrics.rate_limited.inc();
        let message = format!(
            "too many unknown invite codes from this address; try again in {} s",
            crate::auth::whole_seconds(wait)
        );
        Denied::too_many(message, wait).into_response()
    })?;
    let store = hub.store.clone();
    let result = tokio::task::spawn_blocking(move || {
        store.redeem_invite(&req.code, req.name.as_deref(), now())
    })
    .await
    .map_err(|_| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
    })?;
    match result {
        Ok((device, token)) => {
            tracing::info!(device = %device.id, role = device.role.as_str(), "invite redeemed");
            Ok((
                StatusCode::CREATED,
                Json(json!({"token": token, "device": device_json(&hub, &device)})),
            ))
        }
        Err(RedeemError::Store(e)) => Err(ApiError::from(e).into_response()),
        Err(e @ RedeemError::Unknown) => {
            counted.guess = true;
            Err(Denied::unauthorized(e.to_string()).into_response())
        }
        Err(e) => Err(ApiError::new(StatusCode::GONE, e.to_string()).into_response()),
    }
}

/// One redemption counted against the caller's address, taken back when
/// dropped unless its code was a guess: a request cut off half-way, like
/// one that found an invite, counts as nothing.
struct Counted<'a> {
    hub: &'a Hub,
    ip: Option<(std::net::IpAddr, crate::auth::Counted)>,
    guess: bool,
}

impl<'a> Counted<'a> {
    /// Counts a try, or answers how long the address must wait.
    fn new(hub: &'a Hub, ip: Option<std::net::IpAddr>) -> Result<Self, std::time::Duration> {
        let ip = match ip {
            Some(ip) => Some((
                ip,
                hub.guards
                    .redemptions
                    .add_refundable(&ip, 1, hub.settings.redeems_per_minute)?,
            )),
            None => None,
        };
        Ok(Self {
            hub,
            ip,
            guess: false,
        })
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        if !self.guess
            && let Some((ip, counted)) = self.ip
        {
            self.hub.guards.redemptions.refund(&ip, counted);
        }
    }
}

pub async fn devices(State(hub): State<Arc<Hub>>, _by: Coordinator) -> ApiResult<Json<Vec<Value>>> {
    let store = hub.store.clone();
    let devices = blocking(move || store.devices()).await?;
    Ok(Json(devices.iter().map(|d| device_json(&hub, d)).collect()))
}

/// The invites nobody has used yet, newest first, never with their codes:
/// what a coordinator may withdraw.
pub async fn invites(
    State(hub): State<Arc<Hub>>,
    _by: Coordinator,
) -> ApiResult<Json<Vec<PendingInvite>>> {
    let store = hub.store.clone();
    let at = now();
    Ok(Json(blocking(move || store.pending_invites(at)).await?))
}

/// Withdraws an invite nobody has used: its link then signs no one in.
pub async fn cancel_invite(
    State(hub): State<Arc<Hub>>,
    Coordinator(by): Coordinator,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let store = hub.store.clone();
    let (target, at) = (id.clone(), now());
    if !blocking(move || store.cancel_invite(&target, at)).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no invite `{id}` waiting to be used: it was used, withdrawn or has expired"),
        ));
    }
    tracing::info!(invite = %id, by = %by.id, "invite withdrawn");
    Ok(Json(json!({"id": id, "withdrawn_at": at})))
}

pub async fn revoke(
    State(hub): State<Arc<Hub>>,
    Coordinator(by): Coordinator,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let store = hub.store.clone();
    let (target, at) = (id.clone(), now());
    let since = active_since(&hub, at);
    let device = blocking(move || store.revoke_device(&target, at, Some(since)))
        .await?
        .map_err(refused_update)?
        .ok_or_else(|| refused_update(UpdateRefused::Unknown(id)))?;
    let closed = hub.disconnect_device(&device.id);
    tracing::info!(device = %device.id, by = %by.id, sockets = closed, "device revoked");
    let mut body = device_json(&hub, &device);
    body["sockets_closed"] = json!(closed);
    Ok(Json(body))
}

/// What to change of a device; what is left out stays as it is.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceUpdate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub role: Option<Role>,
    /// Replaces the member cities, by name (any language) or record id.
    #[serde(default)]
    pub cities: Option<Vec<String>>,
    /// `null` takes the person away; absent keeps it.
    #[serde(default, deserialize_with = "present")]
    pub person: Option<Option<String>>,
}

/// A field that is present, even as `null`, as `Some`.
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// Why a device was not changed.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error(transparent)]
    Invalid(DeviceProblem),
    #[error(transparent)]
    Refused(#[from] UpdateRefused),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Changes a device's name, role, cities or person, checked as an invite's
/// are. The caller closes the sockets signed in under its old rights.
/// Blocking: it reads and writes the store.
pub fn update_device(
    hub: &Hub,
    id: &str,
    update: DeviceUpdate,
    now: i64,
) -> Result<Device, UpdateError> {
    // The fields left out are the device's as read; should it change
    // before the write, read it again (a few times, then say so).
    for _ in 0..3 {
        let old = hub
            .store
            .device(id)?
            .ok_or_else(|| UpdateRefused::Unknown(id.to_owned()))?;
        if old.is_revoked() {
            return Err(UpdateRefused::Revoked.into());
        }
        let wanted = NewDevice {
            name: update.name.clone().unwrap_or_else(|| old.name.clone()),
            role: update.role.unwrap_or(old.role),
            cities: update.cities.clone().unwrap_or_else(|| old.cities.clone()),
            person: update.person.clone().unwrap_or_else(|| old.person.clone()),
        };
        let new = check_device(hub, &wanted, Some(&old)).map_err(UpdateError::Invalid)?;
        match hub
            .store
            .update_device(&old, &new, now, active_since(hub, now))?
        {
            Err(UpdateRefused::ChangedMeanwhile) => continue,
            done => return Ok(done?),
        }
    }
    Err(UpdateRefused::ChangedMeanwhile.into())
}

/// Devices seen since then still hold a working token.
fn active_since(hub: &Hub, now: i64) -> i64 {
    now.saturating_sub(i64::try_from(hub.settings.token_ttl().as_secs()).unwrap_or(i64::MAX))
}

pub async fn update(
    State(hub): State<Arc<Hub>>,
    Coordinator(by): Coordinator,
    Path(id): Path<String>,
    ApiJson(update): ApiJson<DeviceUpdate>,
) -> ApiResult<Json<Value>> {
    let hub2 = Arc::clone(&hub);
    let target = id.clone();
    let changed = tokio::task::spawn_blocking(move || update_device(&hub2, &target, update, now()))
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))?;
    let device = match changed {
        Ok(device) => device,
        Err(UpdateError::Invalid(e)) => return Err(e.into_api()),
        Err(UpdateError::Refused(e)) => return Err(refused_update(e)),
        Err(UpdateError::Store(e)) => return Err(e.into()),
    };
    let closed = hub.disconnect_outdated(&device.id, device.rights);
    tracing::info!(
        device = %device.id,
        by = %by.id,
        role = device.role.as_str(),
        sockets = closed,
        "device changed"
    );
    let mut body = device_json(&hub, &device);
    body["sockets_closed"] = json!(closed);
    Ok(Json(body))
}

#[derive(Debug, Deserialize)]
pub struct QuarantineQuery {
    status: Option<String>,
}

pub async fn quarantine(
    State(hub): State<Arc<Hub>>,
    _by: Coordinator,
    crate::api::ApiQuery(q): crate::api::ApiQuery<QuarantineQuery>,
) -> ApiResult<Json<Value>> {
    if let Some(status) = q.status.as_deref()
        && !["pending", "accepted", "discarded"].contains(&status)
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("`{status}` is not a status: give pending, accepted or discarded"),
        ));
    }
    let store = hub.store.clone();
    let rows = blocking(move || store.quarantined(q.status.as_deref())).await?;
    Ok(Json(json!(rows)))
}

/// The answer for a batch id the quarantine does not hold.
fn no_batch(id: i64) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no quarantined batch #{id}")).code("no-batch")
}

/// The answer for accepting a batch before those it builds on.
fn builds_on_pending(entry: &crate::store::Quarantined) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        format!(
            "batch #{} builds on {}, still waiting for review: accept {} first",
            entry.id,
            batches(&entry.builds_on),
            if entry.builds_on.len() == 1 {
                "that"
            } else {
                "those"
            },
        ),
    )
    .code("batch-builds-on-pending")
}

/// The answer for a change to a device the store refused.
fn refused_update(e: UpdateRefused) -> ApiError {
    let (status, code) = match e {
        UpdateRefused::Unknown(_) => (StatusCode::NOT_FOUND, "unknown-device"),
        UpdateRefused::Revoked => (StatusCode::CONFLICT, "device-revoked"),
        UpdateRefused::LastCoordinator => (StatusCode::CONFLICT, "last-coordinator"),
        UpdateRefused::ChangedMeanwhile => (StatusCode::CONFLICT, "changed-meanwhile"),
    };
    ApiError::new(status, e.to_string()).code(code)
}

/// One quarantined batch with what it would change in the record as
/// stored now (`changes`, see [`crate::review`]), or why that cannot be
/// shown (`not_shown`).
pub async fn quarantined(
    State(hub): State<Arc<Hub>>,
    Coordinator(by): Coordinator,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Value>> {
    let store = hub.store.clone();
    let found = crate::api::reading(&hub, &by.id, move || -> Result<_, StoreError> {
        let Some((entry, changes)) = store.quarantined_changes(id)? else {
            return Ok(None);
        };
        let record = match entry.doc_id.parse() {
            Ok(doc) => match store.load(doc) {
                // The batch is still listed whole, with why its changes
                // cannot be shown.
                Err(StoreError::Corrupt { reason, .. }) => Err(reason),
                loaded => Ok(loaded?),
            },
            Err(_) => Ok(None),
        };
        // Built here, off the async workers: the values may be long texts.
        let mut body = json!(entry);
        let shown = record
            .map_err(PreviewError::RecordDamaged)
            .and_then(|record| {
                let current = record.unwrap_or_else(twinsync_shared::record::new_document);
                crate::review::preview(&current, &changes)
            })
            .map_err(|e| match e {
                // Waiting on another batch: named, so that the coordinator
                // knows which to judge first.
                PreviewError::Batch(BatchError::MissingDeps(_)) if !entry.builds_on.is_empty() => {
                    PreviewError::BuildsOnPending(entry.builds_on.clone())
                }
                e => e,
            });
        match shown {
            Ok(shown) => {
                body["kind"] = json!(shown.kind);
                body["title"] = shown.title;
                body["changes"] = json!(shown.changes);
            }
            Err(e) => {
                body["not_shown"] = json!(e.to_string());
                body["not_shown_code"] = json!(e.code());
            }
        }
        Ok(Some(body))
    })
    .await?;
    found.map(Json).ok_or_else(|| no_batch(id))
}

pub async fn accept(
    State(hub): State<Arc<Hub>>,
    Coordinator(by): Coordinator,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Value>> {
    let store = hub.store.clone();
    let (entry, changes) = blocking(move || store.quarantined_changes(id))
        .await?
        .ok_or_else(|| no_batch(id))?;
    // It could not apply before the batches it builds on; they are named.
    if !entry.builds_on.is_empty() {
        return Err(builds_on_pending(&entry));
    }
    let doc = entry.doc_id.parse().map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the batch names no valid document",
        )
    })?;
    // Claim the batch first, so an accept and a discard at the same moment
    // cannot both win; hand it back if it cannot be applied. In a task of
    // its own: a coordinator who closes the page drops this request, and a
    // batch claimed but neither applied nor handed back would be gone from
    // the review list with its changes in no record.
    let decided = tokio::spawn(async move {
        let store = hub.store.clone();
        let by_id = by.id.clone();
        if !blocking(move || store.decide(id, "accepted", &by_id, now())).await? {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("batch #{id} is no longer pending"),
            )
            .code("batch-decided"));
        }
        let hashes: Vec<automerge::ChangeHash> =
            entry.hashes.iter().filter_map(|h| h.parse().ok()).collect();
        let applied = apply(&hub, doc, changes, &entry).await;
        if let Err(e) = &applied {
            // The record's task may have stored the changes before it
            // failed to answer (it closed, or stopped on a fault): then the
            // accept stands, and the batch is not judged a second time.
            let store = hub.store.clone();
            let asked = hashes.clone();
            let held = blocking(move || store.stored_changes(doc, &asked)).await;
            if !hashes.is_empty() && held.is_ok_and(|held| hashes.iter().all(|h| held.contains(h)))
            {
                return Ok(hashes.len());
            }
            let store = hub.store.clone();
            blocking(move || store.reopen(id)).await?;
            // Accepted while a batch it builds on was being accepted, which
            // failed or had yet to apply: that batch is named, not the device.
            if e.has_code("batch-missing-deps") {
                let store = hub.store.clone();
                if let Some((again, _)) = blocking(move || store.quarantined_changes(id)).await?
                    && !again.builds_on.is_empty()
                {
                    return Err(builds_on_pending(&again));
                }
            }
        }
        applied
    });
    let applied = decided
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))??;
    Ok(Json(
        json!({"id": id, "status": "accepted", "changes_applied": applied}),
    ))
}

/// Hands accepted changes to the record's task and waits for its answer.
async fn apply(
    hub: &Arc<Hub>,
    doc: twinsync_shared::DocumentId,
    changes: Vec<u8>,
    entry: &crate::store::Quarantined,
) -> ApiResult<usize> {
    let (reply, answer) = oneshot::channel();
    let cmd = DocCommand::Accept {
        changes,
        peer_id: entry.peer_id.clone(),
        device_id: entry.device_id.clone(),
        only_new: entry.code.as_deref() == Some(crate::permissions::Why::ListedByAnother.code()),
        reply,
    };
    hub.dispatch(doc, cmd, Missing::Create)
        .await
        .map_err(|e| match e {
            DispatchError::Store(e) => ApiError::from(e),
            DispatchError::NotFound => ApiError::new(StatusCode::NOT_FOUND, "no such record"),
            DispatchError::ShuttingDown => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is restarting; try again shortly",
            )
            .code("record-busy"),
        })?;
    answer
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the record closed; try again",
            )
            .code("record-busy")
        })?
        .map_err(|e| match e {
            AcceptError::MissingDeps(_) => ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "batch #{} cannot be applied yet: {e}; no batch waiting for review holds them: most likely the device that sent it has yet to send them",
                    entry.id
                ),
            )
            .code("batch-missing-deps"),
            AcceptError::Unfit(_) => ApiError::new(
                StatusCode::CONFLICT,
                format!("batch #{} cannot be applied: {e}", entry.id),
            )
            .code("batch-not-applicable"),
            AcceptError::Store { full: true, .. } => crate::api::storage_full(),
            AcceptError::Store { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("batch #{} is still waiting: {e}; try again shortly", entry.id),
            )
            .code("database-unavailable"),
        })
}

pub async fn discard(
    State(hub): State<Arc<Hub>>,
    Coordinator(by): Coordinator,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Value>> {
    let store = hub.store.clone();
    let decided = blocking(move || -> Result<_, StoreError> {
        if store.decide(id, "discarded", &by.id, now())? {
            return Ok(Some((String::new(), true)));
        }
        // Not pending: said as it is now, after the decision that lost
        // (an accept claiming it at the same moment).
        let Some((entry, _)) = store.quarantined_changes(id)? else {
            return Ok(None);
        };
        Ok(Some((entry.status, false)))
    })
    .await?;
    match decided {
        None => Err(no_batch(id)),
        Some((status, false)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("batch #{id} was already {status}"),
        )
        .code("batch-decided")),
        Some((_, true)) => Ok(Json(json!({"id": id, "status": "discarded"}))),
    }
}

#[cfg(test)]
mod tests {
    use super::is_web_origin;

    #[test]
    fn only_a_web_pages_origin_makes_an_invite_link() {
        for origin in [
            "https://records.example.org",
            "http://127.0.0.1:8080",
            "http://[::1]:8080",
        ] {
            assert!(is_web_origin(origin), "{origin}");
        }
        for origin in [
            "null",
            "https://",
            "https://records.example.org/app",
            "https://records.example.org#invite=x",
            "file://",
            "chrome-extension://abc",
            "https://evil.example\"onload",
        ] {
            assert!(!is_web_origin(origin), "{origin}");
        }
    }
}
