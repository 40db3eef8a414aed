//! The durable store (`[store]`): what the IWF has acknowledged and must not lose across a
//! crash, a restart or an upgrade. Today the sessions answered 200 (their dialog, phase and
//! invitation deadline), their mail threads (addresses and Message-IDs, which replies
//! correlate with), F4's outbound spool (the chat messages answered MSRP 200 and not
//! mailed yet) and F5's inbound spool (the chat mails answered 250 and not delivered yet).
//!
//! SQLite through sqlx, in WAL mode with `synchronous = FULL`: a commit is on disk when it
//! returns, so a 200 OK sent after it names a session that survives `kill -9` and a power
//! cut. The queries are plain SQL that PostgreSQL also takes (the multi-node store).
//! `path = ":memory:"` keeps the same code on an in-memory database (tests; nothing
//! survives the process).
//!
//! Here: the settings, opening (folder, file, pragmas, migrations) and the commit metric.
//! `sessions`: the session and thread rows; `outbound`: F4's spool of chat messages to
//! mail; `inbound`: F5's spool of chat mails to deliver; `writer`: the one writer, committing every write queued in one go.

mod inbound;
mod outbound;
mod sessions;
mod writer;

pub use inbound::{MailDone, MailPart, SpooledMail};
pub use outbound::{SpooledChat, Unspooled};
pub use sessions::{CLOSED, Changes, SessionRow};

use crate::metrics::{self, Histogram};
use serde::Deserialize;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The file the store keeps in its folder.
pub const DATABASE_FILE: &str = "state.db";

/// The store's folder when `[store] path` is not given, in the working directory.
pub const DEFAULT_FOLDER: &str = "iwf-state";

/// `[store] path` for a store in memory only.
pub const MEMORY: &str = ":memory:";

/// `[store]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// The folder of the state (created on first run), or `:memory:` for none; without
    /// it, [`DEFAULT_FOLDER`] in the working directory.
    pub path: Option<PathBuf>,
    /// How long a commit waits for the database's write lock before it fails.
    pub busy_timeout_ms: u64,
    /// SIGTERM: how long the exchanges in flight (INVITEs, ACKs, BYEs, SMTP transactions,
    /// mails being sent) have to finish before the process exits anyway.
    pub drain_timeout_ms: u64,
    /// How long an invitation awaiting the e-mail user's answer stays in memory once it
    /// is stored and idle; then it waits in the store only, behind an index entry, and
    /// comes back when anything comes for it. 0: it never parks.
    pub park_after_ms: u64,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            path: None,
            busy_timeout_ms: 5_000,
            drain_timeout_ms: 20_000,
            park_after_ms: 5_000,
        }
    }
}

impl StoreSettings {
    /// Whether the state lives only in memory (`path = ":memory:"`).
    pub fn in_memory(&self) -> bool {
        self.path.as_deref() == Some(Path::new(MEMORY))
    }

    /// How long an idle invitation stays in memory (`park_after_ms`); `None`: always.
    pub fn park_after(&self) -> Option<Duration> {
        (self.park_after_ms > 0).then(|| Duration::from_millis(self.park_after_ms))
    }

    /// The folder of the state (or `:memory:`).
    pub fn folder(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(DEFAULT_FOLDER))
    }

    /// The volatile store of tests.
    pub fn memory() -> Self {
        Self {
            path: Some(MEMORY.into()),
            ..Self::default()
        }
    }
}

/// Why the store cannot be used; the text names the key and what failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("[store] path = {path}: cannot create the folder: {source}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("[store] path = {path}: cannot open the database: {source}")]
    Open { path: PathBuf, source: sqlx::Error },
    #[error("[store] path = {path}: cannot bring the schema up to date: {source}")]
    Migrate {
        path: PathBuf,
        source: sqlx::migrate::MigrateError,
    },
    #[error("store: {what}: {source}")]
    Query {
        what: &'static str,
        source: sqlx::Error,
    },
    /// A write whose commit failed (the writer's error, shared by its batch).
    #[error("store: commit failed: {0}")]
    Commit(String),
}

impl StoreError {
    fn query(what: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| Self::Query { what, source }
    }
}

/// One write, for the writer's next commit (`writer`); its statements are beside its
/// tables' (`sessions`, `outbound`).
enum Write {
    Changes(Changes),
    Spool(Box<SpooledChat>),
    Unspool(Box<Unspooled>),
    SpoolMail(Box<SpooledMail>),
    MailDone(Box<MailDone>),
}

/// A write and who waits for its commit.
struct Queued {
    write: Write,
    done: oneshot::Sender<Result<(), String>>,
}

/// The open store; cheap to share (`Arc`), safe from any task. Reads go to the pool;
/// writes to the one writer (`writer`), which commits them in groups.
pub struct Store {
    pool: SqlitePool,
    writes: mpsc::UnboundedSender<Queued>,
    /// Where it is, for logs: the database file or `:memory:`.
    location: String,
    commits: Arc<Histogram>,
    /// The outbound spool: chat messages in it, and mail attempts retried.
    spool: SpoolGauges,
    /// The inbound spool: chat mails in it, and deliveries retried.
    inbound: SpoolGauges,
}

