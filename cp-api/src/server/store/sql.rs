//! The SQL store: one implementation for SQLite (the default: one file, WAL mode) and
//! PostgreSQL (several control-plane replicas on one database), through sqlx's `Any` driver.
//! Every statement is written in the SQL both accept (`ON CONFLICT` upserts, `RETURNING`,
//! aliased subqueries, 64-bit integers throughout); where they differ, the [`Dialect`] says
//! so, and each keeps its own migrations, embedded in the binary.

use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use signet_audit::receiver::Tip;
use signet_ca::BoxFuture;
use signet_ca::token::{TokenRecord, TokenStoreError};
use signet_spiffe::SpiffeId;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use super::{
    AuditBatch, AuditQuery, AuditRow, CaWrite, DenyEntry, DutyLease, Federation, FetchedKeys,
    IssuedCertificate, Lease, Member, NewPolicyVersion, NewShadow, OperatorAction, PolicyVersion,
    ReplicaRow, ServiceLabels, ShadowCandidate, ShadowFlow, Store, StoreError, StoredAuthn,
    StoredCa, StoredFile, StoredTraffic, VersionWithFiles, WorkloadSelectors, from_unix_ms,
    unix_ms,
};

/// SQLite's migrations in order; each runs once, in its own transaction.
const SQLITE_MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../../../migrations/sqlite/0002_audit.sql")),
    (
        3,
        include_str!("../../../migrations/sqlite/0003_members.sql"),
    ),
    (
        4,
        include_str!("../../../migrations/sqlite/0004_labels_and_gate.sql"),
    ),
    (
        5,
        include_str!("../../../migrations/sqlite/0005_shadow.sql"),
    ),
    (6, include_str!("../../../migrations/sqlite/0006_authn.sql")),
    (
        7,
        include_str!("../../../migrations/sqlite/0007_traffic.sql"),
    ),
    (
        8,
        include_str!("../../../migrations/sqlite/0008_member_weight.sql"),
    ),
    (
        9,
        include_str!("../../../migrations/sqlite/0009_member_labels.sql"),
    ),
    (
        10,
        include_str!("../../../migrations/sqlite/0010_member_service_address.sql"),
    ),
    (
        11,
        include_str!("../../../migrations/sqlite/0011_changes.sql"),
    ),
    (
        12,
        include_str!("../../../migrations/sqlite/0012_member_lease.sql"),
    ),
    (
        13,
        include_str!("../../../migrations/sqlite/0013_replicas.sql"),
    ),
    (
        14,
        include_str!("../../../migrations/sqlite/0014_ca_and_duties.sql"),
    ),
    (
        15,
        include_str!("../../../migrations/sqlite/0015_audit_chains.sql"),
    ),
    (
        16,
        include_str!("../../../migrations/sqlite/0016_workload_selectors.sql"),
    ),
    (
        17,
        include_str!("../../../migrations/sqlite/0017_federations.sql"),
    ),
];

/// PostgreSQL's migrations in order: its schema started where SQLite's had arrived.
const POSTGRES_MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        include_str!("../../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        include_str!("../../../migrations/postgres/0002_changes.sql"),
    ),
    (
        3,
        include_str!("../../../migrations/postgres/0003_member_lease.sql"),
    ),
    (
        4,
        include_str!("../../../migrations/postgres/0004_replicas.sql"),
    ),
    (
        5,
        include_str!("../../../migrations/postgres/0005_ca_and_duties.sql"),
    ),
    (
        6,
        include_str!("../../../migrations/postgres/0006_audit_chains.sql"),
    ),
    (
        7,
        include_str!("../../../migrations/postgres/0007_workload_selectors.sql"),
    ),
    (
        8,
        include_str!("../../../migrations/postgres/0008_federations.sql"),
    ),
];

/// The channel PostgreSQL notifies on each change (the feed's rows are the truth; the
/// notification only wakes the replicas).
pub const CHANGES_CHANNEL: &str = "signet_changes";

/// Which SQL the database speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    fn migrations(self) -> &'static [(i64, &'static str)] {
        match self {
            Dialect::Sqlite => SQLITE_MIGRATIONS,
            Dialect::Postgres => POSTGRES_MIGRATIONS,
        }
    }
}

fn audit_row(r: &AnyRow) -> Result<AuditRow, StoreError> {
    Ok(AuditRow {
        id: r.try_get("id").map_err(backend)?,
        writer: r.try_get("writer").map_err(backend)?,
        seq: to_u64(r.try_get("seq").map_err(backend)?),
        time: to_u64(r.try_get("time").map_err(backend)?),
        kind: r.try_get("type").map_err(backend)?,
        decision: r.try_get("decision").map_err(backend)?,
        action: r.try_get("action").map_err(backend)?,
        principal: r.try_get("principal").map_err(backend)?,
        resource: r.try_get("resource").map_err(backend)?,
        path: r.try_get("path").map_err(backend)?,
        policies: r.try_get("policies").map_err(backend)?,
        candidate: r.try_get("candidate").map_err(backend)?,
        line: r.try_get("line").map_err(backend)?,
    })
}

fn shadow_candidate(r: &AnyRow) -> Result<ShadowCandidate, StoreError> {
    let files: String = r.try_get("files").map_err(backend)?;
    Ok(ShadowCandidate {
        id: to_u64(r.try_get("id").map_err(backend)?),
        hash: r.try_get("hash").map_err(backend)?,
        policies: to_u64(r.try_get("policies").map_err(backend)?),
        installed_at: r.try_get("installed_at").map_err(backend)?,
        author: r.try_get("author").map_err(backend)?,
        message: r.try_get("message").map_err(backend)?,
        files: serde_json::from_str(&files).map_err(backend)?,
    })
}

/// `url` with its password (if any) replaced, for messages.
fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Records a change of `kind` in the feed, in the transaction that makes it.
async fn note_change(
    dialect: Dialect,
    conn: &mut sqlx::AnyConnection,
    kind: &str,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO changes (kind, at) VALUES ($1, $2)")
        .bind(kind)
        .bind(unix_ms(SystemTime::now()))
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    if dialect == Dialect::Postgres {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANGES_CHANNEL)
            .bind(kind)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
    }
    Ok(())
}

/// Inserts one audit record (a re-sent one is already there: nothing happens).
async fn insert_audit_row(conn: &mut sqlx::AnyConnection, r: &AuditRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_records (writer, seq, time, type, decision, action, \
         principal, resource, path, policies, line, candidate) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (writer, seq) DO NOTHING",
    )
    .bind(&r.writer)
    .bind(to_i64(r.seq))
    .bind(to_i64(r.time))
    .bind(&r.kind)
    .bind(&r.decision)
    .bind(&r.action)
    .bind(&r.principal)
    .bind(&r.resource)
    .bind(&r.path)
    .bind(&r.policies)
    .bind(&r.line)
    .bind(&r.candidate)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(())
}

/// Whether `e` is a unique-key violation (the other writer won).
fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

fn token_backend(e: impl std::fmt::Display) -> TokenStoreError {
    TokenStoreError(e.to_string())
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The SQL store.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    dialect: Dialect,
}

