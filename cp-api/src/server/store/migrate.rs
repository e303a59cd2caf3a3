//! `signet-cp migrate`: copies a control plane's whole store (a SQLite file, usually) into
//! an empty PostgreSQL database, in one transaction, then checks the copy against the
//! source: every table's row count, the policy history, the registry, the sealed CA, and
//! each audit chain's exact lines (a digest per writer, and the hash links between
//! consecutive records).
//!
//! The copy is by table and column, as the target's schema names them (both stores are
//! migrated to this version's schema first): values are read from the source as the
//! target's column types want them, identity sequences are moved past the copied keys, and
//! tables are copied parents first. The CA row moves sealed, so the replicas on the target
//! need the key that sealed it (`--ca-kek-file`).

use std::collections::BTreeMap;

use sqlx::{AnyConnection, AssertSqlSafe, Row};
use tokio_stream::StreamExt as _;

use super::{SqlStore, Store as _};

/// One table's copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub table: String,
    pub rows: u64,
}

/// What the check after the copy compared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checked {
    pub policy_versions: usize,
    pub members: usize,
    pub audit_writers: usize,
    pub audit_records: u64,
}

/// A target column: its name and how values are read for it.
#[derive(Debug, Clone)]
struct Column {
    name: String,
    kind: Kind,
    identity: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Integer,
    Text,
    Bytes,
}

/// Tables that others reference go first.
const PARENTS: &[&str] = &["policy_versions"];
/// Bookkeeping of each database, not state to move.
const SKIPPED: &[&str] = &["schema_migrations", "replicas", "duties"];

/// Copies everything `from` holds into `to`, which must be an empty PostgreSQL store.
pub async fn copy(from: &SqlStore, to: &SqlStore) -> Result<Vec<Copied>, String> {
    if to.dialect() != super::Dialect::Postgres {
        return Err("--to must be a postgres:// database".to_owned());
    }
    if from.ca().await.map_err(|e| e.to_string())?.is_none() {
        return Err(
            "the source holds no CA yet (it was kept in files before this version): \
                    start signet-cp on it once, stop it, then migrate"
                .to_owned(),
        );
    }
    let tables = target_tables(to).await?;
    let mut target = to.pool().begin().await.map_err(|e| e.to_string())?;
    for (table, _) in &tables {
        let rows: i64 =
            sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM \"{table}\"")))
                .fetch_one(&mut *target)
                .await
                .map_err(|e| e.to_string())?;
        if rows > 0 {
            return Err(format!(
                "the target already holds state (`{table}` has {rows} rows): migrate into an \
                 empty database"
            ));
        }
    }
    // One snapshot of the source: a control plane still writing to it would be caught
    // half-way otherwise.
    let mut source = from.pool().begin().await.map_err(|e| e.to_string())?;
    let mut copied = Vec::with_capacity(tables.len());
    for (table, columns) in &tables {
        let rows = copy_table(&mut source, &mut target, table, columns).await?;
        for column in columns.iter().filter(|c| c.identity) {
            // Names from this database's own catalogue.
            sqlx::query(AssertSqlSafe(format!(
                "SELECT setval(pg_get_serial_sequence('{table}', '{name}'), \
                 GREATEST((SELECT MAX(\"{name}\") FROM \"{table}\"), 1))",
                name = column.name
            )))
            .execute(&mut *target)
            .await
            .map_err(|e| format!("`{table}`: {e}"))?;
        }
        copied.push(Copied {
            table: table.clone(),
            rows,
        });
    }
    target.commit().await.map_err(|e| e.to_string())?;
    Ok(copied)
}

/// The target's tables (parents first) and their columns.
async fn target_tables(to: &SqlStore) -> Result<Vec<(String, Vec<Column>)>, String> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = \
         current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name",
    )
    .fetch_all(to.pool())
    .await
    .map_err(|e| e.to_string())?;
    let mut names: Vec<String> = names
        .into_iter()
        .filter(|n| !SKIPPED.contains(&n.as_str()))
        .collect();
    names.sort_by_key(|n| !PARENTS.contains(&n.as_str()));
    let mut tables = Vec::with_capacity(names.len());
    for table in names {
        let rows = sqlx::query(
            "SELECT column_name::text AS column_name, data_type::text AS data_type, \
             is_identity::text AS is_identity FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
        )
        .bind(&table)
        .fetch_all(to.pool())
        .await
        .map_err(|e| e.to_string())?;
        let mut columns = Vec::with_capacity(rows.len());
        for r in rows {
            let name: String = r.try_get("column_name").map_err(|e| e.to_string())?;
            let data_type: String = r.try_get("data_type").map_err(|e| e.to_string())?;
            let identity: String = r.try_get("is_identity").map_err(|e| e.to_string())?;
            let kind = match data_type.as_str() {
                "bigint" | "integer" | "smallint" => Kind::Integer,
                "text" | "character varying" => Kind::Text,
                "bytea" => Kind::Bytes,
                other => return Err(format!("`{table}.{name}`: no copy for type `{other}`")),
            };
            columns.push(Column {
                name,
                kind,
                identity: identity == "YES",
            });
        }
        tables.push((table, columns));
    }
    Ok(tables)
}

