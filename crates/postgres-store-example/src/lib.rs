//! A PostgreSQL [`SessionStore`] for `tower-mcp-session`, written against the crate's
//! public API alone: an example of what a backend has to do, and proof that the
//! contract is small enough to do it in a few hundred lines.
//!
//! # Design
//!
//! - **Time is the database's.** Every deadline is computed and compared with
//!   `statement_timestamp()`, so instances with skewed clocks agree on expiry.
//!   (`now()` would be the transaction's start, which goes stale while `reserve` waits
//!   for its lock.)
//! - **The cap** is a count taken under a transaction-scoped advisory lock: `reserve`
//!   locks, counts live sessions plus unlapsed slots, and inserts a slot only below the
//!   cap. Only `reserve` takes the lock, so the request path never waits on it; creates
//!   and deletes move the count by committing atomically (a slot becomes a session in
//!   one transaction), which a reserve sees entirely or not at all. A counter row would
//!   need every expiry and lapse to decrement it, which nobody is there to do; a
//!   `SERIALIZABLE` transaction would need a retry loop for the same effect.
//! - **Sessions** are one row each; `expires_at` is the earlier of the idle and the
//!   lifetime deadline, so "live" is one indexed comparison, and the reason an expired
//!   session ended is whether `expires_at` reached `lifetime_end`.
//! - **Exactly once** comes from row locks: `delete` is `DELETE … RETURNING`, and
//!   `take_expired` deletes with `FOR UPDATE SKIP LOCKED`, so concurrent sweepers on
//!   other instances take disjoint rows. A session expired at most one sweep interval
//!   ago is reported on the next `take_expired`.
//! - A `create` over an id that only an expired session still holds moves that session
//!   to a small `unreported` table first, so its expiry is still reported once.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio_postgres::{NoTls, Row};
use tower_mcp_session::store::{
    Attributes, BoxFuture, Expired, ExpiredBatch, Expiry, Replaced, SessionPage, SessionStore, Slot, StoreError,
};
use tower_mcp_session::{CloseReason, Principal, ProtocolVersion, SessionId, SessionRecord};

/// A [`SessionStore`] keeping sessions in PostgreSQL tables in one schema.
///
/// Every instance of a server that shares the schema shares the sessions, the cap and
/// the expiry reports. Cloning is cheap: clones share the connection pool.
///
/// ```no_run
/// use postgres_session_store_example::PgSessionStore;
/// use tower_mcp_session::McpSessionLayer;
///
/// # async fn run() -> Result<(), tower_mcp_session::store::StoreError> {
/// let store = PgSessionStore::connect("host=127.0.0.1 user=postgres dbname=test", "mcp").await?;
/// store.migrate().await?;
/// let layer = McpSessionLayer::builder().store(store).build();
/// # let _ = layer;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PgSessionStore {
    pool: Pool,
    schema: Arc<str>,
    sql: Arc<Sql>,
}

impl std::fmt::Debug for PgSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSessionStore")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl PgSessionStore {
    /// Connect with a `tokio-postgres` connection string (no TLS) and a pool of up to 16
    /// connections, keeping the tables in `schema`. Connections are made on first use.
    pub async fn connect(conn_str: &str, schema: &str) -> Result<Self, StoreError> {
        let config: tokio_postgres::Config = conn_str.parse().map_err(StoreError::backend)?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(16)
            .build()
            .map_err(StoreError::backend)?;
        Ok(Self::new(pool, schema))
    }

    /// A store on an existing pool, keeping the tables in `schema`.
    pub fn new(pool: Pool, schema: &str) -> Self {
        Self {
            pool,
            schema: schema.into(),
            sql: Arc::new(Sql::new(&quote(schema))),
        }
    }

    /// The schema the tables live in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The connection pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Create the schema and the tables if they do not exist. Run it once, before the
    /// first server instance starts (concurrent runs can race in the catalog).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let client = self.pool.get().await.map_err(StoreError::backend)?;
        client
            .batch_execute(&self.sql.migrate)
            .await
            .map_err(StoreError::backend)
    }

    /// Run `step` on a pooled connection, mapping every driver failure to `Backend`.
    fn with<'a, T, F, Fut>(&'a self, step: F) -> BoxFuture<'a, Result<T, StoreError>>
    where
        T: 'a,
        F: FnOnce(deadpool_postgres::Object, &'a Sql) -> Fut + Send + 'a,
        Fut: Future<Output = Result<T, Failure>> + Send + 'a,
    {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(StoreError::backend)?;
            step(client, &self.sql).await.map_err(Failure::into_store)
        })
    }
}

