//! Live streams of an execution: Server-Sent Events and WebSocket, same protocol.
//!
//! On connect a subscriber gets a `snapshot` (state and head seq), then, when resuming
//! (`afterSeq`, or SSE's `Last-Event-ID`), the entries after that seq up to the snapshot, then
//! every later `entry` and `state` change in seq order: none missed, none twice, even when
//! entries are appended while it connects. A subscriber that falls more than
//! [`STREAM_BUFFER`](crate::hub::STREAM_BUFFER) items behind gets `lagged` with the seq to
//! resume after, and the stream ends: slow consumers never slow ingest or grow memory. When
//! the server shuts down, every stream gets `closing` with the seq to resume after and ends
//! (a WebSocket then closes with 1001, going away), so that clients reconnect elsewhere or
//! after the restart instead of holding the shutdown up.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use pled_core::{ExecutionId, SealedEntry, Seq};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::executions::load;
use crate::auth::{Permission, Principal};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ApiQuery};
use crate::hub::{STREAM_BUFFER, StateChange, Update};
use crate::repo::executions as repo;
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(sse)).routes(routes!(websocket))
}

/// Where to resume.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct StreamQuery {
    /// Resume: send the entries after this seq first (SSE: `Last-Event-ID` does the same).
    after_seq: Option<u64>,
}

/// One message of the stream protocol.
#[derive(Debug, Clone)]
pub(crate) enum StreamMsg {
    Snapshot(Value),
    Entry(SealedEntry),
    State(Value),
    Lagged { resume_after_seq: u64 },
    Closing { resume_after_seq: u64 },
}

impl StreamMsg {
    fn name(&self) -> &'static str {
        match self {
            Self::Snapshot(_) => "snapshot",
            Self::Entry(_) => "entry",
            Self::State(_) => "state",
            Self::Lagged { .. } => "lagged",
            Self::Closing { .. } => "closing",
        }
    }

    /// The seq a client resumes after once it has processed this message.
    fn seq(&self) -> Option<u64> {
        match self {
            Self::Snapshot(v) | Self::State(v) => v["headSeq"].as_u64(),
            Self::Entry(e) => Some(e.seq().get()),
            Self::Lagged { .. } | Self::Closing { .. } => None,
        }
    }

    fn data(&self) -> Value {
        match self {
            Self::Snapshot(v) | Self::State(v) => v.clone(),
            Self::Entry(e) => serde_json::to_value(e).unwrap_or(Value::Null),
            Self::Lagged { resume_after_seq } | Self::Closing { resume_after_seq } => {
                json!({ "resumeAfterSeq": resume_after_seq })
            }
        }
    }
}

fn state_value(change: &StateChange) -> Value {
    serde_json::to_value(change).unwrap_or(Value::Null)
}

/// Starts the forwarder of one subscriber: it subscribes, reads the snapshot, catches up from
/// the store, then relays live updates into a bounded outbox. The outbox's receiver is the
/// stream. Capacity is kept for the final `lagged` or `closing` message.
fn subscribe(s: &AppState, id: ExecutionId, after: Option<u64>) -> ApiResult<mpsc::Receiver<StreamMsg>> {
    let mut rx = s.hub.subscribe(id);
    let (head, live) = repo::live(&s.store, id)?.ok_or_else(|| ApiError::not_found("execution", id))?;
    let (tx, out) = mpsc::channel(STREAM_BUFFER + 1);
    let (store, hub) = (s.store.clone(), s.hub.clone());
    tokio::spawn(async move {
        let snapshot = StateChange { head_seq: head.seq.get(), head_hash: head.hash.to_hex(), live };
        let mut last = after.unwrap_or(head.seq.get()).min(head.seq.get());
        // One slot always stays free for the final `lagged`.
        let sent_to = |m: StreamMsg| -> bool { tx.capacity() > 1 && tx.try_send(m).is_ok() };
        if !sent_to(StreamMsg::Snapshot(state_value(&snapshot))) {
            return;
        }
        // Catch up (resume) and fill gaps from the store, in pages.
        let catch_up = |from: u64, to: u64| store.entries(id, Seq::new(from), (to - from) as usize);
        let mut lagged_at = None;
        if last < head.seq.get() {
            match catch_up(last, head.seq.get()) {
                Ok(entries) => {
                    for e in entries {
                        let seq = e.seq().get();
                        if !sent_to(StreamMsg::Entry(e)) {
                            lagged_at = Some(last);
                            break;
                        }
                        last = seq;
                    }
                }
                Err(_) => return,
            }
        }
        let shutdown = hub.closed();
        tokio::pin!(shutdown);
        while lagged_at.is_none() {
            let update = tokio::select! {
                u = rx.recv() => u,
                () = tx.closed() => return,
                () = &mut shutdown => {
                    let _ = tx.try_send(StreamMsg::Closing { resume_after_seq: last });
                    return;
                }
            };
            match update {
                Ok(Update::Entries(entries)) => {
                    let Some(newest) = entries.last().map(|e| e.seq().get()) else {
                        continue;
                    };
                    if newest <= last {
                        continue;
                    }
                    let first = entries[0].seq().get();
                    // A gap (entries written between our snapshot read and the first update
                    // we saw) is filled from the store.
                    let mut batch = Vec::new();
                    if first > last + 1 {
                        match catch_up(last, first - 1) {
                            Ok(v) => batch.extend(v),
                            Err(_) => return,
                        }
                    }
                    batch.extend(entries.iter().filter(|e| e.seq().get() > last).cloned());
                    for e in batch {
                        let seq = e.seq().get();
                        if seq <= last {
                            continue;
                        }
                        if !sent_to(StreamMsg::Entry(e)) {
                            lagged_at = Some(last);
                            break;
                        }
                        last = seq;
                    }
                }
                Ok(Update::State(change)) => {
                    if change.head_seq == last && !sent_to(StreamMsg::State(state_value(&change))) {
                        lagged_at = Some(last);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => lagged_at = Some(last),
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
        if let Some(at) = lagged_at {
            let _ = tx.try_send(StreamMsg::Lagged { resume_after_seq: at });
        }
        // Dropping `tx` ends the stream.
    });
    Ok(out)
}

/// The resume point of a request: `Last-Event-ID` (SSE) wins over `afterSeq`.
fn resume_point(headers: &HeaderMap, q: &StreamQuery) -> ApiResult<Option<u64>> {
    match headers.get("last-event-id") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| ApiError::bad_field("Last-Event-ID", "must be a ledger seq")),
        None => Ok(q.after_seq),
    }
}

/// Server-Sent Events: `snapshot`, then `entry` (id = seq; data = the entry in export form)
/// and `state` (id = head seq) events; `lagged` (data `{"resumeAfterSeq": N}`) ends a stream
/// that fell behind, `closing` (the same data) one whose server shuts down. Reconnect with
/// `Last-Event-ID` to resume. Keep-alive comments every 15 s.
#[utoipa::path(get, path = "/v1/executions/{id}/stream", tag = "streams", params(("id" = String, Path), StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this seq")),
    responses((status = 200, content_type = "text/event-stream", body = String), (status = 404, body = crate::error::Problem)))]
