//! `load`: rows (objects keyed by column) copied into a table in one transaction and one
//! `COPY`, with an upsert through a staging table when a `key` is given.

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
    /// No longer used: the rows go in one `COPY`, streamed by the host. Accepted so that
    /// workflows which set it still run.
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
    rows: Box<RawValue>,
    #[serde(default)]
    key: Vec<String>,
    #[serde(default)]
    #[allow(dead_code, reason = "accepted, no longer used (see LoadSchema)")]
    batch_size: Option<usize>,
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

/// The rows of a load: the first one (its keys are the columns) and, for a plan, how many
/// there are. A run reads only the first row: the host reads the rest as it copies them.
struct RowsSeen {
    first: Option<Map<String, Json>>,
    count: Option<usize>,
}

impl RowsSeen {
    fn read(rows: &RawValue, count: bool) -> Result<Self, StepError> {
        struct Seen<'s> {
            count: bool,
            seen: &'s mut RowsSeen,
        }
        impl<'de> serde::de::Visitor<'de> for Seen<'_> {
            type Value = ();
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of rows (objects keyed by column)")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
                self.seen.first = seq.next_element::<Map<String, Json>>()?;
                if self.seen.first.is_none() {
                    self.seen.count = Some(0);
                    return Ok(());
                }
                if !self.count {
                    // Stop reading here; the caller keeps what was seen.
                    return Err(serde::de::Error::custom(STOPPED));
                }
                let mut count = 1;
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    count += 1;
                }
                self.seen.count = Some(count);
                Ok(())
            }
        }
        const STOPPED: &str = "orch: first row read";
        let mut seen = RowsSeen {
            first: None,
            count: None,
        };
        let mut de = serde_json::Deserializer::from_str(rows.get());
        let visitor = Seen {
            count,
            seen: &mut seen,
        };
        match serde::Deserializer::deserialize_seq(&mut de, visitor).and_then(|()| de.end()) {
            Err(e) if !e.to_string().starts_with(STOPPED) => Err(StepError::InvalidConfig(
                format!("rows must be objects keyed by column: {e}"),
            )),
            _ => Ok(seen),
        }
    }
}

fn load_plan(
    db: &Db,
    schema: &str,
    table: &str,
    rows: &RowsSeen,
    key: &[String],
) -> Result<(Vec<String>, Change), StepError> {
    check_name("schema", schema)?;
    check_name("table", table)?;
    let Some(first) = &rows.first else {
        return Ok((
            vec![],
            orch_sdk::change(
                ChangeKind::None,
                format!("table {schema}.{table}"),
                "no rows",
            ),
        ));
    };
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
    let detail = match rows.count {
        Some(n) => format!("{n} rows, {how}"),
        None => format!("rows, {how}"),
    };
    Ok((
        columns,
        orch_sdk::change(
            ChangeKind::Update,
            format!("table {schema}.{table}"),
            detail,
        ),
    ))
}

/// Copy every row in one `COPY`, inside a transaction with the staging and the upsert: the
/// host reads and encodes the rows natively and sends the first ones while it reads the rest.
/// (Separate `COPY`s per batch cost the server ~2x as much.)
fn load(
    db: &Db,
    schema: &str,
    table: &str,
    rows: &RawValue,
    key: &[String],
    columns: &[String],
) -> Result<Vec<Output>, StepError> {
    let sql = load_sql(db, schema, table, columns, key)?;
    let copied = db.transaction(|db| {
        if let Some((create, _)) = &sql.stage {
            db.execute(create, &[])?;
        }
        let copied = db.copy_json(&sql.copy, columns, rows.get())?;
        if let Some((_, upsert)) = &sql.stage {
            db.execute(upsert, &[])?;
        }
        Ok(copied)
    })?;
    orch_sdk::log::progress(copied, Some(copied), "rows loaded");
    Ok(vec![
        orch_sdk::output("rows", copied),
        orch_sdk::output("table", format!("{schema}.{table}")),
    ])
}

pub fn act_load(config: LoadConfig, cx: &mut Cx) -> Result<(), StepError> {
    let db = Db::open(&config.connection)?;
    let schema = config.schema.unwrap_or_else(|| "public".into());
    let seen = RowsSeen::read(&config.rows, !cx.applying())?;
    let (table, key) = (&config.table, &config.key);
    let (columns, change) = load_plan(&db, &schema, table, &seen, key)?;
    if cx.declare(change) {
        let outputs = if seen.first.is_none() {
            vec![orch_sdk::output("rows", 0)]
        } else {
            load(&db, &schema, table, &config.rows, key, &columns)?
        };
        for output in outputs {
            cx.publish(output);
        }
    }
    Ok(())
}
