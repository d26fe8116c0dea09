//! Resource tables: every resource kind of a service is one table with the
//! same bookkeeping columns (name, parent, account, times, revision, body)
//! plus one column per documented filter field. The body is the encoded
//! protobuf resource; the columns exist for filters, ordering, keyset
//! pagination and authorisation scoping.

use sqlx::Row;

use crate::error::{Error, Result};
use crate::filter::{self, Expr, Field, FieldType, Value};
use crate::on_conn;
use crate::paging::{Cursor, PageQuery};
use crate::storage::{Conn, is_unique_violation};

/// A resource kind and its table.
#[derive(Debug)]
pub struct Kind {
    /// Type name for errors, e.g. "Account".
    pub resource_type: &'static str,
    pub table: &'static str,
    /// Fields callers may filter and order on, each with its column.
    pub fields: &'static [Field],
}

/// One stored resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub name: String,
    pub parent: String,
    /// "accounts/{account}" for resources of an account; empty otherwise.
    pub account: String,
    pub create_time: i64,
    pub update_time: i64,
    /// 0 while not soft-deleted.
    pub delete_time: i64,
    /// Increases by one with every change; the etag is derived from it.
    pub revision: i64,
    pub body: Vec<u8>,
}

impl Stored {
    pub fn etag(&self) -> String {
        etag(self.revision)
    }
}

/// The etag of a revision. Opaque to callers; quoted as HTTP etags are.
pub fn etag(revision: i64) -> String {
    format!("\"{revision}\"")
}

/// Checks a caller's etag (if any) against the stored revision.
pub fn check_etag(name: &str, given: &str, stored: &Stored) -> Result<()> {
    if !given.is_empty() && given != stored.etag() {
        return Err(Error::EtagMismatch {
            name: name.to_string(),
            current: stored.etag(),
        });
    }
    Ok(())
}

/// Which resources a list covers.
#[derive(Debug, Clone, PartialEq)]
pub enum Scope {
    /// Children of exactly this parent ("" for top-level collections).
    Parent(String),
    /// Every resource of the kind in one account (a "-" wildcard parent).
    Account(String),
    /// Every resource of the kind ("cases/-": the clocks of every case).
    All,
}

/// A list request as the store runs it.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub scope: Scope,
    /// Extra restriction to one account (client principals).
    pub account: Option<String>,
    pub filter: Option<Expr>,
    /// The order field (from `Kind::fields`) and whether descending; `None`
    /// orders by name.
    pub order: Option<(Field, bool)>,
    pub show_deleted: bool,
    pub after: Option<Cursor>,
    pub limit: usize,
}

const BASE: &str = "name, parent, account, create_time, update_time, delete_time, revision, body";

fn bind_all<'q, DB: sqlx::Database>(
    mut q: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
    params: &'q [Value],
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    for p in params {
        q = match p {
            Value::Text(s) => q.bind(s.clone()),
            Value::Int(i) => q.bind(*i),
        };
    }
    q
}

fn stored_from<R: Row>(row: &R) -> std::result::Result<Stored, sqlx::Error>
where
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    Ok(Stored {
        name: row.try_get(0)?,
        parent: row.try_get(1)?,
        account: row.try_get(2)?,
        create_time: row.try_get(3)?,
        update_time: row.try_get(4)?,
        delete_time: row.try_get(5)?,
        revision: row.try_get(6)?,
        body: row.try_get(7)?,
    })
}

