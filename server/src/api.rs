//! The coordinators' read API (JSON and CSV over HTTP), health and metrics.
//!
//! Every answer is built from what is stored: what the API shows has been
//! acknowledged to some peer, and survives a crash.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use twinsync_shared::DocumentId;
use twinsync_shared::record::{Record, RecordDoc};

use crate::access::Member;
use crate::hub::Hub;
use crate::store::{Store, StoreError};

/// An API failure, as a status and a message a user can act on, in
/// English (`error`), and for the failures a coordinator meets in the app
/// a stable code (`code`) that the app says in the person's language.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    code: Option<&'static str>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            code: None,
        }
    }

    /// The same failure, with the code the app translates (`api.<code>`
    /// in `app/i18n.js`; [`CODES`] lists them).
    pub(crate) fn code(mut self, code: &'static str) -> Self {
        debug_assert!(CODES.contains(&code), "{code} is not in CODES");
        self.code = Some(code);
        self
    }

    /// Whether the failure carries `code`.
    pub(crate) fn has_code(&self, code: &str) -> bool {
        self.code == Some(code)
    }
}

/// Every code an [`ApiError`] may carry.
pub const CODES: &[&str] = &[
    "database-unavailable",
    "storage-full",
    "record-unreadable",
    "not-coordinator",
    "revoked",
    "no-batch",
    "batch-decided",
    "batch-not-applicable",
    "batch-builds-on-pending",
    "batch-missing-deps",
    "record-busy",
    "unknown-device",
    "device-revoked",
    "last-coordinator",
    "changed-meanwhile",
    "signed-out",
    "too-many-attempts",
    "bad-device-name",
    "unknown-city",
    "unknown-person",
    "ambiguous-city",
    "too-many-cities",
    "delegate-needs-city",
    "too-many-reads",
];

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "storage error in the API");
        match e {
            StoreError::Corrupt { doc, .. } => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("document {doc} is stored but cannot be read"),
            )
            .code("record-unreadable"),
            e if e.is_full() => storage_full(),
            _ => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is not answering; try again shortly",
            )
            .code("database-unavailable"),
        }
    }
}

/// What a write the server's full storage refused answers: no use trying
/// again shortly, as with a database that does not answer.
pub(crate) fn storage_full() -> ApiError {
    ApiError::new(
        StatusCode::INSUFFICIENT_STORAGE,
        "the server's storage is full: its operator must make room on the disk or raise --max-db-mib",
    )
    .code("storage-full")
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.code {
            Some(code) => json!({ "error": self.message, "code": code }),
            None => json!({ "error": self.message }),
        };
        (self.status, Json(body)).into_response()
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// A query string read as `T`, or a 400 in the API's JSON saying what in
/// it is wrong (axum's own `Query` answers in plain text).
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S>
    for ApiQuery<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| ApiQuery(q))
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))
    }
}

/// A JSON body read as `T`, or the API's JSON error saying what in it is
/// wrong, with axum's status (400, 415 or 422), where axum's own `Json`
/// answers in plain text.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(body)| ApiJson(body))
            .map_err(|e| ApiError::new(e.status(), e.body_text()))
    }
}

/// A path parameter read as `T` (a quarantine batch's number), or a 400 in
/// the API's JSON.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send, S: Send + Sync> axum::extract::FromRequestParts<S>
    for ApiPath<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(p)| ApiPath(p))
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))
    }
}

/// Any `/api/` path that is no route: a 404 in the API's JSON, not the
/// app's static files.
pub async fn no_route(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no API route {}; /api/openapi.json lists them", uri.path()),
    )
}

/// A route asked with a method it does not take, in the API's JSON.
pub async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} does not take {method}", uri.path()),
    )
}

/// Runs `f` on the blocking pool: the store's calls, and reading a record
/// (its fields, its history, its state at a date, its disagreements), a
/// pass over all of it and its history one per change, seconds for a
/// large record, which on an async worker would hold up every socket the
/// worker serves.
pub(crate) async fn blocking<T: Send + 'static, E: Into<ApiError> + Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))?
        .map_err(Into::into)
}