/// Every SQLite connection: WAL with NORMAL, so every commit is atomic and survives a crash
/// of the process (only a power loss can drop the last commits, never half of one; FULL
/// would fsync every issuance record); foreign keys enforced; a writer waits up to 5 s for
/// another's lock.
const SQLITE_SETUP: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;";

impl SqlStore {
    /// Opens (creating if needed) the SQLite database at `path` and migrates it.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        secure_files(path)?;
        // The URL's path is percent-decoded: escape what would end it or be read as an escape.
        let escaped = path
            .display()
            .to_string()
            .replace('%', "%25")
            .replace('?', "%3F")
            .replace('#', "%23");
        let url = format!("sqlite://{escaped}?mode=rwc");
        Self::connect(&url, Dialect::Sqlite).await
    }

    /// The dialect it speaks.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// A transaction that writes. On SQLite it takes the write lock at once (`BEGIN
    /// IMMEDIATE`), waiting for it under the busy timeout: a deferred transaction that read
    /// first would fail outright (`SQLITE_BUSY_SNAPSHOT`) if another write committed between
    /// its read and its write, as the lease renewals every second make likely.
    async fn write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Dialect::Postgres => self.pool.begin().await,
        }
        .map_err(backend)
    }

    /// Its connection pool, for copying it whole (`migrate`).
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// The database holds token and certificate records: it and the WAL and shared-memory files
/// beside it are the owner's alone. The file is made 0600 before SQLite opens it, because
/// SQLite creates `-wal` and `-shm` with the database file's mode; files left by an earlier
/// version are tightened too.
fn secure_files(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let io = |e: std::io::Error| StoreError::Backend(format!("securing `{}`: {e}", path.display()));
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
        if file.exists() {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        }
    }
    Ok(())
}

impl SqlStore {
    /// Opens a `sqlite:` URL (`sqlite:///path/to/file.db`, `sqlite::memory:`) or a
    /// `postgres://` one (`postgres://user:password@host:5432/signet?sslmode=verify-full&
    /// sslrootcert=/etc/signet/db-ca.pem`), and migrates the database.
    pub async fn open_url(url: &str) -> Result<Self, StoreError> {
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Dialect::Postgres
        } else {
            return Err(StoreError::Backend(format!(
                "`{}`: a store is a sqlite: or postgres:// URL",
                redacted(url)
            )));
        };
        let url = match dialect {
            Dialect::Sqlite if !url.contains('?') && !url.contains(":memory:") => {
                format!("{url}?mode=rwc")
            }
            _ => url.to_owned(),
        };
        Self::connect(&url, dialect).await
    }

    async fn connect(url: &str, dialect: Dialect) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let mut options = AnyPoolOptions::new()
            .max_connections(match dialect {
                Dialect::Sqlite => 4,
                Dialect::Postgres => 16,
            })
            .acquire_timeout(Duration::from_secs(5));
        if dialect == Dialect::Sqlite {
            options = options.after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::raw_sql(SQLITE_SETUP).execute(conn).await?;
                    Ok(())
                })
            });
        }
        let pool = options.connect(url).await.map_err(|e| {
            // The server's own words, without the wrapping and source positions.
            let why = e
                .as_database_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_owned());
            StoreError::Backend(format!("`{}`: {why}", redacted(url)))
        })?;
        let store = Self { pool, dialect };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::raw_sql(match self.dialect {
            Dialect::Sqlite => {
                "CREATE TABLE IF NOT EXISTS schema_migrations \
                 (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)"
            }
            Dialect::Postgres => {
                "CREATE TABLE IF NOT EXISTS schema_migrations \
                 (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)"
            }
        })
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        let applied: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
                .fetch_one(&self.pool)
                .await
                .map_err(backend)?;
        let migrations = self.dialect.migrations();
        let newest = migrations.last().map_or(0, |(v, _)| *v);
        if applied > newest {
            return Err(StoreError::Backend(format!(
                "the database is at schema version {applied}; this signet-cp knows up to {newest}"
            )));
        }
        for (version, sql) in migrations.iter().filter(|(v, _)| *v > applied) {
            let mut tx = self.write().await?;
            sqlx::raw_sql(*sql)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
                .bind(version)
                .bind(unix_ms(SystemTime::now()))
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            tx.commit().await.map_err(backend)?;
        }
        Ok(())
    }

    async fn files(&self, version: i64) -> Result<Vec<StoredFile>, StoreError> {
        let rows =
            sqlx::query("SELECT name, text FROM policy_files WHERE version = $1 ORDER BY position")
                .bind(version)
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(StoredFile {
                    name: r.try_get("name").map_err(backend)?,
                    text: r.try_get("text").map_err(backend)?,
                })
            })
            .collect()
    }
}

fn policy_version(r: &AnyRow) -> Result<PolicyVersion, StoreError> {
    Ok(PolicyVersion {
        version: to_u64(r.try_get("version").map_err(backend)?),
        hash: r.try_get("hash").map_err(backend)?,
        policies: to_u64(r.try_get("policies").map_err(backend)?),
        created_at: r.try_get("created_at").map_err(backend)?,
        author: r.try_get("author").map_err(backend)?,
        message: r.try_get("message").map_err(backend)?,
        rolled_back_from: r
            .try_get::<Option<i64>, _>("rolled_back_from")
            .map_err(backend)?
            .map(to_u64),
        widened: r
            .try_get::<Option<i64>, _>("widened")
            .map_err(backend)?
            .map(to_u64),
        narrowed: r
            .try_get::<Option<i64>, _>("narrowed")
            .map_err(backend)?
            .map(to_u64),
    })
}

fn token_record(r: &AnyRow) -> Result<TokenRecord, TokenStoreError> {
    let hash: Vec<u8> = r.try_get("secret_sha256").map_err(token_backend)?;
    let spiffe_id: String = r.try_get("spiffe_id").map_err(token_backend)?;
    Ok(TokenRecord {
        id: r.try_get("id").map_err(token_backend)?,
        secret_sha256: hash
            .try_into()
            .map_err(|_| TokenStoreError("stored token hash is not 32 bytes".to_owned()))?,
        spiffe_id: SpiffeId::from_str(&spiffe_id).map_err(token_backend)?,
        created_at: from_unix_ms(r.try_get("created_at").map_err(token_backend)?),
        expires_at: from_unix_ms(r.try_get("expires_at").map_err(token_backend)?),
        used_at: r
            .try_get::<Option<i64>, _>("used_at")
            .map_err(token_backend)?
            .map(from_unix_ms),
    })
}

fn certificate(r: &AnyRow) -> Result<IssuedCertificate, StoreError> {
    Ok(IssuedCertificate {
        serial: r.try_get("serial").map_err(backend)?,
        spiffe_id: r.try_get("spiffe_id").map_err(backend)?,
        not_before: r.try_get("not_before").map_err(backend)?,
        not_after: r.try_get("not_after").map_err(backend)?,
        issued_at: r.try_get("issued_at").map_err(backend)?,
        kind: r.try_get("kind").map_err(backend)?,
    })
}