/// Inserts a new resource; ALREADY_EXISTS if the name is taken.
pub async fn insert(
    conn: &mut Conn<'_>,
    kind: &Kind,
    r: &Stored,
    columns: &[(&'static str, Value)],
) -> Result<()> {
    // That these are the kind's filter fields, and columns of its table, each
    // service's `testing::assert_columns_agree` test proves on both databases.
    let extra = columns;
    let mut sql = format!("INSERT INTO {} ({BASE}", kind.table);
    for (c, _) in extra {
        sql.push_str(", ");
        sql.push_str(c);
    }
    sql.push_str(") VALUES ($1, $2, $3, $4, $5, $6, $7, $8");
    for i in 0..extra.len() {
        sql.push_str(&format!(", ${}", i + 9));
    }
    sql.push(')');
    let params: Vec<Value> = extra.iter().map(|(_, v)| v.clone()).collect();
    let result = on_conn!(conn, c => {
        let q = sqlx::query(&sql)
            .bind(&r.name)
            .bind(&r.parent)
            .bind(&r.account)
            .bind(r.create_time)
            .bind(r.update_time)
            .bind(r.delete_time)
            .bind(r.revision)
            .bind(&r.body);
        bind_all(q, &params).execute(&mut **c).await.map(drop)
    });
    match result {
        Err(e) if is_unique_violation(&e) => Err(Error::AlreadyExists {
            resource_type: kind.resource_type,
            name: r.name.clone(),
        }),
        other => Ok(other?),
    }
}

/// Writes a changed resource whose revision the caller read as
/// `read_revision`; a concurrent writer in between makes it ABORTED.
pub async fn update(
    conn: &mut Conn<'_>,
    kind: &Kind,
    r: &Stored,
    read_revision: i64,
    columns: &[(&'static str, Value)],
) -> Result<()> {
    // That these are the kind's filter fields, and columns of its table, each
    // service's `testing::assert_columns_agree` test proves on both databases.
    let extra = columns;
    let mut sql = format!(
        "UPDATE {} SET update_time = $1, delete_time = $2, revision = $3, body = $4",
        kind.table
    );
    for (i, (c, _)) in extra.iter().enumerate() {
        sql.push_str(&format!(", {c} = ${}", i + 7));
    }
    sql.push_str(" WHERE name = $5 AND revision = $6");
    let params: Vec<Value> = extra.iter().map(|(_, v)| v.clone()).collect();
    let affected = on_conn!(conn, c => {
        let q = sqlx::query(&sql)
            .bind(r.update_time)
            .bind(r.delete_time)
            .bind(r.revision)
            .bind(&r.body)
            .bind(&r.name)
            .bind(read_revision);
        bind_all(q, &params).execute(&mut **c).await?.rows_affected()
    });
    if affected == 0 {
        return Err(Error::EtagMismatch {
            name: r.name.clone(),
            current: "(changed concurrently)".into(),
        });
    }
    Ok(())
}

/// Rewrites the body and filter columns of `name` as read at `revision`
/// without making it a new revision: fields derived from other data (a
/// case's SLA summary) change no etag. False when a change came in between;
/// that change wins and derives them again.
pub async fn update_derived(
    conn: &mut Conn<'_>,
    kind: &Kind,
    name: &str,
    revision: i64,
    body: &[u8],
    columns: &[(&'static str, Value)],
) -> Result<bool> {
    let mut sql = format!("UPDATE {} SET body = $1", kind.table);
    for (i, (c, _)) in columns.iter().enumerate() {
        sql.push_str(&format!(", {c} = ${}", i + 4));
    }
    sql.push_str(" WHERE name = $2 AND revision = $3");
    let params: Vec<Value> = columns.iter().map(|(_, v)| v.clone()).collect();
    let affected = on_conn!(conn, c => {
        let q = sqlx::query(&sql).bind(body).bind(name).bind(revision);
        bind_all(q, &params).execute(&mut **c).await?.rows_affected()
    });
    Ok(affected > 0)
}

/// Removes a resource for good.
pub async fn delete(conn: &mut Conn<'_>, kind: &Kind, name: &str) -> Result<()> {
    let sql = format!("DELETE FROM {} WHERE name = $1", kind.table);
    on_conn!(conn, c => sqlx::query(&sql).bind(name).execute(&mut **c).await.map(drop))?;
    Ok(())
}

/// Reads the resources of `names` that exist, in one query (a timer sweep
/// reads its whole batch at once).
pub async fn get_many(conn: &mut Conn<'_>, kind: &Kind, names: &[&str]) -> Result<Vec<Stored>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let marks: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT {BASE} FROM {} WHERE name IN ({})",
        kind.table,
        marks.join(", ")
    );
    let params: Vec<Value> = names.iter().map(|n| Value::Text(n.to_string())).collect();
    let rows = on_conn!(conn, c => {
        let rows = bind_all(sqlx::query(&sql), &params).fetch_all(&mut **c).await?;
        rows.iter().map(stored_from).collect::<std::result::Result<Vec<_>, _>>()?
    });
    Ok(rows)
}

/// Reads one resource, or `None`.
pub async fn get(conn: &mut Conn<'_>, kind: &Kind, name: &str) -> Result<Option<Stored>> {
    let sql = format!("SELECT {BASE} FROM {} WHERE name = $1", kind.table);
    let row = on_conn!(conn, c => {
        match sqlx::query(&sql).bind(name).fetch_optional(&mut **c).await? {
            Some(row) => Some(stored_from(&row)?),
            None => None,
        }
    });
    Ok(row)
}

/// Reads one resource, locking it for the rest of the transaction on
/// PostgreSQL (SQLite transactions already serialise writers).
pub async fn get_for_update(
    conn: &mut Conn<'_>,
    kind: &Kind,
    name: &str,
) -> Result<Option<Stored>> {
    let lock = matches!(conn, Conn::Postgres(_));
    let sql = format!(
        "SELECT {BASE} FROM {} WHERE name = $1{}",
        kind.table,
        if lock { " FOR UPDATE" } else { "" }
    );
    let row = on_conn!(conn, c => {
        match sqlx::query(&sql).bind(name).fetch_optional(&mut **c).await? {
            Some(row) => Some(stored_from(&row)?),
            None => None,
        }
    });
    Ok(row)
}

/// Counts resources in a scope (e.g. sites of an account before deleting it).
pub async fn count(conn: &mut Conn<'_>, kind: &Kind, scope: &Scope) -> Result<i64> {
    let (condition, value) = match scope {
        Scope::Parent(p) => (" WHERE parent = $1", Some(p)),
        Scope::Account(a) => (" WHERE account = $1", Some(a)),
        Scope::All => ("", None),
    };
    let sql = format!("SELECT COUNT(*) FROM {}{condition}", kind.table);
    let n: i64 = on_conn!(conn, c => {
        let mut q = sqlx::query_scalar(&sql);
        if let Some(v) = value {
            q = q.bind(v);
        }
        q.fetch_one(&mut **c).await?
    });
    Ok(n)
}

/// The conditions every row of a list matches (scope, account, deletion,
/// filter), appended to `sql` after its `WHERE`.
fn matching(q: &ListQuery, sql: &mut String, params: &mut Vec<Value>) {
    match &q.scope {
        Scope::Parent(p) => {
            params.push(Value::Text(p.clone()));
            sql.push_str("parent = $1");
        }
        Scope::Account(a) => {
            params.push(Value::Text(a.clone()));
            sql.push_str("account = $1");
        }
        Scope::All => sql.push_str("TRUE"),
    }
    if let Some(account) = &q.account {
        params.push(Value::Text(account.clone()));
        sql.push_str(&format!(" AND account = ${}", params.len()));
    }
    if !q.show_deleted {
        sql.push_str(" AND delete_time = 0");
    }
    if let Some(f) = &q.filter {
        sql.push_str(" AND ");
        f.to_sql(sql, params);
    }
}

/// How many rows match a list's conditions, across all its pages.
pub async fn count_matching(conn: &mut Conn<'_>, kind: &Kind, q: &ListQuery) -> Result<i64> {
    let mut sql = format!("SELECT COUNT(*) FROM {} WHERE ", kind.table);
    let mut params = Vec::new();
    matching(q, &mut sql, &mut params);
    let n: i64 = on_conn!(conn, c => {
        let mut query = sqlx::query_scalar(&sql);
        for p in &params {
            query = match p {
                Value::Text(t) => query.bind(t.clone()),
                Value::Int(i) => query.bind(*i),
            };
        }
        query.fetch_one(&mut **c).await?
    });
    Ok(n)
}

/// One page of a list: the resources and, when there may be more, the
/// cursor after the last one.
#[derive(Debug)]
pub struct Page {
    pub items: Vec<Stored>,
    pub next: Option<Cursor>,
}

/// Runs a keyset-paginated list: `WHERE (sort, name) > (last sort, last name)`
/// (or `<` descending), so a deep page costs what page one costs. Ties on
/// the sort column are ordered by name in the same direction.
pub async fn list(conn: &mut Conn<'_>, kind: &Kind, q: &ListQuery) -> Result<Page> {
    let mut sql = format!("SELECT {BASE}");
    let (sort_col, sort_ty, desc) = match &q.order {
        Some((f, desc)) => (f.column, Some(f.ty), *desc),
        None => ("name", None, false),
    };
    if sort_ty.is_some() {
        sql.push_str(&format!(", {sort_col} AS sort_key"));
    }
    sql.push_str(&format!(" FROM {} WHERE ", kind.table));
    let mut params = Vec::new();
    matching(q, &mut sql, &mut params);
    if let Some(after) = &q.after {
        let cmp = if desc { "<" } else { ">" };
        params.push(Value::Text(after.name.clone()));
        let name_param = params.len();
        match (&after.sort, sort_ty) {
            (Some(v), Some(_)) => {
                params.push(v.clone());
                let v_param = params.len();
                // A row-value comparison in the direction of the order, which
                // both databases answer from an index on (column, name): a
                // deep page costs what the first one does.
                sql.push_str(&format!(
                    " AND ({sort_col}, name) {cmp} (${v_param}, ${name_param})"
                ));
            }
            _ => sql.push_str(&format!(" AND name > ${name_param}")),
        }
    }
    let dir = if desc { "DESC" } else { "ASC" };
    if sort_ty.is_some() {
        sql.push_str(&format!(" ORDER BY {sort_col} {dir}, name {dir}"));
    } else {
        sql.push_str(" ORDER BY name ASC");
    }
    sql.push_str(&format!(" LIMIT {}", q.limit + 1));

    let mut items = Vec::with_capacity(q.limit + 1);
    let mut sorts = Vec::with_capacity(q.limit + 1);
    on_conn!(conn, c => {
        let rows = bind_all(sqlx::query(&sql), &params).fetch_all(&mut **c).await?;
        for row in rows {
            items.push(stored_from(&row)?);
            sorts.push(match sort_ty {
                None => None,
                Some(FieldType::Text) => Some(Value::Text(row.try_get(8)?)),
                Some(_) => Some(Value::Int(row.try_get(8)?)),
            });
        }
    });
    let next = if items.len() > q.limit {
        items.truncate(q.limit);
        let last = items.last().expect("a full page has a last item");
        Some(Cursor {
            name: last.name.clone(),
            sort: sorts[q.limit - 1].clone(),
        })
    } else {
        None
    };
    Ok(Page { items, next })
}

/// Longest `order_by` accepted: one field name and a direction fit easily,
/// and a refusal never echoes more than this back.
pub const MAX_ORDER_BY_LEN: usize = 128;

/// Parses `order_by` ("field" or "field desc"; one field) against the
/// documented fields.
pub fn parse_order_by(order_by: &str, fields: &[Field]) -> Result<Option<(Field, bool)>> {
    let order_by = order_by.trim();
    if order_by.is_empty() {
        return Ok(None);
    }
    if order_by.len() > MAX_ORDER_BY_LEN {
        return Err(Error::invalid(
            "order_by",
            format!(
                "is longer than {MAX_ORDER_BY_LEN} bytes; order by one field, e.g. \"update_time desc\""
            ),
        ));
    }
    let mut parts = order_by.split_whitespace();
    let name = parts.next().unwrap_or_default();
    let desc = match parts.next() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => {
            return Err(Error::invalid(
                "order_by",
                format!("expected `asc` or `desc`, found `{other}`"),
            ));
        }
    };
    if parts.next().is_some() || name.contains(',') {
        return Err(Error::invalid(
            "order_by",
            "order by one field, e.g. \"update_time desc\"",
        ));
    }
    if name == "name" {
        if desc {
            return Err(Error::invalid("order_by", "name orders ascending only"));
        }
        return Ok(None);
    }
    let field = fields.iter().find(|f| f.name == name).ok_or_else(|| {
        let known: Vec<_> = fields.iter().map(|f| f.name).collect();
        Error::invalid(
            "order_by",
            format!(
                "unknown field `{name}`; orderable fields: name, {}",
                known.join(", ")
            ),
        )
    })?;
    Ok(Some((*field, desc)))
}

/// Turns a list request's raw parameters into a [`ListQuery`] (less its
/// scope), checking the page token against them.
pub fn prepare(
    kind: &Kind,
    page: &PageQuery<'_>,
    scope: Scope,
    account: Option<String>,
) -> Result<ListQuery> {
    let filter = filter::parse(page.filter, kind.fields)?;
    let order = parse_order_by(page.order_by, kind.fields)?;
    Ok(ListQuery {
        scope,
        account,
        filter,
        order,
        show_deleted: page.show_deleted,
        after: None,
        limit: page.limit()?,
    })
}