/// `blocking` for work that loads a record whole, asked for by `device`:
/// at most [`crate::hub::API_READS`] at once, so many requests for a large
/// record cannot hold as many copies of it, and at most
/// [`crate::hub::API_READS_PER_DEVICE`] of one device's waiting or under
/// way (429 past it), so one device cannot queue ahead of every other.
pub(crate) async fn reading<T: Send + 'static, E: Into<ApiError> + Send + 'static>(
    hub: &Hub,
    device: &str,
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> ApiResult<T> {
    let share = hub
        .api_reads_by_device
        .take(&device.to_owned(), crate::hub::API_READS_PER_DEVICE)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "this device already has {} records being read; ask again once they are answered",
                    crate::hub::API_READS_PER_DEVICE
                ),
            )
            .code("too-many-reads")
        })?;
    // The turn goes with the work: a request dropped while its record
    // loads (the client gone) holds it until the load ends all the same.
    let turn = Arc::clone(&hub.api_reads)
        .acquire_owned()
        .await
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping"))?;
    blocking(move || {
        let _turn = turn;
        let _share = share;
        f()
    })
    .await
}

pub async fn healthz(State(hub): State<Arc<Hub>>) -> ApiResult<&'static str> {
    let store = hub.store.clone();
    blocking(move || store.has_club()).await?;
    Ok("ok")
}

pub async fn metrics(State(hub): State<Arc<Hub>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        hub.metrics.render(),
    )
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    kind: Option<String>,
    city: Option<String>,
    status: Option<String>,
}

pub async fn list(
    Member(caller): Member,
    State(hub): State<Arc<Hub>>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Vec<Value>>> {
    // A kind mistyped would list nothing, as if the club had none.
    if let Some(kind) = q.kind.as_deref()
        && kind.parse::<twinsync_shared::record::Kind>().is_err()
    {
        let kinds: Vec<&str> = twinsync_shared::record::Kind::ALL
            .iter()
            .map(|k| k.as_str())
            .collect();
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("`{kind}` is not a kind: give one of {}", kinds.join(", ")),
        ));
    }
    let store = hub.store.clone();
    let city = q.city.map(|c| normalise_link(&c));
    // An agreement has no one city but its parties, which only the record
    // says: with a city asked for, each agreement is read to see whether
    // the city is one (a club has tens of them).
    let parties_of = city
        .clone()
        .filter(|_| q.kind.as_deref().is_none_or(|k| k == "agreement"));
    let (kind, status) = (q.kind.clone(), q.status.clone());
    let mut rows =
        blocking(move || store.list(kind.as_deref(), city.as_deref(), status.as_deref())).await?;
    if let Some(city) = parties_of {
        let store = hub.store.clone();
        let parties = reading(&hub, &caller.id, move || -> Result<_, StoreError> {
            let mut found = Vec::new();
            for row in store.list(Some("agreement"), None, q.status.as_deref())? {
                let Ok(id) = row.id.parse::<DocumentId>() else {
                    continue;
                };
                // One record that cannot be read leaves the others listed.
                let doc = match store.load(id) {
                    Ok(Some(doc)) => doc,
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::warn!(doc_id = %id, error = %e, "agreement not read for its parties");
                        continue;
                    }
                };
                let read = twinsync_shared::record::read_document_leniently(&doc);
                let party = read.ok().is_some_and(|(r, _)| {
                    r["parties"].as_array().is_some_and(|p| {
                        p.iter()
                            .any(|p| p.as_str().map(normalise_link) == Some(city.clone()))
                    })
                });
                if party {
                    found.push(row);
                }
            }
            Ok(found)
        })
        .await?;
        rows.extend(parties);
        rows.sort_by(|a, b| (&a.summary.kind, &a.id).cmp(&(&b.summary.kind, &b.id)));
        rows.dedup_by(|a, b| a.id == b.id);
    }
    Ok(Json(
        rows.into_iter()
            .map(|r| {
                json!({
                    "id": r.id,
                    "url": format!("automerge:{}", r.id),
                    "kind": r.summary.kind,
                    "title": r.summary.title,
                    "city": r.summary.city,
                    "status": r.summary.status,
                    "date": r.summary.date,
                    "valid": r.summary.valid,
                    "updated_at": r.updated_at,
                })
            })
            .collect(),
    ))
}