/// A table of one JSON value per service (`namespace`, `name`, the value, `updated_at`,
/// `author`): service labels, Workload API selectors. Its statements are fixed text.
struct PerService {
    select: &'static str,
    delete: &'static str,
    upsert: &'static str,
    /// The change feed's kind for a write.
    change: &'static str,
}

impl PerService {
    const LABELS: Self = Self {
        select: "SELECT namespace, name, labels AS value, updated_at, author FROM service_labels \
                 ORDER BY namespace, name",
        delete: "DELETE FROM service_labels WHERE namespace = $1 AND name = $2",
        upsert: "INSERT INTO service_labels (namespace, name, labels, updated_at, author) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (namespace, name) DO UPDATE SET \
                 labels = excluded.labels, updated_at = excluded.updated_at, \
                 author = excluded.author",
        change: "labels",
    };
    const SELECTORS: Self = Self {
        select: "SELECT namespace, name, selectors AS value, updated_at, author \
                 FROM workload_selectors ORDER BY namespace, name",
        delete: "DELETE FROM workload_selectors WHERE namespace = $1 AND name = $2",
        upsert: "INSERT INTO workload_selectors (namespace, name, selectors, updated_at, author) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (namespace, name) DO UPDATE SET \
                 selectors = excluded.selectors, updated_at = excluded.updated_at, \
                 author = excluded.author",
        change: "selectors",
    };
}

/// One row of a [`PerService`] table.
struct PerServiceRow {
    namespace: String,
    name: String,
    value: String,
    updated_at: i64,
    author: String,
}

impl SqlStore {
    async fn per_service(&self, t: PerService) -> Result<Vec<PerServiceRow>, StoreError> {
        let rows = sqlx::query(t.select)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(PerServiceRow {
                    namespace: r.try_get("namespace").map_err(backend)?,
                    name: r.try_get("name").map_err(backend)?,
                    value: r.try_get("value").map_err(backend)?,
                    updated_at: r.try_get("updated_at").map_err(backend)?,
                    author: r.try_get("author").map_err(backend)?,
                })
            })
            .collect()
    }

    /// Replaces a service's value (`None`: removes its row), noting the change.
    async fn put_per_service(
        &self,
        t: PerService,
        namespace: &str,
        name: &str,
        value: Option<String>,
        (updated_at, author): (i64, &str),
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        match value {
            None => {
                sqlx::query(t.delete)
                    .bind(namespace)
                    .bind(name)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
            }
            Some(value) => {
                sqlx::query(t.upsert)
                    .bind(namespace)
                    .bind(name)
                    .bind(value)
                    .bind(updated_at)
                    .bind(author)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
            }
        }
        note_change(self.dialect, &mut tx, t.change).await?;
        tx.commit().await.map_err(backend)
    }
}

