//! The service's own records (templates, access tokens, audit records, executions), kept as
//! JSON in the store's `meta` table under org-scoped keys. Writes are returned as
//! [`WriteSet`] additions so that a record always commits together with whatever it
//! describes.

use pled_store::{Store, Table, WriteSet};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

pub mod audit;
pub mod executions;
pub mod snapshots;
pub mod templates;
pub mod tokens;

/// Reads one JSON record.
pub fn get_json<T: DeserializeOwned>(store: &Store, key: &str) -> Result<Option<T>, ApiError> {
    store
        .get(Table::Meta, key.as_bytes())?
        .map(|bytes| {
            serde_json::from_slice(&bytes).map_err(|e| ApiError::Internal(format!("corrupt record {key}: {e}")))
        })
        .transpose()
}

/// Adds a JSON record to a write set.
pub fn put_json<T: Serialize>(ws: WriteSet, key: &str, value: &T) -> Result<WriteSet, ApiError> {
    let bytes = serde_json::to_vec(value).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(ws.put(Table::Meta, key.as_bytes().to_vec(), bytes))
}

/// Up to `limit` records whose key starts with `prefix`, after key `after` (exclusive).
pub fn scan_json<T: DeserializeOwned>(
    store: &Store,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<(String, T)>, ApiError> {
    let after = after.map(|a| format!("{prefix}{a}")).unwrap_or_default();
    store
        .scan(Table::Meta, prefix.as_bytes(), after.as_bytes(), limit)?
        .into_iter()
        .map(|(k, v)| {
            let key = String::from_utf8_lossy(&k).into_owned();
            let value =
                serde_json::from_slice(&v).map_err(|e| ApiError::Internal(format!("corrupt record {key}: {e}")))?;
            Ok((key, value))
        })
        .collect()
}

/// A page of a list endpoint.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    /// The items, oldest first.
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The largest page a list endpoint returns.
pub const MAX_PAGE: usize = 500;
/// The default page size.
pub const DEFAULT_PAGE: usize = 50;

/// Pages through `prefix`, keeping the records `keep` accepts. The cursor is the key suffix
/// (the id) of the last item returned.
pub fn page<T: DeserializeOwned>(
    store: &Store,
    prefix: &str,
    cursor: Option<&str>,
    limit: Option<usize>,
    keep: impl Fn(&T) -> bool,
) -> Result<Page<T>, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let mut items = Vec::with_capacity(limit);
    let mut last_returned = None;
    let mut after = cursor.map(str::to_owned);
    loop {
        let batch: Vec<(String, T)> = scan_json(store, prefix, after.as_deref(), limit + 1)?;
        let fetched = batch.len();
        for (key, item) in batch {
            let id = key[prefix.len()..].to_owned();
            if keep(&item) {
                if items.len() == limit {
                    return Ok(Page { items, next_cursor: last_returned });
                }
                items.push(item);
                last_returned = Some(id.clone());
            }
            after = Some(id);
        }
        if fetched <= limit {
            return Ok(Page { items, next_cursor: None });
        }
    }
}
