//! The club's records: one Automerge document per record, with a typed API
//! to create, read, edit, validate, inspect conflicts and walk history.
//!
//! A record document's root holds `schema` (a version number), `kind` and
//! the fields of its kind ([`Kind::fields`]). Every container (multilingual
//! map, text, set, list, map) is created together with its parent, so no two
//! writers ever create the same container concurrently and lose one of them;
//! the one exception, a text an older schema stored as a plain string, is
//! in `record/migrate.rs`. List items are marked removed, never deleted
//! ([`schema::ITEM_REMOVED`]).
//! Edits name what they change by path: `/title/fr`, `/minutes`,
//! `/milestones/<item id>/status`.

mod agreement;
mod city;
mod club;
mod conflicts;
mod diff;
mod edit;
mod history;
mod meeting;
mod migrate;
mod path;
mod person;
mod project;
mod read;
mod report;
mod schema;
mod summary;
mod write;

use automerge::{ActorId, Automerge, ChangeHash, ReadDoc};
use serde::{Deserialize, Serialize};

use crate::text::TEXT_ENCODING;

pub use agreement::{Agreement, Commitment, STATUSES as AGREEMENT_STATUSES};
pub use city::{City, TWINNING_STATUSES};
pub use club::{
    Club, CouncilMember, IndexEntry, Unlisted, ever_indexed, ever_indexed_before, index_puts,
    only_listings,
};
pub use conflicts::{Conflict, ConflictValue};
pub use diff::{CONTEXT, FieldChange, Passage, field_changes};
pub use edit::{Commit, Edit, EditError};
pub use history::{HistoryEntry, TouchedFields, changed_paths};
pub use meeting::{AgendaItem, Decision, Meeting};
pub use migrate::{MigrateError, migrate};
pub use person::Person;
pub use project::{
    MILESTONE_STATUSES, Milestone, ProgressNote, Project, STATUSES as PROJECT_STATUSES,
};
pub use read::{LinkMembers, MAX_NESTING, Problem, ValidationError, nested_beyond, schema_version};
pub use report::Report;
pub use schema::{
    DOMAINS, Field, FieldType, Kind, LANGUAGES, Members, SCHEMA_VERSION, UnknownKind,
    describe as describe_schema,
};
pub use summary::{Summary, summarise, summarise_read};

/// Whether a write at `path` lies in a list item whose removal is disputed
/// (removed on one device while another wrote in it): the write keeps the
/// item, settling the dispute, and so changes its `removed` mark too.
pub fn settles_a_removal(doc: &Automerge, path: &str) -> bool {
    let Ok(kind) = read::kind_of(doc) else {
        return false;
    };
    path::item_under(doc, kind, path)
        .is_some_and(|(item, _)| path::removal(doc, &item) == path::Removal::Disputed)
}

/// A short text in the club's three languages; any of them may be missing.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Multilingual {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ar: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub en: Option<String>,
}

impl Multilingual {
    pub fn new(ar: &str, fr: &str, en: &str) -> Self {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Self {
            ar: some(ar),
            fr: some(fr),
            en: some(en),
        }
    }

    /// The text in `lang`, else the first language that has one.
    pub fn best(&self, lang: &str) -> Option<&str> {
        let pick = match lang {
            "ar" => &self.ar,
            "fr" => &self.fr,
            _ => &self.en,
        };
        pick.as_deref()
            .or(self.ar.as_deref())
            .or(self.fr.as_deref())
            .or(self.en.as_deref())
    }
}

/// A way to reach a person or a city hall.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Contact {
    pub id: String,
    pub kind: String,
    pub value: String,
    pub label: Option<String>,
}

/// A record of any kind, typed. Serialises as its fields plus `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Record {
    Club(Club),
    City(City),
    Agreement(Agreement),
    Project(Project),
    Meeting(Meeting),
    Person(Person),
    Report(Report),
}

impl Record {
    pub fn kind(&self) -> Kind {
        match self {
            Record::Club(_) => Kind::Club,
            Record::City(_) => Kind::City,
            Record::Agreement(_) => Kind::Agreement,
            Record::Project(_) => Kind::Project,
            Record::Meeting(_) => Kind::Meeting,
            Record::Person(_) => Kind::Person,
            Record::Report(_) => Kind::Report,
        }
    }

    /// The record's name or title.
    pub fn title(&self) -> &Multilingual {
        match self {
            Record::Club(r) => &r.name,
            Record::City(r) => &r.name,
            Record::Agreement(r) => &r.title,
            Record::Project(r) => &r.title,
            Record::Meeting(r) => &r.title,
            Record::Person(r) => &r.name,
            Record::Report(r) => &r.title,
        }
    }
}

/// Why bytes could not be opened as a record.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not an Automerge document: {0}")]
    Automerge(#[from] automerge::AutomergeError),
    #[error("not a valid record: {}", read::summarise(.0))]
    Invalid(Vec<ValidationError>),
}