impl Store for SqlStore {
    fn apply_policies(&self, new: NewPolicyVersion) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            // BEGIN IMMEDIATE would be ideal; a write lock is taken by the first INSERT and
            // the version check below runs inside the same transaction either way.
            let mut tx = self.write().await?;
            let latest: i64 =
                sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM policy_versions")
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(backend)?;
            if let Some(expected) = new.expected
                && to_i64(expected) != latest
            {
                return Err(StoreError::Conflict {
                    expected,
                    latest: to_u64(latest),
                });
            }
            let version = latest + 1;
            // Another replica may take the same version between the read and the insert: the
            // key refuses the second, which is then told what the latest version is.
            sqlx::query(
                "INSERT INTO policy_versions \
                 (version, hash, policies, created_at, author, message, rolled_back_from, \
                 widened, narrowed) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(version)
            .bind(&new.hash)
            .bind(to_i64(new.policies))
            .bind(unix_ms(SystemTime::now()))
            .bind(&new.author)
            .bind(&new.message)
            .bind(new.rolled_back_from.map(to_i64))
            .bind(new.widened.map(to_i64))
            .bind(new.narrowed.map(to_i64))
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict {
                        expected: new.expected.unwrap_or(to_u64(latest)),
                        latest: to_u64(version),
                    }
                } else {
                    backend(e)
                }
            })?;
            for (position, file) in new.files.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO policy_files (version, position, name, text) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(version)
                .bind(i64::try_from(position).unwrap_or(i64::MAX))
                .bind(&file.name)
                .bind(&file.text)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            }
            note_change(self.dialect, &mut tx, "policies").await?;
            tx.commit().await.map_err(backend)?;
            Ok(to_u64(version))
        })
    }

    fn latest_policies(&self) -> BoxFuture<'_, Result<Option<VersionWithFiles>, StoreError>> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT version, hash, policies, created_at, author, message, rolled_back_from, widened, narrowed \
                 FROM policy_versions ORDER BY version DESC LIMIT 1",
            )
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
            let Some(row) = row else { return Ok(None) };
            let meta = policy_version(&row)?;
            let files = self.files(to_i64(meta.version)).await?;
            Ok(Some((meta, files)))
        })
    }

    fn policy_version(&self, version: u64) -> BoxFuture<'_, Result<VersionWithFiles, StoreError>> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT version, hash, policies, created_at, author, message, rolled_back_from, widened, narrowed \
                 FROM policy_versions WHERE version = $1",
            )
            .bind(to_i64(version))
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?
            .ok_or(StoreError::NoSuchVersion(version))?;
            let meta = policy_version(&row)?;
            let files = self.files(to_i64(version)).await?;
            Ok((meta, files))
        })
    }

    fn policy_history(&self) -> BoxFuture<'_, Result<Vec<PolicyVersion>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT version, hash, policies, created_at, author, message, rolled_back_from, widened, narrowed \
                 FROM policy_versions ORDER BY version DESC",
            )
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
            rows.iter().map(policy_version).collect()
        })
    }

    fn insert_token(&self, record: TokenRecord) -> BoxFuture<'_, Result<(), TokenStoreError>> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO join_tokens \
                 (id, secret_sha256, spiffe_id, created_at, expires_at, used_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&record.id)
            .bind(record.secret_sha256.as_slice())
            .bind(record.spiffe_id.as_str())
            .bind(unix_ms(record.created_at))
            .bind(unix_ms(record.expires_at))
            .bind(record.used_at.map(unix_ms))
            .execute(&self.pool)
            .await
            .map_err(token_backend)?;
            Ok(())
        })
    }

    fn get_token<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<TokenRecord>, TokenStoreError>> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT id, secret_sha256, spiffe_id, created_at, expires_at, used_at \
                 FROM join_tokens WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(token_backend)?;
            row.as_ref().map(token_record).transpose()
        })
    }

    fn mark_token_used<'a>(
        &'a self,
        id: &'a str,
        at: SystemTime,
    ) -> BoxFuture<'a, Result<bool, TokenStoreError>> {
        Box::pin(async move {
            // The `used_at IS NULL` condition makes this the compare-and-set: of two racing
            // redemptions exactly one updates a row.
            let done = sqlx::query(
                "UPDATE join_tokens SET used_at = $1 WHERE id = $2 AND used_at IS NULL",
            )
            .bind(unix_ms(at))
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(token_backend)?;
            Ok(done.rows_affected() == 1)
        })
    }

    fn put_operator_token<'a>(
        &'a self,
        name: &'a str,
        spiffe_id: &'a str,
        token_sha256: [u8; 32],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut tx = self.write().await?;
            sqlx::query("DELETE FROM operator_tokens WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            sqlx::query(
                "INSERT INTO operator_tokens (token_sha256, name, spiffe_id, created_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(token_sha256.as_slice())
            .bind(name)
            .bind(spiffe_id)
            .bind(unix_ms(SystemTime::now()))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            tx.commit().await.map_err(backend)
        })
    }

    fn has_operator_token<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let found = sqlx::query("SELECT 1 FROM operator_tokens WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?;
            Ok(found.is_some())
        })
    }

    fn operator_for_token(
        &self,
        token_sha256: [u8; 32],
    ) -> BoxFuture<'_, Result<Option<String>, StoreError>> {
        Box::pin(async move {
            sqlx::query_scalar("SELECT spiffe_id FROM operator_tokens WHERE token_sha256 = $1")
                .bind(token_sha256.as_slice())
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)
        })
    }

    fn record_certificate(&self, cert: IssuedCertificate) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO certificates \
                 (serial, spiffe_id, not_before, not_after, issued_at, kind) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&cert.serial)
            .bind(&cert.spiffe_id)
            .bind(cert.not_before)
            .bind(cert.not_after)
            .bind(cert.issued_at)
            .bind(&cert.kind)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
            Ok(())
        })
    }

    fn certificates_for<'a>(
        &'a self,
        spiffe_id: &'a str,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<IssuedCertificate>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT serial, spiffe_id, not_before, not_after, issued_at, kind \
                 FROM certificates WHERE spiffe_id = $1 ORDER BY issued_at DESC LIMIT $2",
            )
            .bind(spiffe_id)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
            rows.iter().map(certificate).collect()
        })
    }

    fn deny_list(&self) -> BoxFuture<'_, Result<Vec<DenyEntry>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT kind, value, reason, created_at FROM deny_list ORDER BY kind, value",
            )
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
            rows.iter()
                .map(|r| {
                    Ok(DenyEntry {
                        kind: r.try_get("kind").map_err(backend)?,
                        value: r.try_get("value").map_err(backend)?,
                        reason: r.try_get("reason").map_err(backend)?,
                        created_at: r.try_get("created_at").map_err(backend)?,
                    })
                })
                .collect()
        })
    }

    fn deny(&self, entry: DenyEntry) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let mut tx = self.write().await?;
            sqlx::query(
                "INSERT INTO deny_list (kind, value, reason, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (kind, value) DO UPDATE SET reason = excluded.reason, \
                 created_at = excluded.created_at",
            )
            .bind(&entry.kind)
            .bind(&entry.value)
            .bind(&entry.reason)
            .bind(entry.created_at)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            note_change(self.dialect, &mut tx, "deny").await?;
            tx.commit().await.map_err(backend)
        })
    }

    fn put_member(&self, member: Member) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let mut tx = self.write().await?;
            sqlx::query(
                "INSERT INTO members (instance, spiffe_id, service, namespace, endpoint, admin, \
                 serial, registered_at, weight, labels, service_address, last_seen, app_health) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                 ON CONFLICT (instance) DO UPDATE SET spiffe_id = excluded.spiffe_id, \
                 service = excluded.service, namespace = excluded.namespace, \
                 endpoint = excluded.endpoint, admin = excluded.admin, serial = excluded.serial, \
                 registered_at = excluded.registered_at, weight = excluded.weight, \
                 labels = excluded.labels, service_address = excluded.service_address, \
                 last_seen = excluded.last_seen, app_health = excluded.app_health",
            )
            .bind(&member.instance)
            .bind(&member.spiffe_id)
            .bind(&member.service)
            .bind(&member.namespace)
            .bind(&member.endpoint)
            .bind(&member.admin)
            .bind(&member.serial)
            .bind(member.registered_at)
            .bind(i64::from(member.weight))
            .bind(serde_json::to_string(&member.labels).unwrap_or_else(|_| "{}".to_owned()))
            .bind(
                member
                    .service_address
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
            )
            .bind(member.last_seen)
            .bind(i64::from(member.app_health))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            // Other replicas take the new endpoint in at once, not at their next registry
            // sync: a proxy failing over to one of them must find its upstreams there.
            note_change(self.dialect, &mut tx, "members").await?;
            tx.commit().await.map_err(backend)
        })
    }

    fn remove_members(
        &self,
        instances: Vec<String>,
        lapsed_before: i64,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let mut tx = self.write().await?;
            for instance in &instances {
                // A lease another replica renewed meanwhile keeps the row.
                sqlx::query("DELETE FROM members WHERE instance = $1 AND last_seen < $2")
                    .bind(instance)
                    .bind(lapsed_before)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
            }
            tx.commit().await.map_err(backend)
        })
    }

    fn renew_members(&self, leases: Vec<Lease>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            if leases.is_empty() {
                return Ok(());
            }
            let mut tx = self.write().await?;
            for lease in &leases {
                sqlx::query(
                    "UPDATE members SET last_seen = $1, app_health = $2, trust_bundle = $3 \
                     WHERE instance = $4 AND last_seen < $1",
                )
                .bind(lease.at)
                .bind(i64::from(lease.app_health))
                .bind(to_i64(lease.trust_bundle))
                .bind(&lease.instance)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            }
            tx.commit().await.map_err(backend)
        })
    }

    fn service_labels(&self) -> BoxFuture<'_, Result<Vec<ServiceLabels>, StoreError>> {
        Box::pin(async move {
            self.per_service(PerService::LABELS)
                .await?
                .into_iter()
                .map(|row| {
                    Ok(ServiceLabels {
                        labels: serde_json::from_str(&row.value).map_err(backend)?,
                        namespace: row.namespace,
                        name: row.name,
                        updated_at: row.updated_at,
                        author: row.author,
                    })
                })
                .collect()
        })
    }

    fn put_service_labels(&self, entry: ServiceLabels) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let value = (!entry.labels.is_empty())
                .then(|| serde_json::to_string(&entry.labels))
                .transpose()
                .map_err(backend)?;
            self.put_per_service(
                PerService::LABELS,
                &entry.namespace,
                &entry.name,
                value,
                (entry.updated_at, &entry.author),
            )
            .await
        })
    }

    fn workload_selectors(&self) -> BoxFuture<'_, Result<Vec<WorkloadSelectors>, StoreError>> {
        Box::pin(async move {
            self.per_service(PerService::SELECTORS)
                .await?
                .into_iter()
                .map(|row| {
                    Ok(WorkloadSelectors {
                        selectors: serde_json::from_str(&row.value).map_err(backend)?,
                        namespace: row.namespace,
                        name: row.name,
                        updated_at: row.updated_at,
                        author: row.author,
                    })
                })
                .collect()
        })
    }

    fn put_workload_selectors(
        &self,
        entry: WorkloadSelectors,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let value = (!entry.selectors.is_empty())
                .then(|| serde_json::to_string(&entry.selectors))
                .transpose()
                .map_err(backend)?;
            self.put_per_service(
                PerService::SELECTORS,
                &entry.namespace,
                &entry.name,
                value,
                (entry.updated_at, &entry.author),
            )
            .await
        })
    }

    fn federations(&self) -> BoxFuture<'_, Result<Vec<Federation>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT trust_domain, endpoint, profile, endpoint_spiffe_id, endpoint_ca, bundle, \
                 refreshed_at, next_refresh, last_error, created_at, author FROM federations \
                 ORDER BY trust_domain",
            )
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
            rows.iter()
                .map(|r| {
                    Ok(Federation {
                        trust_domain: r.try_get("trust_domain").map_err(backend)?,
                        endpoint: r.try_get("endpoint").map_err(backend)?,
                        profile: r.try_get("profile").map_err(backend)?,
                        endpoint_spiffe_id: r.try_get("endpoint_spiffe_id").map_err(backend)?,
                        endpoint_ca: r.try_get("endpoint_ca").map_err(backend)?,
                        bundle: r.try_get("bundle").map_err(backend)?,
                        refreshed_at: r.try_get("refreshed_at").map_err(backend)?,
                        next_refresh: r.try_get("next_refresh").map_err(backend)?,
                        last_error: r.try_get("last_error").map_err(backend)?,
                        created_at: r.try_get("created_at").map_err(backend)?,
                        author: r.try_get("author").map_err(backend)?,
                    })
                })
                .collect()
        })
    }

    fn put_federation(
        &self,
        entry: Federation,
        new: bool,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let mut tx = self.write().await?;
            let statement = if new {
                "INSERT INTO federations (trust_domain, endpoint, profile, endpoint_spiffe_id, \
                 endpoint_ca, bundle, refreshed_at, next_refresh, last_error, created_at, author) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            } else {
                "UPDATE federations SET endpoint = $2, profile = $3, endpoint_spiffe_id = $4, \
                 endpoint_ca = $5, bundle = $6, refreshed_at = $7, next_refresh = $8, \
                 last_error = $9, created_at = $10, author = $11 WHERE trust_domain = $1"
            };
            let done = sqlx::query(statement)
                .bind(&entry.trust_domain)
                .bind(&entry.endpoint)
                .bind(&entry.profile)
                .bind(&entry.endpoint_spiffe_id)
                .bind(&entry.endpoint_ca)
                .bind(&entry.bundle)
                .bind(entry.refreshed_at)
                .bind(entry.next_refresh)
                .bind(&entry.last_error)
                .bind(entry.created_at)
                .bind(&entry.author)
                .execute(&mut *tx)
                .await;
            match done {
                Ok(r) if r.rows_affected() == 1 => {}
                Ok(_) => {
                    return Err(StoreError::Raced(format!(
                        "federation `{}`",
                        entry.trust_domain
                    )));
                }
                Err(e) if is_unique_violation(&e) => {
                    return Err(StoreError::Raced(format!(
                        "federation `{}`",
                        entry.trust_domain
                    )));
                }
                Err(e) => return Err(backend(e)),
            }
            note_change(self.dialect, &mut tx, "federation").await?;
            tx.commit().await.map_err(backend)
        })
    }

    fn remove_federation<'a>(
        &'a self,
        trust_domain: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let mut tx = self.write().await?;
            let removed = sqlx::query("DELETE FROM federations WHERE trust_domain = $1")
                .bind(trust_domain)
                .execute(&mut *tx)
                .await
                .map_err(backend)?
                .rows_affected()
                > 0;
            if removed {
                note_change(self.dialect, &mut tx, "federation").await?;
            }
            tx.commit().await.map_err(backend)?;
            Ok(removed)
        })
    }

    fn members(&self) -> BoxFuture<'_, Result<Vec<Member>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT instance, spiffe_id, service, namespace, endpoint, admin, serial, \
                 registered_at, weight, labels, service_address, last_seen, app_health, \
                 trust_bundle FROM members ORDER BY instance",
            )
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
            rows.iter()
                .map(|r| {
                    Ok(Member {
                        instance: r.try_get("instance").map_err(backend)?,
                        spiffe_id: r.try_get("spiffe_id").map_err(backend)?,
                        service: r.try_get("service").map_err(backend)?,
                        namespace: r.try_get("namespace").map_err(backend)?,
                        endpoint: r.try_get("endpoint").map_err(backend)?,
                        admin: r.try_get("admin").map_err(backend)?,
                        serial: r.try_get("serial").map_err(backend)?,
                        registered_at: r.try_get("registered_at").map_err(backend)?,
                        // A row written by hand out of range counts as the default.
                        weight: r
                            .try_get::<i64, _>("weight")
                            .ok()
                            .and_then(|w| u32::try_from(w).ok())
                            .and_then(|w| signet_traffic::weight::check(w).ok())
                            .unwrap_or(signet_traffic::weight::DEFAULT),
                        // Labels written by hand that no longer check are dropped.
                        labels: r
                            .try_get::<String, _>("labels")
                            .ok()
                            .and_then(|t| serde_json::from_str(&t).ok())
                            .filter(|l| signet_traffic::labels::check(l).is_ok())
                            .unwrap_or_default(),
                        // An address written by hand that does not parse is dropped.
                        service_address: r
                            .try_get::<String, _>("service_address")
                            .ok()
                            .and_then(|a| crate::server::registry::service_address(&a).ok())
                            .flatten(),
                        last_seen: r.try_get("last_seen").map_err(backend)?,
                        app_health: r
                            .try_get::<i64, _>("app_health")
                            .ok()
                            .and_then(|h| i32::try_from(h).ok())
                            .unwrap_or(0),
                        trust_bundle: to_u64(r.try_get("trust_bundle").map_err(backend)?),
                    })
                })
                .collect()
        })
    }

    fn index_audit(&self, rows: Vec<AuditRow>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let mut tx = self.write().await?;
            for r in &rows {
                insert_audit_row(&mut tx, r).await?;
            }
            tx.commit().await.map_err(backend)
        })
    }

    fn audit_tip<'a>(&'a self, writer: &'a str) -> BoxFuture<'a, Result<Option<Tip>, StoreError>> {
        Box::pin(async move {
            let row =
                sqlx::query("SELECT seq, head, signed_through FROM audit_chains WHERE writer = $1")
                    .bind(writer)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(backend)?;
            row.map(|r| {
                Ok(Tip {
                    seq: to_u64(r.try_get("seq").map_err(backend)?),
                    head: r.try_get("head").map_err(backend)?,
                    signed_through: to_u64(r.try_get("signed_through").map_err(backend)?),
                })
            })
            .transpose()
        })
    }

    fn audit_tips(&self) -> BoxFuture<'_, Result<Vec<(String, Tip)>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query("SELECT writer, seq, head, signed_through FROM audit_chains")
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?;
            rows.iter()
                .map(|r| {
                    Ok((
                        r.try_get("writer").map_err(backend)?,
                        Tip {
                            seq: to_u64(r.try_get("seq").map_err(backend)?),
                            head: r.try_get("head").map_err(backend)?,
                            signed_through: to_u64(r.try_get("signed_through").map_err(backend)?),
                        },
                    ))
                })
                .collect()
        })
    }

    fn append_audit(&self, batch: AuditBatch) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let mut tx = self.write().await?;
            let to = &batch.to;
            let moved = match &batch.from {
                None => sqlx::query(
                    "INSERT INTO audit_chains (writer, seq, head, signed_through) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (writer) DO NOTHING",
                )
                .bind(&batch.writer)
                .bind(to_i64(to.seq))
                .bind(&to.head)
                .bind(to_i64(to.signed_through)),
                Some(from) => sqlx::query(
                    "UPDATE audit_chains SET seq = $1, head = $2, signed_through = $3 \
                     WHERE writer = $4 AND seq = $5 AND head = $6 AND signed_through = $7",
                )
                .bind(to_i64(to.seq))
                .bind(&to.head)
                .bind(to_i64(to.signed_through))
                .bind(&batch.writer)
                .bind(to_i64(from.seq))
                .bind(&from.head)
                .bind(to_i64(from.signed_through)),
            }
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
            if moved != 1 {
                return Err(StoreError::Raced(format!(
                    "the audit chain of `{}`",
                    batch.writer
                )));
            }
            for r in &batch.records {
                insert_audit_row(&mut tx, r).await?;
            }
            for (last, line) in &batch.checkpoints {
                sqlx::query(
                    "INSERT INTO audit_checkpoints (writer, last, line) VALUES ($1, $2, $3) \
                     ON CONFLICT (writer, last) DO NOTHING",
                )
                .bind(&batch.writer)
                .bind(to_i64(*last))
                .bind(line)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            }
            tx.commit().await.map_err(backend)
        })
    }

    fn audit_chain_after<'a>(
        &'a self,
        writer: &'a str,
        after: &'a Tip,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        Box::pin(async move {
            let records = sqlx::query(
                "SELECT seq, line FROM audit_records WHERE writer = $1 AND seq > $2 \
                 ORDER BY seq LIMIT $3",
            )
            .bind(writer)
            .bind(to_i64(after.seq))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
            let mut lines: Vec<(u64, String)> = Vec::with_capacity(records.len());
            for r in &records {
                lines.push((
                    to_u64(r.try_get("seq").map_err(backend)?),
                    r.try_get("line").map_err(backend)?,
                ));
            }
            let through = lines.last().map_or(after.seq, |(seq, _)| *seq);
            let checkpoints = sqlx::query(
                "SELECT last, line FROM audit_checkpoints WHERE writer = $1 AND last > $2 \
                 AND last <= $3 ORDER BY last",
            )
            .bind(writer)
            .bind(to_i64(after.signed_through))
            .bind(to_i64(through))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
            let mut signing: Vec<(u64, String)> = Vec::with_capacity(checkpoints.len());
            for c in &checkpoints {
                signing.push((
                    to_u64(c.try_get("last").map_err(backend)?),
                    c.try_get("line").map_err(backend)?,
                ));
            }
            // In chain order: a checkpoint right after the record it signs.
            let mut out = Vec::with_capacity(lines.len() + signing.len());
            let mut signing = signing.into_iter().peekable();
            while let Some((_, line)) = signing.next_if(|(last, _)| *last <= after.seq) {
                out.push(line);
            }
            for (seq, line) in lines {
                out.push(line);
                while let Some((_, line)) = signing.next_if(|(last, _)| *last == seq) {
                    out.push(line);
                }
            }
            Ok(out)
        })
    }

    fn query_audit(&self, q: AuditQuery) -> BoxFuture<'_, Result<Vec<AuditRow>, StoreError>> {
        Box::pin(async move {
            // Every filter is a bound parameter; an absent one matches everything.
            const NEWEST: &str = "SELECT * FROM (SELECT id, writer, seq, time, type, decision, \
                 action, principal, resource, path, policies, line, candidate FROM audit_records \
                 WHERE id > $1 AND ($2 IS NULL OR (decision = $2 AND type <> 'shadow')) \
                 AND ($3 IS NULL OR principal = $3) AND ($4 IS NULL OR resource = $4) \
                 AND ($5 IS NULL OR ',' || policies || ',' LIKE '%,' || $5 || ',%') \
                 AND ($6 IS NULL OR time >= $6) AND ($7 IS NULL OR time <= $7) \
                 ORDER BY id DESC LIMIT $8) AS newest ORDER BY id";
            const OLDEST: &str = "SELECT id, writer, seq, time, type, decision, action, \
                 principal, resource, path, policies, line, candidate FROM audit_records \
                 WHERE id > $1 AND ($2 IS NULL OR (decision = $2 AND type <> 'shadow')) \
                 AND ($3 IS NULL OR principal = $3) AND ($4 IS NULL OR resource = $4) \
                 AND ($5 IS NULL OR ',' || policies || ',' LIKE '%,' || $5 || ',%') \
                 AND ($6 IS NULL OR time >= $6) AND ($7 IS NULL OR time <= $7) \
                 ORDER BY id LIMIT $8";
            let rows = sqlx::query(if q.oldest { OLDEST } else { NEWEST })
                .bind(q.after.unwrap_or(0))
                .bind(&q.decision)
                .bind(&q.principal)
                .bind(&q.resource)
                .bind(&q.policy)
                .bind(q.since.map(to_i64))
                .bind(q.until.map(to_i64))
                .bind(i64::from(q.limit.unwrap_or(100).clamp(1, 10_000)))
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?;
            rows.iter().map(audit_row).collect()
        })
    }

    fn install_shadow(&self, new: NewShadow) -> BoxFuture<'_, Result<ShadowCandidate, StoreError>> {
        Box::pin(async move {
            let files = serde_json::to_string(&new.files).map_err(backend)?;
            let now = unix_ms(SystemTime::now());
            let mut tx = self.write().await?;
            sqlx::query(
                "UPDATE shadow_candidates SET ended_at = $1, outcome = 'replaced' \
                 WHERE ended_at IS NULL",
            )
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO shadow_candidates (hash, policies, installed_at, author, message, \
                 files) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(&new.hash)
            .bind(to_i64(new.policies))
            .bind(now)
            .bind(&new.author)
            .bind(&new.message)
            .bind(files)
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
            note_change(self.dialect, &mut tx, "shadow").await?;
            tx.commit().await.map_err(backend)?;
            Ok(ShadowCandidate {
                id: to_u64(id),
                hash: new.hash,
                policies: new.policies,
                installed_at: now,
                author: new.author,
                message: new.message,
                files: new.files,
            })
        })
    }

    fn current_shadow(&self) -> BoxFuture<'_, Result<Option<ShadowCandidate>, StoreError>> {
        Box::pin(async move {
            sqlx::query(
                "SELECT id, hash, policies, installed_at, author, message, files \
                 FROM shadow_candidates WHERE ended_at IS NULL ORDER BY id DESC LIMIT 1",
            )
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?
            .as_ref()
            .map(shadow_candidate)
            .transpose()
        })
    }

    fn end_shadow<'a>(
        &'a self,
        id: u64,
        outcome: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let mut tx = self.write().await?;
            let done = sqlx::query(
                "UPDATE shadow_candidates SET ended_at = $1, outcome = $2 \
                 WHERE id = $3 AND ended_at IS NULL",
            )
            .bind(unix_ms(SystemTime::now()))
            .bind(outcome)
            .bind(to_i64(id))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            let ended = done.rows_affected() == 1;
            if ended {
                note_change(self.dialect, &mut tx, "shadow").await?;
            }
            tx.commit().await.map_err(backend)?;
            Ok(ended)
        })
    }

    fn shadow_flows<'a>(
        &'a self,
        hash: &'a str,
        since: u64,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<ShadowFlow>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT principal, resource, action, decision, COUNT(*) AS n, MIN(time) AS first, \
                 MAX(time) AS last FROM audit_records WHERE candidate = $1 AND time >= $2 \
                 GROUP BY principal, resource, action, decision ORDER BY n DESC, principal, \
                 resource, action LIMIT $3",
            )
            .bind(hash)
            .bind(to_i64(since))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
            rows.iter()
                .map(|r| {
                    let text = |column: &str| -> Result<String, StoreError> {
                        Ok(r.try_get::<Option<String>, _>(column)
                            .map_err(backend)?
                            .unwrap_or_default())
                    };
                    Ok(ShadowFlow {
                        principal: text("principal")?,
                        service: text("resource")?,
                        action: text("action")?,
                        would: text("decision")?,
                        count: to_u64(r.try_get("n").map_err(backend)?),
                        first: to_u64(r.try_get("first").map_err(backend)?),
                        last: to_u64(r.try_get("last").map_err(backend)?),
                    })
                })
                .collect()
        })
    }

    fn shadow_examples<'a>(
        &'a self,
        hash: &'a str,
        since: u64,
        per_flow: u32,
    ) -> BoxFuture<'a, Result<Vec<AuditRow>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT id, writer, seq, time, type, decision, action, principal, resource, path, \
                 policies, line, candidate FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY \
                 principal, resource, action, decision ORDER BY id DESC) AS nth \
                 FROM audit_records WHERE candidate = $1 AND time >= $2) AS flows WHERE nth <= $3 \
                 ORDER BY id",
            )
            .bind(hash)
            .bind(to_i64(since))
            .bind(i64::from(per_flow))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
            rows.iter().map(audit_row).collect()
        })
    }

    fn put_authn(
        &self,
        doc: String,
        author: String,
        keys: Vec<(String, String)>,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let now = unix_ms(SystemTime::now());
            let mut tx = self.write().await?;
            let version: i64 = sqlx::query_scalar(
                "INSERT INTO authn_versions (version, doc, author, created_at) \
                 SELECT COALESCE(MAX(version), 0) + 1, $1, $2, $3 FROM authn_versions \
                 RETURNING version",
            )
            .bind(&doc)
            .bind(&author)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
            sqlx::query("DELETE FROM authn_keys")
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            for (provider, jwks) in &keys {
                sqlx::query(
                    "INSERT INTO authn_keys (provider, jwks, fetched_at) VALUES ($1, $2, $3)",
                )
                .bind(provider)
                .bind(jwks)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            }
            note_change(self.dialect, &mut tx, "authn").await?;
            tx.commit().await.map_err(backend)?;
            Ok(to_u64(version))
        })
    }

    fn put_traffic(
        &self,
        doc: String,
        author: String,
        changes: u64,
        rollback_of: Option<u64>,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let mut tx = self.write().await?;
            let version: i64 = sqlx::query_scalar(
                "INSERT INTO traffic_versions (version, doc, author, created_at, changes, rollback_of) \
                 SELECT COALESCE(MAX(version), 0) + 1, $1, $2, $3, $4, $5 FROM traffic_versions \
                 RETURNING version",
            )
            .bind(&doc)
            .bind(&author)
            .bind(unix_ms(SystemTime::now()))
            .bind(i64::try_from(changes).unwrap_or(i64::MAX))
            .bind(rollback_of.and_then(|v| i64::try_from(v).ok()))
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
            note_change(self.dialect, &mut tx, "traffic").await?;
            tx.commit().await.map_err(backend)?;
            Ok(to_u64(version))
        })
    }

    fn traffic_versions(
        &self,
        version: Option<u64>,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<StoredTraffic>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT version, doc, author, created_at, changes, rollback_of FROM traffic_versions \
                 WHERE $1 IS NULL OR version = $1 ORDER BY version DESC LIMIT $2",
            )
            .bind(version.and_then(|v| i64::try_from(v).ok()))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
            rows.iter()
                .map(|r| {
                    Ok(StoredTraffic {
                        version: to_u64(r.try_get("version").map_err(backend)?),
                        doc: r.try_get("doc").map_err(backend)?,
                        author: r.try_get("author").map_err(backend)?,
                        created_at: r.try_get("created_at").map_err(backend)?,
                        changes: to_u64(r.try_get("changes").map_err(backend)?),
                        rollback_of: r
                            .try_get::<Option<i64>, _>("rollback_of")
                            .map_err(backend)?
                            .map(to_u64),
                    })
                })
                .collect()
        })
    }

    fn latest_authn(&self) -> BoxFuture<'_, Result<Option<StoredAuthn>, StoreError>> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT version, doc, author, created_at FROM authn_versions \
                 ORDER BY version DESC LIMIT 1",
            )
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
            row.map(|r| {
                Ok(StoredAuthn {
                    version: to_u64(r.try_get("version").map_err(backend)?),
                    doc: r.try_get("doc").map_err(backend)?,
                    author: r.try_get("author").map_err(backend)?,
                    created_at: r.try_get("created_at").map_err(backend)?,
                })
            })
            .transpose()
        })
    }

    fn authn_keys(&self) -> BoxFuture<'_, Result<Vec<FetchedKeys>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query("SELECT provider, jwks, fetched_at FROM authn_keys")
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?;
            rows.iter()
                .map(|r| {
                    Ok(FetchedKeys {
                        provider: r.try_get("provider").map_err(backend)?,
                        jwks: r.try_get("jwks").map_err(backend)?,
                        fetched_at: r.try_get("fetched_at").map_err(backend)?,
                    })
                })
                .collect()
        })
    }

    fn put_authn_key(
        &self,
        provider: String,
        jwks: String,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let mut tx = self.write().await?;
            sqlx::query(
                "INSERT INTO authn_keys (provider, jwks, fetched_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (provider) DO UPDATE SET jwks = excluded.jwks, \
                 fetched_at = excluded.fetched_at",
            )
            .bind(&provider)
            .bind(&jwks)
            .bind(unix_ms(SystemTime::now()))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            note_change(self.dialect, &mut tx, "authn").await?;
            tx.commit().await.map_err(backend)
        })
    }

    fn put_replica(&self, replica: ReplicaRow) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO replicas (id, grpc, api, version, started_at, last_seen) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET \
                 grpc = excluded.grpc, api = excluded.api, version = excluded.version, \
                 last_seen = excluded.last_seen",
            )
            .bind(&replica.id)
            .bind(&replica.grpc)
            .bind(&replica.api)
            .bind(&replica.version)
            .bind(replica.started_at)
            .bind(replica.last_seen)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
            Ok(())
        })
    }

    fn replicas(&self, seen_since: i64) -> BoxFuture<'_, Result<Vec<ReplicaRow>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT id, grpc, api, version, started_at, last_seen FROM replicas \
                 WHERE last_seen >= $1 ORDER BY started_at, id",
            )
            .bind(seen_since)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
            rows.iter()
                .map(|r| {
                    Ok(ReplicaRow {
                        id: r.try_get("id").map_err(backend)?,
                        grpc: r.try_get("grpc").map_err(backend)?,
                        api: r.try_get("api").map_err(backend)?,
                        version: r.try_get("version").map_err(backend)?,
                        started_at: r.try_get("started_at").map_err(backend)?,
                        last_seen: r.try_get("last_seen").map_err(backend)?,
                    })
                })
                .collect()
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            sqlx::query("SELECT 1")
                .execute(&self.pool)
                .await
                .map_err(backend)?;
            Ok(())
        })
    }

    fn ca(&self) -> BoxFuture<'_, Result<Option<StoredCa>, StoreError>> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT revision, trust_domain, kek_id, sealed, issued_until FROM ca WHERE id = 1",
            )
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
            row.map(|r| {
                Ok(StoredCa {
                    revision: to_u64(r.try_get("revision").map_err(backend)?),
                    trust_domain: r.try_get("trust_domain").map_err(backend)?,
                    kek_id: r.try_get("kek_id").map_err(backend)?,
                    sealed: r.try_get("sealed").map_err(backend)?,
                    issued_until: to_u64(r.try_get("issued_until").map_err(backend)?),
                })
            })
            .transpose()
        })
    }

    fn put_ca(&self, write: CaWrite) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let mut tx = self.write().await?;
            let now = unix_ms(SystemTime::now());
            let revision = write.expected.map_or(1, |r| r + 1);
            let written = match write.expected {
                None => sqlx::query(
                    "INSERT INTO ca (id, revision, trust_domain, kek_id, sealed, issued_until, \
                     updated_at) VALUES (1, 1, $1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
                )
                .bind(&write.trust_domain)
                .bind(&write.kek_id)
                .bind(&write.sealed)
                .bind(to_i64(write.issued_until.unwrap_or(0)))
                .bind(now),
                Some(expected) => sqlx::query(
                    "UPDATE ca SET revision = $1, trust_domain = $2, kek_id = $3, sealed = $4, \
                     issued_until = CASE WHEN $5 < 0 THEN issued_until ELSE $5 END, \
                     updated_at = $6 WHERE id = 1 AND revision = $7",
                )
                .bind(to_i64(revision))
                .bind(&write.trust_domain)
                .bind(&write.kek_id)
                .bind(&write.sealed)
                // -1: keep the horizon other replicas raised.
                .bind(write.issued_until.map_or(-1, to_i64))
                .bind(now)
                .bind(to_i64(expected)),
            }
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
            if written != 1 {
                return Err(StoreError::Raced("the CA".to_owned()));
            }
            note_change(self.dialect, &mut tx, "ca").await?;
            tx.commit().await.map_err(backend)?;
            Ok(revision)
        })
    }

    fn raise_ca_horizon(&self, until: u64) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            sqlx::query("UPDATE ca SET issued_until = $1 WHERE id = 1 AND issued_until < $1")
                .bind(to_i64(until))
                .execute(&self.pool)
                .await
                .map_err(backend)?;
            Ok(())
        })
    }

    fn take_duty<'a>(
        &'a self,
        name: &'a str,
        holder: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let now = unix_ms(SystemTime::now());
            let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
            // Taken when free, lapsed, or already ours (a renewal keeps `since`).
            let taken = sqlx::query(
                "INSERT INTO duties (name, holder, since, expires_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                 since = CASE WHEN duties.holder = excluded.holder THEN duties.since \
                 ELSE excluded.since END, expires_at = excluded.expires_at \
                 WHERE duties.holder = excluded.holder OR duties.expires_at < excluded.since",
            )
            .bind(name)
            .bind(holder)
            .bind(now)
            .bind(until)
            .execute(&self.pool)
            .await
            .map_err(backend)?
            .rows_affected();
            Ok(taken == 1)
        })
    }

    fn release_duties<'a>(&'a self, holder: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            sqlx::query("DELETE FROM duties WHERE holder = $1")
                .bind(holder)
                .execute(&self.pool)
                .await
                .map_err(backend)?;
            Ok(())
        })
    }

    fn duties(&self) -> BoxFuture<'_, Result<Vec<DutyLease>, StoreError>> {
        Box::pin(async move {
            let rows =
                sqlx::query("SELECT name, holder, since, expires_at FROM duties ORDER BY name")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(backend)?;
            rows.iter()
                .map(|r| {
                    Ok(DutyLease {
                        name: r.try_get("name").map_err(backend)?,
                        holder: r.try_get("holder").map_err(backend)?,
                        since: r.try_get("since").map_err(backend)?,
                        expires_at: r.try_get("expires_at").map_err(backend)?,
                    })
                })
                .collect()
        })
    }

    fn latest_change(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let seq: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM changes")
                .fetch_one(&self.pool)
                .await
                .map_err(backend)?;
            Ok(to_u64(seq))
        })
    }

    fn record_action(&self, action: OperatorAction) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO operator_actions (at, principal, action, target, allowed, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(action.at)
            .bind(&action.principal)
            .bind(&action.action)
            .bind(&action.target)
            .bind(i64::from(action.allowed))
            .bind(&action.detail)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
            Ok(())
        })
    }

    fn actions(
        &self,
        limit: u32,
        before: Option<i64>,
    ) -> BoxFuture<'_, Result<Vec<OperatorAction>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT seq, at, principal, action, target, allowed, detail FROM operator_actions \
                 WHERE seq < $2 ORDER BY seq DESC LIMIT $1",
            )
            .bind(i64::from(limit))
            .bind(before.unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
            rows.iter()
                .map(|r| {
                    Ok(OperatorAction {
                        id: r.try_get("seq").map_err(backend)?,
                        at: r.try_get("at").map_err(backend)?,
                        principal: r.try_get("principal").map_err(backend)?,
                        action: r.try_get("action").map_err(backend)?,
                        target: r.try_get("target").map_err(backend)?,
                        allowed: r.try_get::<i64, _>("allowed").map_err(backend)? != 0,
                        detail: r.try_get("detail").map_err(backend)?,
                    })
                })
                .collect()
        })
    }
}

#[cfg(test)]
#[path = "sql_tests.rs"]
mod tests;