/// Accepts a city as a bare id or an `automerge:` URL.
fn normalise_link(s: &str) -> String {
    s.parse::<DocumentId>()
        .map(|id| id.url().to_string())
        .unwrap_or_else(|_| s.to_owned())
}

fn parse_id(id: &str) -> ApiResult<DocumentId> {
    id.parse().map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("`{id}` is not a document id: {e}"),
        )
    })
}

/// Record `id` as stored; for [`blocking`].
fn load(store: &Store, id: DocumentId) -> ApiResult<RecordDoc> {
    store
        .load(id)?
        .map(RecordDoc::from_automerge)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no record {id}")))
}

#[derive(Debug, Deserialize)]
pub struct AtQuery {
    /// Seconds since the epoch, or an RFC 3339 date-time, or a date.
    at: Option<String>,
}

fn parse_time(s: &str) -> ApiResult<i64> {
    if let Ok(secs) = s.parse::<i64>() {
        return Ok(secs);
    }
    if let Ok(t) = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Ok(t.unix_timestamp());
    }
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(d) = time::Date::parse(s, date_format) {
        // The whole day: the record as it stood at the end of it (UTC).
        return Ok(d
            .with_hms(23, 59, 59)
            .map(|t| t.assume_utc().unix_timestamp())
            .unwrap_or_default());
    }
    Err(ApiError::new(
        StatusCode::BAD_REQUEST,
        format!("`{s}` is not a time: give seconds, RFC 3339 or YYYY-MM-DD"),
    ))
}

pub async fn get(
    Member(caller): Member,
    State(hub): State<Arc<Hub>>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<AtQuery>,
) -> ApiResult<Json<Value>> {
    let id = parse_id(&id)?;
    let at = q.at.as_deref().map(parse_time).transpose()?;
    let store = hub.store.clone();
    let (heads, read, conflicts) = reading(&hub, &caller.id, move || -> ApiResult<_> {
        let mut doc = load(&store, id)?;
        if let Some(t) = at {
            doc = doc
                .at_time(t)
                .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        }
        let heads: Vec<String> = doc.heads().iter().map(ToString::to_string).collect();
        if heads.is_empty() {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("record {id} did not exist yet at that time"),
            ));
        }
        Ok((heads, doc.read(), doc.conflicts().len()))
    })
    .await?;
    // The device that created the record (`documents.creator`): a meeting
    // or a report is also that device's to write (`permissions::check_write`).
    let store = hub.store.clone();
    let created_by = blocking(move || store.creator_device(id)).await?;
    match read {
        Ok(record) => Ok(Json(json!({
            "id": id.to_string(),
            "url": id.url().to_string(),
            "heads": heads,
            "record": record,
            "conflicts": conflicts,
            "created_by": created_by,
        }))),
        Err(errors) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "record {id} does not pass validation: {}",
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        )),
    }
}

pub async fn conflicts(
    Member(caller): Member,
    State(hub): State<Arc<Hub>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = parse_id(&id)?;
    let store = hub.store.clone();
    let conflicts = reading(&hub, &caller.id, move || -> ApiResult<_> {
        Ok(json!(load(&store, id)?.conflicts()))
    })
    .await?;
    Ok(Json(conflicts))
}

pub async fn history(
    Member(caller): Member,
    State(hub): State<Arc<Hub>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = parse_id(&id)?;
    let store = hub.store.clone();
    let history = reading(&hub, &caller.id, move || -> ApiResult<_> {
        Ok(load(&store, id)?.history())
    })
    .await?;
    let store = hub.store.clone();
    let origins = blocking(move || store.origins(id)).await?;
    let entries: Vec<Value> = history
        .into_iter()
        .map(|e| {
            let origin = origins.get(&e.hash);
            json!({
                "hash": e.hash,
                "actor": e.actor,
                "seq": e.seq,
                "time": e.time,
                "message": e.message,
                "fields": e.fields,
                "delivered_by": origin.map(|o| json!({"peer_id": o.peer_id, "device": o.device, "device_name": o.device_name, "received_at": o.received_at})),
            })
        })
        .collect();
    Ok(Json(Value::Array(entries)))
}