async fn copy_table(
    source: &mut AnyConnection,
    target: &mut AnyConnection,
    table: &str,
    columns: &[Column],
) -> Result<u64, String> {
    let names = columns
        .iter()
        .map(|c| format!("\"{}\"", c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let params = (1..=columns.len())
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let insert = format!("INSERT INTO \"{table}\" ({names}) VALUES ({params})");
    let select = format!("SELECT {names} FROM \"{table}\"");
    // Read whole before writing: the two connections are used in turn.
    let rows: Vec<sqlx::any::AnyRow> = sqlx::query(AssertSqlSafe(select))
        .fetch_all(&mut *source)
        .await
        .map_err(|e| format!("reading `{table}`: {e}"))?;
    let mut copied = 0;
    for row in &rows {
        let mut query = sqlx::query(AssertSqlSafe(insert.as_str()));
        for (i, column) in columns.iter().enumerate() {
            let read = |e: sqlx::Error| format!("`{table}.{}`: {e}", column.name);
            query = match column.kind {
                Kind::Integer => query.bind(row.try_get::<Option<i64>, _>(i).map_err(read)?),
                Kind::Text => query.bind(row.try_get::<Option<String>, _>(i).map_err(read)?),
                Kind::Bytes => query.bind(row.try_get::<Option<Vec<u8>>, _>(i).map_err(read)?),
            };
        }
        query
            .execute(&mut *target)
            .await
            .map_err(|e| format!("writing `{table}`: {e}"))?;
        copied += 1;
    }
    Ok(copied)
}

/// Compares the copy with its source; the first difference is the error.
pub async fn check(from: &SqlStore, to: &SqlStore, copied: &[Copied]) -> Result<Checked, String> {
    for c in copied {
        let rows: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM \"{}\"",
            c.table
        )))
        .fetch_one(to.pool())
        .await
        .map_err(|e| e.to_string())?;
        if u64::try_from(rows).ok() != Some(c.rows) {
            return Err(format!(
                "`{}`: {} rows copied, {rows} found",
                c.table, c.rows
            ));
        }
    }
    let e = |e: super::StoreError| e.to_string();
    let history = from.policy_history().await.map_err(e)?;
    if history != to.policy_history().await.map_err(e)? {
        return Err("the policy history differs".to_owned());
    }
    for version in &history {
        let a = from.policy_version(version.version).await.map_err(e)?;
        let b = to.policy_version(version.version).await.map_err(e)?;
        if a != b {
            return Err(format!("policy version {} differs", version.version));
        }
    }
    let members = from.members().await.map_err(e)?;
    if members != to.members().await.map_err(e)? {
        return Err("the registry differs".to_owned());
    }
    if from.ca().await.map_err(e)? != to.ca().await.map_err(e)? {
        return Err("the sealed CA differs".to_owned());
    }
    let source = chains(from).await?;
    let target = chains(to).await?;
    for (writer, chain) in &target {
        if let Some(broken) = &chain.broken {
            return Err(format!(
                "the audit chain of `{writer}` does not link: {broken}"
            ));
        }
    }
    if source != target {
        let differing = source
            .keys()
            .chain(target.keys())
            .find(|w| source.get(*w) != target.get(*w))
            .cloned()
            .unwrap_or_default();
        return Err(format!("the audit records of `{differing}` differ"));
    }
    Ok(Checked {
        policy_versions: history.len(),
        members: members.len(),
        audit_writers: target.len(),
        audit_records: target.values().map(|c| c.records).sum(),
    })
}

/// One writer's records as a store holds them.
#[derive(Debug, PartialEq, Eq)]
struct Chain {
    records: u64,
    /// SHA-256 over every line in order.
    digest: Vec<u8>,
    /// Where a record does not name its predecessor's hash.
    broken: Option<String>,
}

/// A chain being read: the running digest, what is known so far, and the last record's
/// number and hash.
type Reading = (ring::digest::Context, Chain, Option<(u64, String)>);

async fn chains(store: &SqlStore) -> Result<BTreeMap<String, Chain>, String> {
    let mut rows = sqlx::query("SELECT writer, seq, line FROM audit_records ORDER BY writer, seq")
        .fetch(store.pool());
    let mut out: BTreeMap<String, Reading> = BTreeMap::new();
    while let Some(row) = rows.next().await {
        let row = row.map_err(|e| e.to_string())?;
        let writer: String = row.try_get("writer").map_err(|e| e.to_string())?;
        let seq: i64 = row.try_get("seq").map_err(|e| e.to_string())?;
        let seq = u64::try_from(seq).unwrap_or(0);
        let line: String = row.try_get("line").map_err(|e| e.to_string())?;
        let (digest, chain, previous) = out.entry(writer).or_insert_with(|| {
            (
                ring::digest::Context::new(&ring::digest::SHA256),
                Chain {
                    records: 0,
                    digest: Vec::new(),
                    broken: None,
                },
                None,
            )
        });
        digest.update(line.as_bytes());
        digest.update(b"\n");
        chain.records += 1;
        if let Some((before, hash)) = previous.as_ref()
            && *before + 1 == seq
            && chain.broken.is_none()
        {
            let linked = serde_json::from_str::<signet_audit::record::Record>(&line)
                .is_ok_and(|r| r.prev == *hash);
            if !linked {
                chain.broken = Some(format!("record {seq} does not chain to record {before}"));
            }
        }
        *previous = Some((seq, signet_audit::record::hash_line(line.as_bytes())));
    }
    Ok(out
        .into_iter()
        .map(|(writer, (digest, mut chain, _))| {
            chain.digest = digest.finish().as_ref().to_vec();
            (writer, chain)
        })
        .collect())
}