pub(crate) async fn sse(
    State(s): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> ApiResult<Response> {
    who.require(Permission::Read)?;
    let rec = load(&s, &who, &id)?;
    let out = subscribe(&s, rec.id, resume_point(&headers, &q)?)?;
    let stream = tokio_stream::wrappers::ReceiverStream::new(out).map(|m| {
        let mut ev = SseEvent::default().event(m.name()).data(m.data().to_string());
        if let Some(seq) = m.seq() {
            ev = ev.id(seq.to_string());
        }
        Ok::<_, Infallible>(ev)
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response())
}

/// WebSocket: the same protocol as JSON text messages `{"type": "snapshot"|"entry"|"state"|
/// "lagged"|"closing", …}` (entries under `entry`); pings every 15 s. After `closing` the
/// server closes the socket with 1001 (going away).
#[utoipa::path(get, path = "/v1/executions/{id}/ws", tag = "streams", params(("id" = String, Path), StreamQuery),
    responses((status = 101, description = "Switching protocols"), (status = 404, body = crate::error::Problem)))]
pub(crate) async fn websocket(
    State(s): State<AppState>,
    who: Principal,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> ApiResult<Response> {
    who.require(Permission::Read)?;
    let rec = load(&s, &who, &id)?;
    let ws = ws.map_err(|e| ApiError::BadRequest {
        detail: format!("this endpoint needs a WebSocket upgrade: {}", e.body_text()),
        errors: vec![],
    })?;
    let out = subscribe(&s, rec.id, q.after_seq)?;
    Ok(ws.on_upgrade(move |socket| serve_socket(socket, out)))
}

async fn serve_socket(socket: WebSocket, mut out: mpsc::Receiver<StreamMsg>) {
    let (mut sink, mut incoming) = socket.split();
    let mut ping = tokio::time::interval(Duration::from_secs(15));
    ping.tick().await;
    let mut close = None;
    loop {
        tokio::select! {
            m = out.recv() => {
                let Some(m) = m else { break };
                let end = matches!(m, StreamMsg::Lagged { .. } | StreamMsg::Closing { .. });
                if let StreamMsg::Closing { .. } = m {
                    close = Some(CloseFrame { code: close_code::AWAY, reason: "server shutting down".into() });
                }
                let body = match &m {
                    StreamMsg::Entry(e) => json!({ "type": "entry", "entry": e }),
                    other => {
                        let mut v = other.data();
                        if let Some(o) = v.as_object_mut() {
                            o.insert("type".into(), json!(other.name()));
                        }
                        v
                    }
                };
                if sink.send(Message::Text(body.to_string().into())).await.is_err() || end {
                    break;
                }
            }
            _ = ping.tick() => {
                if sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break;
                }
            }
            msg = incoming.next() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = sink.send(Message::Close(close)).await;
}