#[derive(Debug, Deserialize)]
pub struct RecentQuery {
    /// How many changes, newest first; 50 unless given, at most 500.
    limit: Option<u32>,
    /// `writer`: only the newest change of each record by each device.
    per: Option<String>,
}

/// The last changes stored in any record: which record, which device
/// delivered it and when. The client joins them by hash with the record's
/// own history for the fields each change touched.
pub async fn recent_changes(
    _caller: Member,
    State(hub): State<Arc<Hub>>,
    ApiQuery(q): ApiQuery<RecentQuery>,
) -> ApiResult<Json<Value>> {
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let per_writer = match q.per.as_deref() {
        None => false,
        Some("writer") => true,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("`{other}` is not a grouping: give writer, or leave `per` out"),
            ));
        }
    };
    let store = hub.store.clone();
    let rows = blocking(move || store.recent_changes(limit, per_writer)).await?;
    Ok(Json(json!(rows)))
}

/// The records of one kind, for an export, and those that cannot be read
/// (damaged in storage, or no longer a record of the kind's shape): one
/// damaged record costs the coordinator its row, not the whole export.
async fn records_of_kind(hub: &Hub, device: &str, kind: &'static str) -> ApiResult<Readable> {
    let store = hub.store.clone();
    let rows = blocking(move || store.list(Some(kind), None, None)).await?;
    let mut out = Readable::default();
    for row in rows {
        let Ok(id) = row.id.parse::<DocumentId>() else {
            continue;
        };
        let store = hub.store.clone();
        let loaded = reading(hub, device, move || -> ApiResult<_> {
            Ok(store
                .load(id)
                .map(|doc| doc.map(|doc| RecordDoc::from_automerge(doc).record().ok())))
        })
        .await?;
        let readable = match loaded {
            Ok(Some(record)) => record,
            // Gone since it was listed: nothing to export.
            Ok(None) => continue,
            Err(StoreError::Corrupt { reason, .. }) => {
                tracing::warn!(%id, %reason, "a damaged record left out of an export");
                None
            }
            Err(e) => return Err(e.into()),
        };
        match readable {
            Some(record) => out.records.push((id, record)),
            None => out.unreadable.push(id),
        }
    }
    Ok(out)
}

#[derive(Default)]
struct Readable {
    records: Vec<(DocumentId, Record)>,
    unreadable: Vec<DocumentId>,
}

/// The header that names the records an export leaves out, as they cannot
/// be read: a script or a spreadsheet user sees the rows that are there,
/// and is told which are not.
const UNREADABLE_HEADER: &str = "x-twinsync-unreadable";

fn csv_response(
    name: &str,
    writer: csv::Writer<Vec<u8>>,
    unreadable: &[DocumentId],
) -> ApiResult<Response> {
    let bytes = writer
        .into_inner()
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let mut response = (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        // A byte-order mark so spreadsheet programs read Arabic as UTF-8.
        [b"\xEF\xBB\xBF".as_slice(), &bytes].concat(),
    )
        .into_response();
    if !unreadable.is_empty() {
        let urls: Vec<String> = unreadable.iter().map(|id| id.url().to_string()).collect();
        if let Ok(value) = HeaderValue::from_str(&urls.join(" ")) {
            response.headers_mut().insert(UNREADABLE_HEADER, value);
        }
    }
    Ok(response)
}

/// A row of cells, each through `text_cell`: every value comes from a
/// record a device wrote, titles and also sets of free strings such as an
/// agreement's parties, so no cell is trusted to be inert.
fn text_row<const N: usize>(cells: [String; N]) -> [String; N] {
    cells.map(text_cell)
}