/// A failure inside a step: the driver's, or the store's own refusal.
enum Failure {
    Db(tokio_postgres::Error),
    Store(StoreError),
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Db(e)
    }
}

impl Failure {
    fn into_store(self) -> StoreError {
        match self {
            Self::Db(e) => StoreError::backend(e),
            Self::Store(e) => e,
        }
    }
}

/// A schema name as a quoted identifier, so any name is safe to splice into SQL.
fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// Durations go to the database as microseconds; clamped to a century so the deadline
/// arithmetic never leaves PostgreSQL's timestamp range.
fn micros(d: Duration) -> i64 {
    const CENTURY: u128 = 100 * 365 * 24 * 3600 * 1_000_000;
    d.as_micros().min(CENTURY) as i64
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The columns a record is read back from, in `record`'s order.
/// The most sessions one `list` page holds, whatever `max` says.
const MAX_PAGE: usize = 1000;

const RECORD: &str = "id, protocol_version, created_at, client_info, client_capabilities, principal";

/// A session row back into a record.
fn record(row: &Row) -> Result<SessionRecord, Failure> {
    let corrupt = |what: &str| Failure::Store(StoreError::backend(std::io::Error::other(format!("stored {what}"))));
    let id = SessionId::parse(row.try_get(0)?).ok_or_else(|| corrupt("session id is invalid"))?;
    let version: ProtocolVersion = row
        .try_get::<_, &str>(1)?
        .parse()
        .map_err(|_| corrupt("protocol version is invalid"))?;
    let created_at: SystemTime = row.try_get(2)?;
    let raw = |i: usize| -> Result<Option<Box<RawValue>>, Failure> {
        match row.try_get::<_, Option<String>>(i)? {
            Some(text) => RawValue::from_string(text)
                .map(Some)
                .map_err(|_| corrupt("client JSON is invalid")),
            None => Ok(None),
        }
    };
    let principal: Option<String> = row.try_get(5)?;
    Ok(SessionRecord::new(id, version)
        .with_created_at(created_at)
        .with_client(raw(3)?, raw(4)?)
        .with_principal(principal.map(Principal::new)))
}

/// The statements, with the schema spliced in once.
struct Sql {
    migrate: String,
    reserve: String,
    cancel: String,
    bury: String,
    insert: String,
    consume: String,
    load: String,
    refresh: String,
    touch: String,
    delete: String,
    attributes: String,
    replace: String,
    take_queued: String,
    take_expired: String,
    idle: String,
    idle_for: String,
    list_first: String,
    list_after: String,
}

impl Sql {
    fn new(s: &str) -> Self {
        // `now` in every statement below: the database clock, fixed for the statement.
        let live = "expires_at > statement_timestamp()";
        let us = "* interval '1 microsecond'";
        Self {
            migrate: format!(
                "CREATE SCHEMA IF NOT EXISTS {s};
                 CREATE TABLE IF NOT EXISTS {s}.sessions (
                     id text PRIMARY KEY,
                     protocol_version text NOT NULL,
                     created_at timestamptz NOT NULL,
                     client_info text,
                     client_capabilities text,
                     principal text,
                     attributes jsonb NOT NULL,
                     version bigint NOT NULL,
                     last_active timestamptz NOT NULL,
                     expires_at timestamptz NOT NULL,
                     lifetime_end timestamptz NOT NULL);
                 CREATE INDEX IF NOT EXISTS sessions_expires_at ON {s}.sessions (expires_at);
                 CREATE INDEX IF NOT EXISTS sessions_last_active ON {s}.sessions (last_active);
                 CREATE TABLE IF NOT EXISTS {s}.slots (
                     token bigserial PRIMARY KEY,
                     lapses_at timestamptz NOT NULL);
                 CREATE TABLE IF NOT EXISTS {s}.unreported (
                     seq bigserial PRIMARY KEY,
                     id text NOT NULL,
                     lifetime boolean NOT NULL);"
            ),
            // Run under the advisory lock; lapsed slots are cleared on the way, so the
            // table never holds more than the cap plus what lapsed since the last reserve.
            reserve: format!(
                "WITH lapsed AS (DELETE FROM {s}.slots WHERE lapses_at <= statement_timestamp())
                 INSERT INTO {s}.slots (lapses_at)
                 SELECT statement_timestamp() + $2::int8 {us}
                 WHERE (SELECT count(*) FROM {s}.sessions WHERE {live})
                     + (SELECT count(*) FROM {s}.slots WHERE lapses_at > statement_timestamp()) < $1::int8
                 RETURNING token"
            ),
            cancel: format!("DELETE FROM {s}.slots WHERE token = $1"),
            bury: format!(
                "WITH old AS (DELETE FROM {s}.sessions WHERE id = $1 AND NOT ({live})
                              RETURNING id, expires_at = lifetime_end AS lifetime)
                 INSERT INTO {s}.unreported (id, lifetime) SELECT id, lifetime FROM old"
            ),
            insert: format!(
                "INSERT INTO {s}.sessions ({RECORD}, attributes, version, last_active, expires_at, lifetime_end)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 0, statement_timestamp(),
                         statement_timestamp() + least($8::int8, $9::int8) {us},
                         statement_timestamp() + $9::int8 {us})
                 ON CONFLICT (id) DO NOTHING"
            ),
            consume: format!("DELETE FROM {s}.slots WHERE token = $1"),
            load: format!("SELECT {RECORD} FROM {s}.sessions WHERE id = $1 AND {live}"),
            refresh: format!(
                "UPDATE {s}.sessions SET last_active = statement_timestamp(),
                     expires_at = least(statement_timestamp() + $2::int8 {us}, lifetime_end)
                 WHERE id = $1 AND {live} RETURNING {RECORD}"
            ),
            touch: format!(
                "UPDATE {s}.sessions SET last_active = statement_timestamp(),
                     expires_at = least(statement_timestamp() + $2::int8 {us}, lifetime_end)
                 WHERE id = $1 AND {live}"
            ),
            delete: format!("DELETE FROM {s}.sessions WHERE id = $1 AND {live}"),
            attributes: format!("SELECT attributes, version FROM {s}.sessions WHERE id = $1 AND {live}"),
            // One statement: the update waits for a concurrent writer and re-checks the
            // version; the select tells Conflict from Missing.
            replace: format!(
                "WITH present AS (SELECT 1 FROM {s}.sessions WHERE id = $1 AND {live}),
                      done AS (UPDATE {s}.sessions SET attributes = $3, version = version + 1
                               WHERE id = $1 AND {live} AND version = $2 RETURNING 1)
                 SELECT EXISTS (SELECT 1 FROM done), EXISTS (SELECT 1 FROM present)"
            ),
            take_queued: format!(
                "DELETE FROM {s}.unreported WHERE seq IN
                     (SELECT seq FROM {s}.unreported ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED)
                 RETURNING id, lifetime"
            ),
            take_expired: format!(
                "DELETE FROM {s}.sessions WHERE id IN
                     (SELECT id FROM {s}.sessions WHERE NOT ({live})
                      ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)
                 RETURNING id, expires_at = lifetime_end"
            ),
            idle: format!(
                "SELECT id FROM {s}.sessions
                 WHERE {live} AND last_active <= statement_timestamp() - $1::int8 {us}
                 ORDER BY last_active LIMIT $2"
            ),
            // `last_active` is written by the statements that create and refresh, by
            // the same clock this reads.
            idle_for: format!(
                "SELECT greatest(0, extract(epoch FROM statement_timestamp() - last_active) * 1000000)::int8
                 FROM {s}.sessions WHERE id = $1 AND {live}"
            ),
            // Keyset paging on the primary key: the cursor is the last id of the page,
            // so a walk sees each id once however rows come and go meanwhile.
            list_first: format!("SELECT id FROM {s}.sessions WHERE {live} ORDER BY id LIMIT $1"),
            list_after: format!("SELECT id FROM {s}.sessions WHERE {live} AND id > $1 ORDER BY id LIMIT $2"),
        }
    }
}