#[derive(Default)]
struct SpoolGauges {
    depth: AtomicU64,
    retries: AtomicU64,
}

impl Store {
    /// Opens the store `settings` names, creating its folder and database on first run and
    /// bringing the schema up to date (sqlx migrations, `host/migrations`).
    pub async fn open(settings: &StoreSettings) -> Result<Self, StoreError> {
        let busy = Duration::from_millis(settings.busy_timeout_ms);
        let (options, pool, location) = if settings.in_memory() {
            // One connection that lives as long as the pool: every connection to
            // `:memory:` is a database of its own.
            let options = SqliteConnectOptions::new().in_memory(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
            (options, pool, ":memory:".to_string())
        } else {
            let folder = settings.folder();
            std::fs::create_dir_all(folder).map_err(|source| StoreError::Folder {
                path: folder.to_path_buf(),
                source,
            })?;
            let file = folder.join(DATABASE_FILE);
            let options = SqliteConnectOptions::new()
                .filename(&file)
                .create_if_missing(true)
                // WAL: readers never block the writer; FULL: the WAL is synced at every
                // commit, so a commit that returned survives a power cut (NORMAL would
                // survive a crash of the process only).
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(busy);
            let pool = SqlitePoolOptions::new().max_connections(4);
            (options, pool, file.display().to_string())
        };
        let open_error = |source| StoreError::Open {
            path: settings.folder().to_path_buf(),
            source,
        };
        let pool = pool
            .acquire_timeout(busy.max(Duration::from_secs(1)))
            .connect_with(options.foreign_keys(true))
            .await
            .map_err(open_error)?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate {
                path: settings.folder().to_path_buf(),
                source,
            })?;
        let commits = Arc::new(Histogram::default());
        let writes = writer::spawn(pool.clone(), commits.clone());
        let store = Self {
            pool,
            writes,
            location,
            commits,
            spool: SpoolGauges::default(),
            inbound: SpoolGauges::default(),
        };
        let depth = store.spool_depth().await?;
        store.spool.depth.store(depth, Ordering::Relaxed);
        let depth = store.inbound_depth().await?;
        store.inbound.depth.store(depth, Ordering::Relaxed);
        Ok(store)
    }

    /// Queues `write` for the writer's next commit, without waiting for it (a failure is
    /// logged by the writer).
    fn queue(&self, write: Write) {
        let (done, _) = oneshot::channel();
        if self.writes.send(Queued { write, done }).is_err() {
            tracing::warn!("store writer stopped: a write is lost");
        }
    }

    /// Queues `write` for the writer's next commit; `Ok` once it is on disk.
    async fn write(&self, write: Write) -> Result<(), StoreError> {
        let (done, committed) = oneshot::channel();
        let gone = || StoreError::Commit("the store's writer has stopped".into());
        self.writes
            .send(Queued { write, done })
            .map_err(|_| gone())?;
        committed
            .await
            .map_err(|_| gone())?
            .map_err(StoreError::Commit)
    }

    /// Commits every write queued, then closes the database (its WAL checkpointed).
    pub async fn close(&self) {
        // Behind everything queued before it: when it is done, they are.
        if let Err(e) = self.write(Write::Changes(Changes::default())).await {
            tracing::error!(error = %e, "store: the last writes were not committed");
        }
        self.pool.close().await;
    }

    /// The database file, or `:memory:`.
    pub fn location(&self) -> &str {
        &self.location
    }

    pub fn render_metrics(&self, out: &mut String) {
        metrics::family(
            out,
            "iwf_store_commit_seconds",
            "histogram",
            "Time to commit a change to the store (on disk when it returns: WAL, synchronous=FULL).",
        );
        self.commits
            .render(out, "iwf_store_commit_seconds", "store=\"sqlite\"");
        metrics::family(
            out,
            "iwf_spool_depth",
            "gauge",
            "Messages taken and not yet delivered onwards, by spool.",
        );
        for (spool, gauges) in [("inbound", &self.inbound), ("outbound", &self.spool)] {
            let depth = gauges.depth.load(Ordering::Relaxed);
            out.push_str(&format!("iwf_spool_depth{{spool=\"{spool}\"}} {depth}\n"));
        }
        metrics::family(
            out,
            "iwf_spool_retries_total",
            "counter",
            "Deliveries tried again after a temporary failure, by spool.",
        );
        for (spool, gauges) in [("inbound", &self.inbound), ("outbound", &self.spool)] {
            let retries = gauges.retries.load(Ordering::Relaxed);
            out.push_str(&format!(
                "iwf_spool_retries_total{{spool=\"{spool}\"}} {retries}\n"
            ));
        }
    }
}

/// Now as Unix milliseconds, the store's clock (deadlines survive a restart; `Instant`s do
/// not).
pub fn unix_ms(at: std::time::SystemTime) -> i64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;
