//! `load`: rows (objects keyed by column) copied into a table in one transaction, in batches,
//! with an upsert through a staging table when a `key` is given.

use crate::db::{Db, check_name, text};
use orch_sdk::Cx;
use orch_sdk::postgres::Value;
use orch_sdk::{Change, ChangeKind, Output, StepError};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value as Json};

/// The schema of `load` (parsed as [`LoadConfig`], which keeps rows as raw JSON).
#[derive(Deserialize, schemars::JsonSchema)]
#[allow(dead_code, reason = "only its schema is used")]
pub struct LoadSchema {
    connection: String,
    table: String,
    schema: Option<String>,
    rows: Vec<Map<String, Json>>,
    key: Option<Vec<String>>,
    batch_size: Option<usize>,
}

/// `load` as parsed: rows stay raw JSON and are passed through to the server unparsed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadConfig {
    #[allow(dead_code, reason = "the tag, already matched")]
    action: String,
    connection: String,
    table: String,
    #[serde(default)]
    schema: Option<String>,
    rows: Vec<Box<RawValue>>,
    #[serde(default)]
    key: Vec<String>,
    #[serde(default = "default_batch")]
    batch_size: usize,
}

fn default_batch() -> usize {
    5000
}

/// The statements of a load, built by the server with quoted names:
/// (`COPY target (cols) FROM STDIN`, and with a key the staging table and the upsert).
struct LoadSql {
    copy: String,
    stage: Option<(String, String)>,
}

fn load_sql(
    db: &Db,
    schema: &str,
    table: &str,
    columns: &[String],
    key: &[String],
) -> Result<LoadSql, StepError> {
    let names = |list: &[String]| serde_json::to_string(list).unwrap_or_default();
    let non_key: Vec<String> = columns
        .iter()
        .filter(|c| !key.contains(c))
        .cloned()
        .collect();
    let sql = "SELECT format('%I.%I', $1::text, $2::text), cols, \
               CASE WHEN $4::text::json->>0 IS NULL THEN '' \
                    WHEN json_array_length($5::text::json) = 0 THEN format(' ON CONFLICT (%s) DO NOTHING', keys) \
                    ELSE format(' ON CONFLICT (%s) DO UPDATE SET %s', keys, sets) END \
               FROM (SELECT (SELECT string_agg(format('%I', c), ', ') FROM json_array_elements_text($3::text::json) c) AS cols, \
                            (SELECT string_agg(format('%I', c), ', ') FROM json_array_elements_text($4::text::json) c) AS keys, \
                            (SELECT string_agg(format('%I = EXCLUDED.%I', c, c), ', ') FROM json_array_elements_text($5::text::json) c) AS sets) n";
    let args = [
        text(schema),
        text(table),
        text(&names(columns)),
        text(&names(key)),
        text(&names(&non_key)),
    ];
    let row = db.rows(sql, &args, Some(1))?.rows.into_iter().next();
    let Some(
        [
            Value::Text(target),
            Value::Text(cols),
            Value::Text(conflict),
        ],
    ) = row.as_deref()
    else {
        return Err(StepError::Failed(
            "could not build the load statements".into(),
        ));
    };
    if key.is_empty() {
        return Ok(LoadSql {
            copy: format!("COPY {target} ({cols}) FROM STDIN"),
            stage: None,
        });
    }
    Ok(LoadSql {
        copy: format!("COPY orch_load ({cols}) FROM STDIN"),
        stage: Some((
            format!(
                "CREATE TEMP TABLE orch_load ON COMMIT DROP AS SELECT {cols} FROM {target} WITH NO DATA"
            ),
            format!("INSERT INTO {target} AS t ({cols}) SELECT {cols} FROM orch_load{conflict}"),
        )),
    })
}