/// One record's Automerge document.
#[derive(Debug, Clone)]
pub struct RecordDoc {
    doc: Automerge,
}

impl RecordDoc {
    /// A new record of `kind` with the given fields (JSON, as [`Record`]
    /// serialises them, without `kind`), in one commit.
    pub fn create(
        kind: Kind,
        fields: &serde_json::Value,
        commit: &Commit,
    ) -> Result<Self, EditError> {
        Self::create_in(new_document(), kind, fields, commit)
    }

    /// [`RecordDoc::create`] by a given actor rather than a random one, so
    /// that the record's first change, and its hash, can be made again.
    pub fn create_as(
        actor: ActorId,
        kind: Kind,
        fields: &serde_json::Value,
        commit: &Commit,
    ) -> Result<Self, EditError> {
        Self::create_in(new_document().with_actor(actor), kind, fields, commit)
    }

    fn create_in(
        mut doc: Automerge,
        kind: Kind,
        fields: &serde_json::Value,
        commit: &Commit,
    ) -> Result<Self, EditError> {
        write::create(&mut doc, kind, fields, commit)?;
        Ok(Self { doc })
    }

    /// A new record from a typed value.
    pub fn from_record(record: &Record, commit: &Commit) -> Result<Self, EditError> {
        let mut json = serde_json::to_value(record).map_err(|e| EditError::invalid("/", e))?;
        if let Some(map) = json.as_object_mut() {
            map.remove("kind");
        }
        Self::create(record.kind(), &json, commit)
    }

    /// Opens saved bytes as a record, refusing anything that is not a valid
    /// record with the list of what is wrong.
    pub fn load(bytes: &[u8]) -> Result<Self, LoadError> {
        let doc = load_document(bytes)?;
        let this = Self { doc };
        this.read().map_err(LoadError::Invalid)?;
        Ok(this)
    }

    /// Wraps a document without validating it (it may still be syncing).
    pub fn from_automerge(doc: Automerge) -> Self {
        Self { doc }
    }

    pub fn doc(&self) -> &Automerge {
        &self.doc
    }

    pub fn doc_mut(&mut self) -> &mut Automerge {
        &mut self.doc
    }

    pub fn into_automerge(self) -> Automerge {
        self.doc
    }