/// A cell of text a device wrote. Spreadsheet programs run a cell that
/// starts with `=`, `+`, `-`, `@`, a tab or a carriage return as a formula
/// (`=HYPERLINK(...)` in a title would act in a coordinator's sheet): such
/// a cell starts with `'`, which they show as text.
fn text_cell(text: String) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text
    }
}

fn csv_error(e: csv::Error) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("cannot write CSV: {e}"),
    )
}

pub async fn agreements_csv(
    Member(caller): Member,
    State(hub): State<Arc<Hub>>,
) -> ApiResult<Response> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "url",
        "title_ar",
        "title_fr",
        "title_en",
        "status",
        "parties",
        "domains",
        "approved_on",
        "signed_on",
        "in_force_from",
        "ends_on",
        "open_commitments",
    ])
    .map_err(csv_error)?;
    let read = records_of_kind(&hub, &caller.id, "agreement").await?;
    for (id, record) in read.records {
        let Record::Agreement(a) = record else {
            continue;
        };
        let open = a
            .commitments
            .iter()
            // Kept and dropped commitments are both closed, as the app counts them.
            .filter(|c| !matches!(c.status.as_deref(), Some("done" | "dropped")))
            .count();
        w.write_record(text_row([
            id.url().to_string(),
            a.title.ar.unwrap_or_default(),
            a.title.fr.unwrap_or_default(),
            a.title.en.unwrap_or_default(),
            a.status,
            a.parties.join(" "),
            a.domains.join(" "),
            a.approved_on.unwrap_or_default(),
            a.signed_on.unwrap_or_default(),
            a.in_force_from.unwrap_or_default(),
            a.ends_on.unwrap_or_default(),
            open.to_string(),
        ]))
        .map_err(csv_error)?;
    }
    csv_response("agreements.csv", w, &read.unreadable)
}

pub async fn projects_csv(
    Member(caller): Member,
    State(hub): State<Arc<Hub>>,
) -> ApiResult<Response> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "url",
        "title_ar",
        "title_fr",
        "title_en",
        "status",
        "domain",
        "starts_on",
        "ends_on",
        "owner_city",
        "agreement",
        "milestone_id",
        "milestone",
        "milestone_due",
        "milestone_status",
        "milestone_done_on",
    ])
    .map_err(csv_error)?;
    let read = records_of_kind(&hub, &caller.id, "project").await?;
    for (id, record) in read.records {
        let Record::Project(p) = record else { continue };
        let base = text_row([
            id.url().to_string(),
            p.title.ar.clone().unwrap_or_default(),
            p.title.fr.clone().unwrap_or_default(),
            p.title.en.clone().unwrap_or_default(),
            p.status.clone(),
            p.domain.clone().unwrap_or_default(),
            p.starts_on.clone().unwrap_or_default(),
            p.ends_on.clone().unwrap_or_default(),
            p.owner_city.clone().unwrap_or_default(),
            p.agreement.clone().unwrap_or_default(),
        ]);
        if p.milestones.is_empty() {
            let row: Vec<String> = base
                .iter()
                .cloned()
                .chain(std::iter::repeat_n(String::new(), 5))
                .collect();
            w.write_record(row).map_err(csv_error)?;
        }
        for m in &p.milestones {
            let row: Vec<String> = base
                .iter()
                .cloned()
                .chain(text_row([
                    m.id.clone(),
                    m.title.clone(),
                    m.due.clone().unwrap_or_default(),
                    m.status.clone(),
                    m.done_on.clone().unwrap_or_default(),
                ]))
                .collect();
            w.write_record(row).map_err(csv_error)?;
        }
    }
    csv_response("projects.csv", w, &read.unreadable)
}