impl SessionStore for PgSessionStore {
    fn reserve(&self, cap: usize, hold: Duration) -> BoxFuture<'_, Result<Slot, StoreError>> {
        let lock = format!("tower-mcp-session reserve {}", self.schema);
        self.with(move |mut client, sql| async move {
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", &[&lock])
                .await?;
            let reserve = tx.prepare_cached(&sql.reserve).await?;
            let row = tx.query_opt(&reserve, &[&count(cap), &micros(hold)]).await?;
            tx.commit().await?;
            match row {
                Some(row) => Ok(Slot::new(row.try_get::<_, i64>(0)? as u64)),
                None => Err(Failure::Store(StoreError::Full)),
            }
        })
    }

    fn cancel(&self, slot: Slot) -> BoxFuture<'_, Result<(), StoreError>> {
        self.with(move |client, sql| async move {
            client.execute(&sql.cancel, &[&(slot.token() as i64)]).await?;
            Ok(())
        })
    }

    fn create<'a>(
        &'a self,
        record: &'a SessionRecord,
        attributes: &'a Map<String, Value>,
        expiry: Expiry,
        slot: Option<Slot>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.with(move |mut client, sql| async move {
            let tx = client.transaction().await?;
            let id = record.id().as_str();
            tx.execute(&sql.bury, &[&id]).await?;
            let insert = tx.prepare_cached(&sql.insert).await?;
            let inserted = tx
                .execute(
                    &insert,
                    &[
                        &id,
                        &record.protocol_version().to_string(),
                        &record.created_at(),
                        &record.client_info().map(RawValue::get),
                        &record.client_capabilities().map(RawValue::get),
                        &record.principal().map(Principal::as_str),
                        &Value::Object(attributes.clone()),
                        &micros(expiry.idle),
                        &micros(expiry.lifetime),
                    ],
                )
                .await?;
            if inserted == 0 {
                // Dropping the transaction rolls back: nothing written, the slot kept.
                return Err(Failure::Store(StoreError::Exists));
            }
            if let Some(slot) = slot {
                tx.execute(&sql.consume, &[&(slot.token() as i64)]).await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn load<'a>(
        &'a self,
        id: &'a SessionId,
        refresh: Option<Duration>,
    ) -> BoxFuture<'a, Result<Option<Arc<SessionRecord>>, StoreError>> {
        self.with(move |client, sql| async move {
            let row = match refresh {
                Some(idle) => {
                    let refresh = client.prepare_cached(&sql.refresh).await?;
                    client.query_opt(&refresh, &[&id.as_str(), &micros(idle)]).await?
                }
                None => {
                    let load = client.prepare_cached(&sql.load).await?;
                    client.query_opt(&load, &[&id.as_str()]).await?
                }
            };
            row.map(|row| record(&row).map(Arc::new)).transpose()
        })
    }

    fn touch<'a>(&'a self, id: &'a SessionId, idle: Duration) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.with(move |client, sql| async move {
            let touch = client.prepare_cached(&sql.touch).await?;
            Ok(client.execute(&touch, &[&id.as_str(), &micros(idle)]).await? == 1)
        })
    }

    fn delete<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.with(move |client, sql| async move {
            let delete = client.prepare_cached(&sql.delete).await?;
            Ok(client.execute(&delete, &[&id.as_str()]).await? == 1)
        })
    }

    fn attributes<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Option<Attributes>, StoreError>> {
        self.with(move |client, sql| async move {
            let attributes = client.prepare_cached(&sql.attributes).await?;
            let Some(row) = client.query_opt(&attributes, &[&id.as_str()]).await? else {
                return Ok(None);
            };
            let map = match row.try_get::<_, Value>(0)? {
                Value::Object(map) => map,
                _ => Map::new(),
            };
            let version = row.try_get::<_, i64>(1)? as u64;
            Ok(Some(Attributes { map, version }))
        })
    }

    fn replace_attributes<'a>(
        &'a self,
        id: &'a SessionId,
        expected: u64,
        map: &'a Map<String, Value>,
    ) -> BoxFuture<'a, Result<Replaced, StoreError>> {
        self.with(move |client, sql| async move {
            let Ok(expected) = i64::try_from(expected) else {
                return Ok(Replaced::Conflict);
            };
            let replace = client.prepare_cached(&sql.replace).await?;
            let map = Value::Object(map.clone());
            let row = client.query_one(&replace, &[&id.as_str(), &expected, &map]).await?;
            Ok(match (row.try_get(0)?, row.try_get(1)?) {
                (true, _) => Replaced::Done,
                (false, true) => Replaced::Conflict,
                (false, false) => Replaced::Missing,
            })
        })
    }

    fn take_expired(&self, max: usize) -> BoxFuture<'_, Result<ExpiredBatch, StoreError>> {
        self.with(move |client, sql| async move {
            let mut rows = client.query(&sql.take_queued, &[&count(max)]).await?;
            if rows.len() < max {
                let take = client.prepare_cached(&sql.take_expired).await?;
                rows.extend(client.query(&take, &[&count(max - rows.len())]).await?);
            }
            let mut sessions = Vec::with_capacity(rows.len());
            for row in &rows {
                // A row with an id that no longer parses cannot be reported; it is gone.
                let Some(id) = SessionId::parse(row.try_get(0)?) else {
                    continue;
                };
                let reason = if row.try_get(1)? {
                    CloseReason::Lifetime
                } else {
                    CloseReason::Idle
                };
                sessions.push(Expired { id, reason });
            }
            Ok(ExpiredBatch {
                more: rows.len() >= max,
                sessions,
            })
        })
    }

    fn idle_sessions(&self, idle_for: Duration, max: usize) -> BoxFuture<'_, Result<Vec<SessionId>, StoreError>> {
        self.with(move |client, sql| async move {
            let idle = client.prepare_cached(&sql.idle).await?;
            let rows = client.query(&idle, &[&micros(idle_for), &count(max)]).await?;
            let mut ids = Vec::with_capacity(rows.len());
            for row in &rows {
                ids.extend(SessionId::parse(row.try_get(0)?));
            }
            Ok(ids)
        })
    }

    fn idle_for<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Option<Duration>, StoreError>> {
        self.with(move |client, sql| async move {
            let idle_for = client.prepare_cached(&sql.idle_for).await?;
            let row = client.query_opt(&idle_for, &[&id.as_str()]).await?;
            let micros = row.map(|row| row.try_get::<_, i64>(0)).transpose()?;
            Ok(micros.map(|us| Duration::from_micros(us.max(0) as u64)))
        })
    }

    fn list<'a>(&'a self, cursor: Option<&'a str>, max: usize) -> BoxFuture<'a, Result<SessionPage, StoreError>> {
        // One row more than the page tells whether another page follows.
        let want = max.clamp(1, MAX_PAGE);
        self.with(move |client, sql| async move {
            // Every cursor this store gives is a session id; anything else (a NUL byte
            // PostgreSQL would refuse, say) ends the walk.
            if cursor.is_some_and(|c| SessionId::parse(c).is_none()) {
                return Ok(SessionPage::default());
            }
            let rows = match cursor {
                None => {
                    let first = client.prepare_cached(&sql.list_first).await?;
                    client.query(&first, &[&count(want + 1)]).await?
                }
                Some(after) => {
                    let next = client.prepare_cached(&sql.list_after).await?;
                    client.query(&next, &[&after, &count(want + 1)]).await?
                }
            };
            let more = rows.len() > want;
            let mut sessions = Vec::with_capacity(want);
            for row in rows.iter().take(want) {
                sessions.extend(SessionId::parse(row.try_get(0)?));
            }
            // The last row read, parsed or not, is where the next page starts.
            let next = match (more, rows.get(want - 1)) {
                (true, Some(last)) => Some(last.try_get::<_, String>(0)?),
                _ => None,
            };
            Ok(SessionPage { sessions, next })
        })
    }
}