    pub fn heads(&self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    /// The record's kind, if the document says a valid one.
    pub fn kind(&self) -> Option<Kind> {
        read::kind_of(&self.doc).ok()
    }

    /// The record as JSON (`kind` plus its fields), or every reason it is invalid.
    pub fn read(&self) -> Result<serde_json::Value, Vec<ValidationError>> {
        read::read(&self.doc)
    }

    /// The record, typed.
    pub fn record(&self) -> Result<Record, Vec<ValidationError>> {
        let json = self.read()?;
        serde_json::from_value(json).map_err(|e| {
            vec![read::error(
                "/",
                Problem::WrongType,
                format!("does not fit its kind: {e}"),
            )]
        })
    }

    /// Applies `edits` atomically as one change; nothing is written if any fails.
    pub fn edit(
        &mut self,
        commit: &Commit,
        edits: &[Edit],
    ) -> Result<Option<ChangeHash>, EditError> {
        edit::apply(&mut self.doc, commit, edits)
    }

    /// Every field with concurrent values, as two delegates left it.
    pub fn conflicts(&self) -> Vec<Conflict> {
        document_conflicts(&self.doc)
    }

    /// Resolves a conflict (or sets any scalar field) by writing `value`.
    pub fn resolve(
        &mut self,
        commit: &Commit,
        path: &str,
        value: serde_json::Value,
    ) -> Result<Option<ChangeHash>, EditError> {
        self.edit(
            commit,
            &[Edit::Set {
                path: path.to_owned(),
                value,
            }],
        )
    }

    /// The change log, oldest first.
    pub fn history(&self) -> Vec<HistoryEntry> {
        document_history(&self.doc)
    }

    /// The record as it stood at `heads`.
    pub fn at_heads(&self, heads: &[ChangeHash]) -> Result<RecordDoc, automerge::AutomergeError> {
        Ok(Self {
            doc: self.doc.fork_at(heads)?,
        })
    }

    /// The record as it stood at `time` (seconds since the epoch), by the
    /// timestamps its writers put on their changes.
    pub fn at_time(&self, time: i64) -> Result<RecordDoc, automerge::AutomergeError> {
        document_at_time(&self.doc, time)
    }

    pub fn save(&self) -> Vec<u8> {
        self.doc.save()
    }
}

/// Reads any document as a record, without taking it (see [`RecordDoc::read`]).
pub fn read_document(doc: &Automerge) -> Result<serde_json::Value, Vec<ValidationError>> {
    read::read(doc)
}

/// The record's fields as far as they read, beside what is wrong with the
/// rest: for showing a record that [`read_document`] refuses. An error only
/// when its kind or schema version cannot be read.
pub fn read_document_leniently(
    doc: &Automerge,
) -> Result<(serde_json::Value, Vec<ValidationError>), Vec<ValidationError>> {
    read::read_leniently(doc)
}

/// Every field with concurrent values, without taking the document (see
/// [`RecordDoc::conflicts`]).
pub fn document_conflicts(doc: &Automerge) -> Vec<Conflict> {
    conflicts::find(doc)
}

/// The change log, oldest first, without taking the document (see
/// [`RecordDoc::history`]).
pub fn document_history(doc: &Automerge) -> Vec<HistoryEntry> {
    history::log(doc, &mut TouchedFields::default())
}

/// The change log, oldest first, finding what each change touched only
/// for changes `known` does not hold yet, and keeping it there.
pub fn document_history_known(doc: &Automerge, known: &mut TouchedFields) -> Vec<HistoryEntry> {
    history::log(doc, known)
}

/// The document as it stood at `time`, without taking it (see
/// [`RecordDoc::at_time`]).
pub fn document_at_time(
    doc: &Automerge,
    time: i64,
) -> Result<RecordDoc, automerge::AutomergeError> {
    Ok(RecordDoc {
        doc: doc.fork_at(&history::heads_at_time(doc, time))?,
    })
}

/// The text of the text field at `path` (`/minutes`,
/// `/milestones/<id>/notes`), read without the rest of the record: what a
/// splice there counts from. `None` if `path` names no text field.
pub fn document_text(doc: &Automerge, path: &str) -> Option<String> {
    let kind = read::kind_of(doc).ok()?;
    match path::locate_text(doc, kind, path).ok()?.2 {
        path::Stored::Text(text) => doc.text(&text).ok(),
        path::Stored::Plain(s) => Some(s),
        path::Stored::Absent => Some(String::new()),
    }
}

/// The kind a document says it is, if it says a valid one.
pub fn kind_of_document(doc: &Automerge) -> Option<Kind> {
    read::kind_of(doc).ok()
}

/// The kind a document says it is, as written, one no version knows
/// included.
pub fn kind_as_written(doc: &Automerge) -> Option<String> {
    read::kind_as_written(doc)
}

/// A new empty document with the system's text encoding.
pub fn new_document() -> Automerge {
    Automerge::new_with_encoding(TEXT_ENCODING)
}

/// Loads a document with the system's text encoding.
pub fn load_document(bytes: &[u8]) -> Result<Automerge, automerge::AutomergeError> {
    refuse_bundles(bytes)?;
    Automerge::load_with_options(
        bytes,
        automerge::LoadOptions::new().text_encoding(TEXT_ENCODING),
    )
}

/// Checks that stored bytes are whole Automerge chunks (a saved document or
/// changes), without the document they belong to. `load_incremental` into
/// a non-empty document skips a damaged chunk with only a log line; call
/// this first to find out.
pub fn check_chunk(bytes: &[u8]) -> Result<(), automerge::AutomergeError> {
    refuse_bundles(bytes)?;
    match Automerge::load_with_options(
        bytes,
        automerge::LoadOptions::new()
            .text_encoding(TEXT_ENCODING)
            .on_partial_load(automerge::OnPartialLoad::Error)
            .verification_mode(automerge::VerificationMode::DontCheck),
    ) {
        // Changes whose dependencies live in other chunks parsed whole.
        Ok(_) | Err(automerge::AutomergeError::MissingDeps) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Checks that `snapshot`, a whole save of a document standing at `heads`,
/// loads back as that document. A compaction replaces a record's chunks
/// only with such a snapshot: Automerge has saved documents it could not
/// load again (RELIABILITY.md), and the chunks replaced may be the only
/// copy of what they hold. The error says why, for a log line.
pub fn loads_back(snapshot: &[u8], heads: &[ChangeHash]) -> Result<(), String> {
    let mut back = new_document();
    refuse_panics(|| {
        check_chunk(snapshot)?;
        back.load_incremental(snapshot)
    })
    .map_err(|e| e.to_string())?;
    let mut loaded = back.get_heads();
    let mut heads = heads.to_vec();
    loaded.sort();
    heads.sort();
    if loaded != heads {
        return Err(format!(
            "it loads back with {} heads other than the record's {}",
            loaded.len(),
            heads.len()
        ));
    }
    Ok(())
}

/// Loads a record stored as several chunks in one pass, refusing any
/// damage (where `load_incremental` would skip a damaged chunk quietly).
/// On an error, check the chunks one by one with [`check_chunk`] to find
/// which.
pub fn load_chunks(chunks: &[Vec<u8>]) -> Result<Automerge, automerge::AutomergeError> {
    let mut whole = Vec::with_capacity(chunks.iter().map(Vec::len).sum());
    for chunk in chunks {
        refuse_bundles(chunk)?;
        whole.extend_from_slice(chunk);
    }
    Automerge::load_with_options(
        &whole,
        automerge::LoadOptions::new()
            .text_encoding(TEXT_ENCODING)
            .on_partial_load(automerge::OnPartialLoad::Error),
    )
}

/// The chunk type byte of a saved document (see [`chunks`]).
pub const DOCUMENT_CHUNK: u8 = 0;

/// Applies received Automerge bytes (changes, or a saved document) to
/// `doc`, as `load_incremental` does. A peer that lacks over a third of a
/// record is sent the whole record saved; `load_incremental` takes such a
/// document apart into changes and applies them, where loading it costs a
/// fraction (3.8 ms against 1.2 ms for a report of 250 changes). So a saved
/// document that holds every change `doc` holds takes its place, with
/// `doc`'s actor; one that brings more changes than it lacks takes `doc`'s
/// others in and then its place (2.3 ms against 3.3 ms with 50 of 250
/// lacking); any other is applied as `load_incremental` would. Changes
/// before and after a saved document go to `load_incremental` in runs of
/// their own, so a damaged change chunk whose header reads ends only its
/// run, not what follows; bytes whose header does not read end the walk,
/// and everything from them on goes to `load_incremental`. A saved document
/// loaded here that does not load whole is an error, where
/// `load_incremental` would keep what it could read and say nothing.
pub fn apply_received(doc: &mut Automerge, bytes: &[u8]) -> Result<(), automerge::AutomergeError> {
    if doc.is_empty() && loads_a_document_with_authors(bytes) {
        let mut loaded = doc.clone();
        loaded.load_incremental(bytes)?;
        refuse_late_authors(&loaded)?;
        *doc = loaded;
        return Ok(());
    }
    if doc.is_empty() || !chunks(bytes).any(|(kind, _)| kind == DOCUMENT_CHUNK) {
        doc.load_incremental(bytes)?;
        return Ok(());
    }
    // The chunks lie end to end; `pending` is where those not yet
    // applied begin.
    let (mut pending, mut end) = (0, 0);
    for (kind, chunk) in chunks(bytes) {
        let Some(chunk) = chunk else { break };
        let start = end;
        end += chunk.len();
        if kind == DOCUMENT_CHUNK {
            if start > pending {
                doc.load_incremental(&bytes[pending..start])?;
            }
            replace_or_apply(doc, chunk)?;
            pending = end;
        }
    }
    // The rest, whole chunks or not, goes to Automerge as it would have.
    if pending < bytes.len() {
        doc.load_incremental(&bytes[pending..])?;
    }
    Ok(())
}

/// Whether `entry` (one entry of a sync message's chunk list) is nothing
/// but saved documents.
pub fn only_documents(entry: &[u8]) -> bool {
    let mut end = 0;
    for (kind, chunk) in chunks(entry) {
        match chunk {
            Some(chunk) if kind == DOCUMENT_CHUNK => end += chunk.len(),
            _ => return false,
        }
    }
    end > 0 && end == entry.len()
}

/// Loads `saved` in place of `doc` if it holds all of `doc`, or if it lacks
/// fewer of `doc`'s changes than it brings (those merged in first);
/// otherwise, or if `doc` has changes waiting for their dependencies,
/// applies it as `load_incremental` does. Which side lacks fewer is which
/// side has more changes (each lacks the other's count less those both
/// hold), and a saved document's header tells how many it has: one no
/// larger than `doc`, naming a head `doc` lacks, is not loaded first only
/// to be taken apart again. Its header's heads are not checked against
/// the changes it holds, as `load_incremental` does not check them either:
/// `doc` ends with the heads of the changes applied.
fn replace_or_apply(doc: &mut Automerge, saved: &[u8]) -> Result<(), automerge::AutomergeError> {
    if !doc.get_missing_deps(&[]).is_empty() {
        doc.load_incremental(saved)?;
        return Ok(());
    }
    // Only for a document naming a head `doc` lacks: Automerge reads such a
    // document whole, where it would skip one whose heads it holds unread
    // (and a damaged one must still be refused).
    let read = saved_header(saved);
    let may_carry_authors = read.as_ref().is_none_or(|header| header.extra_bytes);
    let header = read.filter(|header| !holds_all(doc, &header.heads));
    if let Some(header) = &header
        && holds_at_least(doc, header.changes)
    {
        // A copy takes it (cheap: Automerge shares what it can), and
        // must then hold every head it names, or it did not load whole.
        let mut merged = doc.clone();
        merged.load_incremental(saved)?;
        if !holds_all(&merged, &header.heads) {
            return Err(automerge::AutomergeError::EncodingError(
                "a saved document that does not load whole".into(),
            ));
        }
        *doc = merged;
        return Ok(());
    }
    let mut loaded = Automerge::load_with_options(
        saved,
        automerge::LoadOptions::new()
            .text_encoding(doc.text_encoding())
            .on_partial_load(automerge::OnPartialLoad::Error),
    )?;
    if may_carry_authors {
        refuse_late_authors(&loaded)?;
    }
    // It holds all of `doc` when it holds `doc`'s heads: the common case,
    // decided without listing either side's changes.
    if holds_all(&loaded, &doc.get_heads()) {
        *doc = loaded.with_actor(doc.get_actor().clone());
        return Ok(());
    }
    // `merge` rebuilds and applies the changes the other side lacks. Which
    // side has more the header told, if it was read above (`doc` fewer);
    // otherwise they are counted.
    if header.is_none() && doc.get_changes_meta(&[]).len() >= loaded.get_changes_meta(&[]).len() {
        doc.merge(&mut loaded)?;
        return Ok(());
    }
    loaded.merge(doc)?;
    *doc = loaded.with_actor(doc.get_actor().clone());
    Ok(())
}

/// Whether `doc` has at least `count` changes: first from the sequence
/// numbers of its heads (a head's is how many changes its author made up
/// to it), which need no pass over the document, then by listing them.
fn holds_at_least(doc: &Automerge, count: usize) -> bool {
    let mut by_author: Vec<(automerge::ActorId, u64)> = Vec::new();
    for head in doc.get_heads() {
        let Some(change) = doc.get_change_meta_by_hash(&head) else {
            continue;
        };
        match by_author.iter_mut().find(|(a, _)| *a == *change.actor) {
            Some((_, seq)) => *seq = (*seq).max(change.seq),
            None => by_author.push((change.actor.into_owned(), change.seq)),
        }
    }
    let at_least = by_author
        .iter()
        .fold(0u64, |sum, (_, seq)| sum.saturating_add(*seq));
    at_least >= count as u64 || doc.get_changes_meta(&[]).len() >= count
}

/// What a saved document's chunk says of itself before anything in it is
/// decompressed: its heads, how many changes it holds, and whether any of
/// them has extra bytes (where Automerge keeps a change's author).
#[derive(Debug, PartialEq)]
struct SavedHeader {
    heads: Vec<ChangeHash>,
    changes: usize,
    extra_bytes: bool,
}

/// A change column's spec without its deflate bit: the extra bytes'
/// values (column 5, of raw values).
const EXTRA_VALUES_COLUMN: u64 = 5 << 4 | 7;
/// The bit a saved document sets on a column's spec when it deflated it.
pub(crate) const DEFLATE_BIT: u64 = 8;

/// Whether a document loaded from `saved` may hold a change with an
/// author: yes unless its header reads and shows no extra bytes at all.
fn may_carry_authors(saved: &[u8]) -> bool {
    saved_header(saved).is_none_or(|header| header.extra_bytes)
}

/// Whether `bytes`, loaded into an empty document, load a saved document
/// that may hold a change with an author: Automerge loads a first chunk
/// that is a saved document whole, and takes any later one apart into
/// changes, which it checks as it applies them.
pub fn loads_a_document_with_authors(bytes: &[u8]) -> bool {
    match chunks(bytes).next() {
        Some((DOCUMENT_CHUNK, saved)) => saved.is_none_or(may_carry_authors),
        _ => false,
    }
}

/// Refuses `loaded`, a document loaded from received bytes, if one of its
/// changes carries an author but is not its author's first. Applying such
/// a change fails (or, in Automerge 0.12, panics); loading a saved document
/// holding one does not check it. The record would then be stored with it
/// and fail to load, since loading applies the changes stored after the
/// first chunk. (Sequence numbers Automerge checks when it loads: each
/// author's run from 1 in turn.) Automerge writes an author as a footer in
/// the change's extra bytes: the footer's kind (1, an author), its length,
/// then the author's bytes.
pub fn refuse_late_authors(loaded: &Automerge) -> Result<(), automerge::AutomergeError> {
    const AUTHOR_FOOTER: u64 = 1;
    let carries_author = |mut extra: &[u8]| {
        read_leb128(&mut extra) == Some(AUTHOR_FOOTER)
            && read_leb128(&mut extra).is_some_and(|len| len <= extra.len() as u64)
    };
    for change in loaded.get_changes_meta(&[]) {
        if change.seq != 1 && carries_author(&change.extra) {
            return Err(automerge::AutomergeError::EncodingError(format!(
                "a saved document whose change {} names an author, which only an author's first change may",
                change.hash
            )));
        }
    }
    Ok(())
}

/// Reads a saved document's header (Automerge's binary format: actors,
/// heads, the change and op columns' sizes, their data, then each head's
/// index among the changes). Changes are stored in causal order, so the
/// last is a head: the highest index, plus one, is how many there are.
/// `None` if any of it does not read (an older encoder may leave out the
/// indices), for the document to be loaded and judged as a whole.
fn saved_header(chunk: &[u8]) -> Option<SavedHeader> {
    let layout = document_layout(chunk_body(chunk)?).ok()?;
    let extra_bytes = layout.columns.iter().any(|&(op, spec, data)| {
        !op && spec & !DEFLATE_BIT == EXTRA_VALUES_COLUMN && !data.is_empty()
    });
    let mut indices = layout.head_indices;
    let mut last = None;
    for _ in 0..layout.heads.len() {
        last = last.max(Some(read_leb128(&mut indices)?));
    }
    if !indices.is_empty() {
        return None;
    }
    let changes = usize::try_from(last?).ok()?.checked_add(1)?;
    Some(SavedHeader {
        heads: layout.heads,
        changes,
        extra_bytes,
    })
}

/// A chunk's body: past the magic bytes, checksum, chunk type and the
/// body's length, and only as long as that length says.
pub(crate) fn chunk_body(chunk: &[u8]) -> Option<&[u8]> {
    let mut body = chunk.get(9..)?;
    let len = usize::try_from(read_leb128(&mut body)?).ok()?;
    body.get(..len)
}

/// The most columns a chunk may declare; Automerge writes fewer than 30.
pub(crate) const MAX_COLUMNS: u64 = 64;

/// `lists` lists of column specs and lengths, each a count first, as
/// change and saved-document chunks declare their columns; at most
/// [`MAX_COLUMNS`] in all. Each with the index of its list.
pub(crate) fn column_specs(
    rest: &mut &[u8],
    lists: usize,
) -> Result<Vec<(usize, u64, u64)>, String> {
    let unreadable = || "a chunk whose columns do not read".to_owned();
    let mut columns = Vec::new();
    for list in 0..lists {
        let count = read_leb128(rest).ok_or_else(unreadable)?;
        if count > MAX_COLUMNS - columns.len() as u64 {
            return Err(format!("a chunk declaring over {MAX_COLUMNS} columns"));
        }
        for _ in 0..count {
            let spec = read_leb128(rest).ok_or_else(unreadable)?;
            let len = read_leb128(rest).ok_or_else(unreadable)?;
            columns.push((list, spec, len));
        }
    }
    Ok(columns)
}

/// A saved document's body laid out (Automerge's binary format): its
/// heads, its change columns then its op columns, each as (whether an op
/// column, spec, data), and what follows, each head's index among the
/// changes. The header is read and the columns found; nothing in them is.
pub(crate) struct DocumentLayout<'a> {
    pub(crate) heads: Vec<ChangeHash>,
    pub(crate) columns: Vec<(bool, u64, &'a [u8])>,
    pub(crate) head_indices: &'a [u8],
}

/// Lays out a saved document's body (see [`chunk_body`]): actors, heads,
/// the change and the op columns' specs and lengths, their data, the
/// heads' indices.
pub(crate) fn document_layout(body: &[u8]) -> Result<DocumentLayout<'_>, String> {
    let unreadable = || "a saved document whose header does not read".to_owned();
    let mut rest = body;
    let read = |rest: &mut &[u8]| read_leb128(rest).ok_or_else(unreadable);
    for _ in 0..read(&mut rest)? {
        let actor = usize::try_from(read(&mut rest)?).map_err(|_| unreadable())?;
        rest = rest.get(actor..).ok_or_else(unreadable)?;
    }
    let mut heads = Vec::new();
    for _ in 0..read(&mut rest)? {
        let (hash, after) = rest.split_at_checked(32).ok_or_else(unreadable)?;
        heads.push(ChangeHash::try_from(hash).map_err(|_| unreadable())?);
        rest = after;
    }
    let mut columns = Vec::new();
    for (list, spec, len) in column_specs(&mut rest, 2)? {
        let len = usize::try_from(len).map_err(|_| unreadable())?;
        let (data, after) = rest.split_at_checked(len).ok_or_else(unreadable)?;
        columns.push((list == 1, spec, data));
        rest = after;
    }
    Ok(DocumentLayout {
        heads,
        columns,
        head_indices: rest,
    })
}

/// Runs `apply`, which changes a scratch copy of a document, and turns a
/// panic inside Automerge into an error. Automerge 0.12 asserts, where it
/// should refuse, on some well-formed changes whose dependencies are met:
/// one whose sequence number skips past its author's last change, or one
/// carrying an author past its author's first change. Any client can send
/// such bytes (the `hostile_sync` tests build them). The copy may be left
/// half-changed: drop it. In a build that aborts on panic (the browser's),
/// this catches nothing.
pub fn refuse_panics<T>(
    apply: impl FnOnce() -> Result<T, automerge::AutomergeError>,
) -> Result<T, automerge::AutomergeError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(apply)).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(automerge::AutomergeError::EncodingError(format!(
            "changes Automerge cannot apply (it failed with: {why})"
        )))
    })
}