pub async fn openapi() -> Json<Value> {
    Json(crate::openapi::document())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test panics to fail

    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::http::StatusCode;

    use super::{ApiError, CODES, reading};
    use crate::hub::{API_READS, Hub};

    /// Many requests reading records at once take turns: no more than
    /// `API_READS` hold a record at a time, and every one is answered.
    #[tokio::test]
    async fn api_reads_of_whole_records_take_turns() {
        let (_dir, hub) = Hub::in_temp_dir();
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        // A request whose load takes `ms`, and answers `n`.
        let read = |n: usize, ms: u64| {
            let (hub, now, most) = (Arc::clone(&hub), Arc::clone(&now), Arc::clone(&most));
            tokio::spawn(async move {
                reading(&hub, &format!("device-{n}"), move || {
                    let at_once = now.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(at_once, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(ms));
                    now.fetch_sub(1, Ordering::SeqCst);
                    Ok::<_, ApiError>(n)
                })
                .await
            })
        };
        let requests: Vec<_> = (0..4 * API_READS).map(|n| read(n, 20)).collect();
        let mut answered = Vec::new();
        for r in requests {
            answered.push(r.await.unwrap().unwrap());
        }
        assert_eq!(answered, (0..4 * API_READS).collect::<Vec<_>>());
        assert!(
            most.load(Ordering::SeqCst) <= API_READS,
            "{most:?} records read at once"
        );

        // Requests whose clients went away while their records load keep
        // their turns until the loads end.
        most.store(0, Ordering::SeqCst);
        let gone: Vec<_> = (0..API_READS).map(|n| read(n, 300)).collect();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        for request in &gone {
            request.abort();
        }
        let next: Vec<_> = (0..2 * API_READS).map(|n| read(n, 10)).collect();
        for request in next {
            request.await.unwrap().unwrap();
        }
        let most = most.load(Ordering::SeqCst);
        assert!(most <= API_READS, "{most} records read at once");
    }

    /// A device with its share of reads waiting or under way is told to
    /// wait, at once; another device is served meanwhile, and the first
    /// reads again once its reads are answered.
    #[tokio::test]
    async fn one_device_may_not_queue_more_than_its_share_of_reads() {
        use crate::hub::API_READS_PER_DEVICE;
        let (_dir, hub) = Hub::in_temp_dir();
        let read = |device: &'static str, ms: u64| {
            let hub = Arc::clone(&hub);
            tokio::spawn(async move {
                reading(&hub, device, move || {
                    std::thread::sleep(std::time::Duration::from_millis(ms));
                    Ok::<_, ApiError>(device)
                })
                .await
            })
        };
        let looping: Vec<_> = (0..API_READS_PER_DEVICE)
            .map(|_| read("looping", 200))
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let refused = read("looping", 0).await.unwrap().unwrap_err();
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(refused.has_code("too-many-reads"));
        // Another device waits its turn, and is answered.
        assert_eq!(read("other", 0).await.unwrap().unwrap(), "other");
        for r in looping {
            assert_eq!(r.await.unwrap().unwrap(), "looping");
        }
        assert_eq!(read("looping", 0).await.unwrap().unwrap(), "looping");
        assert!(hub.api_reads_by_device.is_empty(), "every share given back");
    }

    #[test]
    fn a_full_store_is_said_as_full_not_as_a_database_to_try_again_shortly() {
        use crate::store::StoreError;
        let full = StoreError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        ));
        let said = ApiError::from(full);
        assert_eq!(said.status, StatusCode::INSUFFICIENT_STORAGE);
        assert_eq!(said.code, Some("storage-full"));
        assert!(said.message.contains("--max-db-mib"), "{}", said.message);
        let busy = StoreError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        ));
        let said = ApiError::from(busy);
        assert_eq!(said.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(said.code, Some("database-unavailable"));
    }

    #[test]
    fn the_app_says_every_api_error_code_in_each_of_its_three_languages() {
        let strings = include_str!("../../app/i18n.js");
        let distinct: std::collections::HashSet<_> = CODES.iter().collect();
        assert_eq!(distinct.len(), CODES.len(), "a code listed twice");
        for code in CODES {
            let key = format!("\"api.{code}\":");
            assert_eq!(strings.matches(&key).count(), 3, "{key} in app/i18n.js");
        }
        // And no translation of a code the server no longer sends.
        let translated = strings.matches("\"api.").count();
        assert_eq!(translated, 3 * CODES.len(), "api.* keys in app/i18n.js");
    }
}
