//! `sql` and `query`: statements as written, with JSON parameters, and rows back as JSON.

use crate::db::Db;
use orch_sdk::postgres::Value;
use orch_sdk::{Output, StepError};
use serde_json::{Map, Value as Json};

fn json_param(v: &Json) -> Value {
    match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::Text(s.clone()),
        other => Value::Json(other.to_string()),
    }
}

fn cell_json(v: Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Boolean(b) => Json::Bool(b),
        Value::Int(i) => Json::from(i),
        Value::Float(f) => Json::from(f),
        Value::Text(t) => Json::String(t),
        Value::Bytes(b) => Json::String(format!(
            "\\x{}",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        )),
        Value::Json(j) => serde_json::from_str(&j).unwrap_or(Json::String(j)),
    }
}

pub fn run_sql(
    db: &Db,
    sql: &str,
    params: &[Json],
    transaction: bool,
) -> Result<Vec<Output>, StepError> {
    let params: Vec<Value> = params.iter().map(json_param).collect();
    let work = |db: &Db| db.execute(sql, &params);
    let affected = if transaction {
        db.transaction(work)?
    } else {
        work(db)?
    };
    Ok(vec![orch_sdk::output("rows_affected", affected)])
}

pub fn query(db: &Db, sql: &str, params: &[Json], limit: u32) -> Result<Vec<Output>, StepError> {
    let params: Vec<Value> = params.iter().map(json_param).collect();
    let result = db.rows(sql, &params, Some(limit))?;
    let rows: Vec<Json> = result
        .rows
        .into_iter()
        .map(|row| {
            Json::Object(
                result
                    .columns
                    .iter()
                    .cloned()
                    .zip(row.into_iter().map(cell_json))
                    .collect::<Map<String, Json>>(),
            )
        })
        .collect();
    Ok(vec![
        orch_sdk::output("count", rows.len()),
        orch_sdk::output("columns", &result.columns),
        orch_sdk::output("rows", rows),
    ])
}