/// Rows as COPY text format: tab-separated, `\N` for null, backslash escapes.
fn copy_text(
    rows: &[Box<RawValue>],
    columns: &[String],
    first_row: usize,
) -> Result<Vec<u8>, StepError> {
    fn escaped(out: &mut Vec<u8>, s: &str) {
        for b in s.bytes() {
            match b {
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\t' => out.extend_from_slice(b"\\t"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                _ => out.push(b),
            }
        }
    }
    let mut out = Vec::with_capacity(rows.iter().map(|r| r.get().len()).sum());
    for (i, raw) in rows.iter().enumerate() {
        // Borrow each cell's JSON text instead of building values: this is the hot loop.
        let row: std::collections::BTreeMap<std::borrow::Cow<'_, str>, &RawValue> =
            serde_json::from_str(raw.get()).map_err(|e| {
                StepError::InvalidConfig(format!(
                    "row {}: rows must be objects keyed by column: {e}",
                    first_row + i
                ))
            })?;
        if let Some(extra) = row
            .keys()
            .find(|k| !columns.iter().any(|c| c == k.as_ref()))
        {
            return Err(StepError::InvalidConfig(format!(
                "row {} has column `{extra}`, which the first row does not have",
                first_row + i
            )));
        }
        for (j, column) in columns.iter().enumerate() {
            if j > 0 {
                out.push(b'\t');
            }
            let cell = row.get(column.as_str()).map(|v| v.get()).unwrap_or("null");
            match cell.as_bytes().first() {
                Some(b'n') => out.extend_from_slice(b"\\N"),
                Some(b't') => out.push(b't'),
                Some(b'f') => out.push(b'f'),
                Some(b'"') => {
                    let s: std::borrow::Cow<'_, str> = serde_json::from_str(cell).map_err(|e| {
                        StepError::InvalidConfig(format!("row {}: {e}", first_row + i))
                    })?;
                    escaped(&mut out, &s);
                }
                // Numbers as written; objects and arrays as JSON text (for json/jsonb columns).
                Some(b'{' | b'[') => escaped(&mut out, cell),
                _ => out.extend_from_slice(cell.as_bytes()),
            }
        }
        out.push(b'\n');
    }
    Ok(out)
}

fn load_plan(
    db: &Db,
    schema: &str,
    table: &str,
    rows: &[Box<RawValue>],
    key: &[String],
) -> Result<(Vec<String>, Change), StepError> {
    check_name("schema", schema)?;
    check_name("table", table)?;
    let Some(first) = rows.first() else {
        return Ok((
            vec![],
            orch_sdk::change(
                ChangeKind::None,
                format!("table {schema}.{table}"),
                "no rows",
            ),
        ));
    };
    let first: Map<String, Json> = serde_json::from_str(first.get()).map_err(|e| {
        StepError::InvalidConfig(format!("rows must be objects keyed by column: {e}"))
    })?;
    let columns: Vec<String> = first.keys().cloned().collect();
    for c in columns.iter().chain(key) {
        check_name("column", c)?;
    }
    if let Some(k) = key.iter().find(|k| !columns.contains(k)) {
        return Err(StepError::InvalidConfig(format!(
            "key column `{k}` is not in the rows"
        )));
    }
    if !db.exists(
        "SELECT 1 FROM pg_tables WHERE schemaname = $1 AND tablename = $2",
        &[text(schema), text(table)],
    )? {
        return Err(StepError::Failed(format!(
            "table {schema}.{table} does not exist: create it first (action = \"sql\")"
        )));
    }
    let how = if key.is_empty() {
        "insert (no key: running again inserts them again)".to_string()
    } else {
        format!("upsert on ({})", key.join(", "))
    };
    let detail = format!("{} rows, {how}", rows.len());
    Ok((
        columns,
        orch_sdk::change(
            ChangeKind::Update,
            format!("table {schema}.{table}"),
            detail,
        ),
    ))
}

fn load(
    db: &Db,
    schema: &str,
    table: &str,
    rows: &[Box<RawValue>],
    key: &[String],
    batch_size: usize,
    columns: &[String],
) -> Result<Vec<Output>, StepError> {
    if rows.is_empty() {
        return Ok(vec![orch_sdk::output("rows", 0)]);
    }
    let sql = load_sql(db, schema, table, columns, key)?;
    let total = rows.len() as u64;
    db.transaction(|db| {
        if let Some((create, _)) = &sql.stage {
            db.execute(create, &[])?;
        }
        let mut done = 0usize;
        for batch in rows.chunks(batch_size.max(1)) {
            let data = copy_text(batch, columns, done)?;
            db.copy_in(&sql.copy, &data)?;
            done += batch.len();
            orch_sdk::log::progress(done as u64, Some(total), "rows loaded");
        }
        if let Some((_, upsert)) = &sql.stage {
            db.execute(upsert, &[])?;
        }
        Ok(())
    })?;
    Ok(vec![
        orch_sdk::output("rows", total),
        orch_sdk::output("table", format!("{schema}.{table}")),
    ])
}

pub fn act_load(config: LoadConfig, cx: &mut Cx) -> Result<(), StepError> {
    let db = Db::open(&config.connection)?;
    let schema = config.schema.unwrap_or_else(|| "public".into());
    let (table, rows, key) = (&config.table, &config.rows, &config.key);
    let (columns, change) = load_plan(&db, &schema, table, rows, key)?;
    if cx.declare(change) {
        for output in load(&db, &schema, table, rows, key, config.batch_size, &columns)? {
            cx.publish(output);
        }
    }
    Ok(())
}