/// The chunk type byte of Automerge's experimental "bundle" format.
const BUNDLE_CHUNK: u8 = 3;

/// Refuses bytes holding a "bundle" chunk. Automerge 0.12 panics, rather
/// than returning an error, on some damaged bundles (found by the
/// `document_load` and `sync_engine` fuzz targets), and nothing twinsync
/// or automerge-repo writes is a bundle: saves are document and change
/// chunks, sync messages carry changes. Walks the chunk headers only
/// (magic, checksum, type, LEB128 length); anything else malformed is left
/// for Automerge to refuse.
pub fn refuse_bundles(bytes: &[u8]) -> Result<(), automerge::AutomergeError> {
    if chunks(bytes).any(|(kind, _)| kind == BUNDLE_CHUNK) {
        return Err(automerge::AutomergeError::EncodingError(
            "bundle chunks are not accepted: send changes or a saved document".into(),
        ));
    }
    Ok(())
}

/// The chunks of Automerge bytes, as their headers tell (magic, checksum,
/// type, LEB128 length): each chunk's type, and the whole chunk, header
/// included, if its length could be read and fits. Ends at the first header
/// that is not whole; nothing past the headers is checked.
pub fn chunks(bytes: &[u8]) -> impl Iterator<Item = (u8, Option<&[u8]>)> {
    const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
    let mut rest = Some(bytes);
    std::iter::from_fn(move || {
        let bytes = rest.take()?;
        if bytes.len() <= 8 || bytes[..4] != MAGIC {
            return None;
        }
        let kind = bytes[8];
        let mut length = &bytes[9..];
        let Some(len) = read_leb128(&mut length) else {
            return Some((kind, None));
        };
        let at = bytes.len() - length.len();
        let chunk = usize::try_from(len)
            .ok()
            .and_then(|l| at.checked_add(l))
            .and_then(|end| Some((bytes.get(..end)?, &bytes[end..])));
        match chunk {
            Some((chunk, after)) => {
                rest = Some(after);
                Some((kind, Some(chunk)))
            }
            None => Some((kind, None)),
        }
    })
}

