//! `GET /sessions` and `GET /sessions/{id}`: the session registry as JSON for operators.
//!
//! The list is paged by session id: `limit` (1 to [`MAX_LIMIT`], default
//! [`DEFAULT_LIMIT`]) and `cursor`, the `next_cursor` of the page before. A cursor names
//! the last id of its page, so paging stays stable while sessions come and go: a session
//! that ends is not shown again, one that starts after the cursor's place is. Errors are
//! JSON too, with the reason.

use super::{Admin, rfc3339_ms};
use crate::session::registry::{Entry, Event};
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

/// What the query string of `GET /sessions` asks for.
#[derive(Debug, PartialEq, Eq)]
struct Paging {
    limit: usize,
    /// The id the page starts after.
    after: Option<String>,
}

/// `limit` and `cursor`, or why not: an unknown parameter is refused, so a typo does not
/// go unnoticed.
fn paging(query: Option<&str>) -> Result<Paging, String> {
    let mut paging = Paging {
        limit: DEFAULT_LIMIT,
        after: None,
    };
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "limit" => {
                paging.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        format!("limit must be a whole number from 1 to {MAX_LIMIT}, not {value:?}")
                    })?
            }
            "cursor" => paging.after = Some(decode_cursor(value)?),
            other => {
                return Err(format!(
                    "unknown parameter {other:?}: GET /sessions takes limit and cursor"
                ));
            }
        }
    }
    Ok(paging)
}

/// A cursor is opaque to clients: the hex of the id a page ends with.
fn encode_cursor(id: &str) -> String {
    hex::encode(id)
}

fn decode_cursor(cursor: &str) -> Result<String, String> {
    hex::decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|id| !id.is_empty())
        .ok_or_else(|| {
            format!("cursor {cursor:?} is not one this API gave: use the next_cursor of a page")
        })
}

fn error(status: StatusCode, why: String) -> Response {
    (status, Json(json!({ "error": why }))).into_response()
}

/// `GET /sessions?limit=N&cursor=C`.
pub(super) async fn list(State(admin): State<Admin>, RawQuery(query): RawQuery) -> Response {
    let paging = match paging(query.as_deref()) {
        Ok(paging) => paging,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    let page = admin.sessions.page(paging.after.as_deref(), paging.limit);
    let now = admin.sessions.now_ms();
    let sessions: Vec<Value> = page
        .sessions
        .iter()
        .map(|(id, entry)| summary(id, entry, now))
        .collect();
    Json(json!({
        "sessions": sessions,
        "next_cursor": page.next.as_deref().map(encode_cursor),
        "total": page.total,
        "limit": paging.limit,
    }))
    .into_response()
}

/// `GET /sessions/{id}`: the session and its ladder, oldest event first.
pub(super) async fn one(State(admin): State<Admin>, Path(id): Path<String>) -> Response {
    let Some(entry) = admin.sessions.get(&id) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no session {id:?}: it may have ended"),
        );
    };
    let mut session = summary(&id, &entry, admin.sessions.now_ms());
    let ladder: Vec<Value> = entry.ladder.events().map(|e| event(&e)).collect();
    session["ladder"] = Value::Array(ladder);
    session["ladder_dropped"] = entry.ladder.dropped().into();
    Json(session).into_response()
}

fn summary(id: &str, entry: &Entry, now_ms: u64) -> Value {
    let policy = entry.policy.as_ref().map(|p| {
        json!({
            "name": &*p.name,
            "version": &*p.version,
            "sha256": hex::encode(p.sha256),
        })
    });
    json!({
        "id": id,
        "phase": entry.phase.name(),
        "email_user": &*entry.email_user,
        "cpm_user": &*entry.cpm_user,
        "started_at": rfc3339_ms(entry.started_ms),
        "age_seconds": now_ms.saturating_sub(entry.started_ms) / 1000,
        "policy": policy,
    })
}

fn event(e: &Event) -> Value {
    json!({
        "at": rfc3339_ms(e.at_ms),
        "at_unix_ms": e.at_ms,
        "protocol": e.protocol.name(),
        "event": e.what.as_str(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_and_cursor_are_read_and_bad_values_say_why() {
        assert_eq!(
            paging(None).unwrap(),
            Paging {
                limit: DEFAULT_LIMIT,
                after: None
            }
        );
        let cursor = encode_cursor("s1abc");
        let asked = paging(Some(&format!("limit=1&cursor={cursor}"))).unwrap();
        assert_eq!(asked.limit, 1);
        assert_eq!(asked.after.as_deref(), Some("s1abc"));
        for bad in ["limit=0", "limit=1001", "limit=ten", "limit="] {
            let why = paging(Some(bad)).unwrap_err();
            assert!(why.starts_with("limit must be"), "{bad}: {why}");
        }
        assert!(
            paging(Some("cursor=zz"))
                .unwrap_err()
                .contains("next_cursor")
        );
        assert!(
            paging(Some("limt=5"))
                .unwrap_err()
                .contains("unknown parameter")
        );
    }
}