/// The changes `bytes` hold one after the other (as stored, or as one
/// entry of a sync message carries them), in that order; `None` unless
/// every chunk is a change that parses and together they are all of the
/// bytes.
pub fn changes_in(bytes: &[u8]) -> Option<Vec<automerge::Change>> {
    let mut out = Vec::new();
    let mut length = 0;
    for (kind, chunk) in chunks(bytes) {
        let chunk = chunk?;
        if kind == DOCUMENT_CHUNK {
            return None;
        }
        length += chunk.len();
        // Peer bytes: a panic in Automerge's parser is bytes that do not
        // parse, as everywhere else peer bytes reach Automerge.
        let parsed = std::panic::catch_unwind(|| automerge::Change::from_bytes(chunk.to_vec()));
        out.push(parsed.ok()?.ok()?);
    }
    (length == bytes.len()).then_some(out)
}

/// Reads one unsigned LEB128 number from the front of `input`, at most ten
/// bytes of it (64 bits), and moves `input` past it.
pub(crate) fn read_leb128(input: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (i, &byte) in input.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *input = &input[i + 1..];
            return Some(value);
        }
    }
    None
}

/// Whether `doc` holds every change in `heads`.
///
/// Automerge 0.12 has no public "has this change" but
/// `get_change_meta_by_hash`, which decodes the change's metadata from the
/// change graph's columns: the server asked it for 50 peers on every batch
/// of a busy meeting, 8 % of its time. `get_missing_deps` looks hashes up
/// in the graph's index instead, and with no change waiting in Automerge's
/// queue for its dependencies (exactly when `get_missing_deps(&[])` is
/// empty) it names just the hashes not held. A queued change it would take
/// as held, so while one waits the metadata decides.
pub(crate) fn holds_all(doc: &Automerge, heads: &[ChangeHash]) -> bool {
    if doc.get_missing_deps(&[]).is_empty() {
        doc.get_missing_deps(heads).is_empty()
    } else {
        heads
            .iter()
            .all(|h| doc.get_change_meta_by_hash(h).is_some())
    }
}

/// Whether `doc` holds the change `hash`: [`holds_all`] for one.
pub(crate) fn holds(doc: &Automerge, hash: &ChangeHash) -> bool {
    holds_all(doc, std::slice::from_ref(hash))
}

/// Makes a fresh random id for a list item.
pub fn new_item_id() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the platform gives random bytes");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use automerge::{ActorId, transaction::Transactable};
    use proptest::prelude::*;

    /// A record written by `writers` delegates, each from the first's
    /// copy, with their edits (Arabic and French) in turn; every other
    /// writer names an author.
    fn record(writers: &[usize]) -> Automerge {
        let mut doc = new_document();
        let mut copies: Vec<Automerge> = Vec::new();
        for (who, &edits) in writers.iter().enumerate() {
            let author = (who % 2 == 1).then(|| automerge::Author::from(vec![who as u8; 4]));
            let mut copy = doc
                .fork()
                .with_actor(ActorId::from(vec![who as u8 + 1; 16]))
                .with_author(author);
            for n in 0..edits {
                let mut tx = copy.transaction();
                // Each writer's own words: Automerge keeps no change that
                // writes what is there already.
                tx.put(
                    automerge::ROOT,
                    format!("note {n}"),
                    format!("محضر — compte rendu {who}"),
                )
                .unwrap();
                tx.commit();
            }
            if who == 0 {
                doc = copy.clone();
            }
            copies.push(copy);
        }
        for mut copy in copies {
            doc.merge(&mut copy).unwrap();
        }
        doc
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The header tells what Automerge finds when it loads the document.
        #[test]
        fn a_saved_header_tells_the_heads_and_how_many_changes(
            writers in proptest::collection::vec(0usize..40, 1..5),
        ) {
            let doc = record(&writers);
            let saved = doc.save();
            let header = saved_header(&saved);
            let loaded = Automerge::load(&saved).unwrap();
            if loaded.get_heads().is_empty() {
                // Nothing written: no head, so no index to count by.
                prop_assert_eq!(header, None);
            } else {
                let header = header.expect("the header reads");
                let mut heads = header.heads.clone();
                heads.sort();
                let mut want = loaded.get_heads();
                want.sort();
                prop_assert_eq!(heads, want);
                let changes = loaded.get_changes_meta(&[]);
                prop_assert_eq!(header.changes, changes.len());
                prop_assert_eq!(header.extra_bytes, changes.iter().any(|c| !c.extra.is_empty()));
            }
            // Cut anywhere, it reads as nothing rather than as something else.
            for cut in (0..saved.len()).step_by(7) {
                prop_assert_eq!(saved_header(&saved[..cut]), None);
            }
        }
    }

    #[test]
    fn a_saved_header_tells_whether_a_change_names_an_author() {
        let header = |writers: &[usize]| saved_header(&record(writers).save()).unwrap();
        assert!(!header(&[3]).extra_bytes);
        assert!(header(&[3, 2]).extra_bytes);
        // Named in a first change only, as Automerge writes it.
        assert!(refuse_late_authors(&record(&[3, 2])).is_ok());
    }

    #[test]
    fn a_copy_counts_its_changes_by_its_heads_and_then_by_listing() {
        let doc = record(&[3, 4, 5]);
        let total = doc.get_changes_meta(&[]).len();
        assert!(holds_at_least(&doc, total));
        assert!(!holds_at_least(&doc, total + 1));
    }

    #[test]
    fn a_change_waiting_for_its_dependencies_is_not_held() {
        let mut doc = new_document();
        let mut tx = doc.transaction();
        tx.put(automerge::ROOT, "ville", "سمارة").unwrap();
        tx.commit();
        let first = doc.get_heads()[0];
        let mut tx = doc.transaction();
        tx.put(automerge::ROOT, "ville", "Smara").unwrap();
        tx.commit();
        let second = doc.get_heads()[0];
        let mut copy = new_document();
        let mut tx = copy.transaction();
        tx.put(automerge::ROOT, "pays", "المغرب").unwrap();
        tx.commit();
        let own = copy.get_heads()[0];
        let later = doc.get_change_by_hash(&second).unwrap();
        copy.apply_changes([later]).unwrap();
        // Queued: Automerge has it, but not applied.
        assert_eq!(copy.get_missing_deps(&[]), vec![first]);
        assert!(!holds(&copy, &second));
        assert!(!holds(&copy, &first));
        assert!(holds_all(&copy, &[]));
        // What is applied stays held while something waits.
        assert!(holds(&copy, &own));
        copy.apply_changes([doc.get_change_by_hash(&first).unwrap()])
            .unwrap();
        assert!(holds_all(&copy, &[first, second]));
        assert!(holds(&doc, &second));
        assert!(!holds_all(&doc, &[first, ChangeHash([7; 32])]));
    }

    #[test]
    fn a_snapshot_loads_back_only_whole_and_as_the_document_it_was_saved_from() {
        let doc = record(&[3, 2]);
        let heads = doc.get_heads();
        let whole = doc.save();
        assert_eq!(loads_back(&whole, &heads), Ok(()));
        // Cut short, as a save Automerge could not load again would be.
        let why = loads_back(&whole[..whole.len() / 2], &heads).unwrap_err();
        assert!(!why.is_empty());
        // Whole, but of an older state: its heads are not the record's.
        let older = record(&[3]);
        let why = loads_back(&older.save(), &heads).unwrap_err();
        assert!(why.contains("heads other than"), "{why}");
        // Nothing at all loads as an empty record, which no record is.
        assert!(loads_back(&[], &heads).is_err());
    }
}
