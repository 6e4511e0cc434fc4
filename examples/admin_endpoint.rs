//! An admin endpoint beside the MCP endpoint: JSON over HTTP on the layer's
//! [`SessionAdmin`](tower_mcp_session::SessionAdmin), behind a bearer token.
//!
//! ```text
//! ADMIN_TOKEN=secret cargo run --example admin_endpoint -- 127.0.0.1:8080
//! curl -H 'authorization: Bearer secret' 'http://127.0.0.1:8080/admin/sessions?max=50'
//! curl -H 'authorization: Bearer secret' http://127.0.0.1:8080/admin/sessions/<id>
//! curl -X DELETE -H 'authorization: Bearer secret' http://127.0.0.1:8080/admin/sessions/<id>
//! curl -X DELETE -H 'authorization: Bearer secret' http://127.0.0.1:8080/admin/principals/<subject>
//! ```
//!
//! `GET /admin/sessions` answers `{"count": n}` with `?count`, else one page
//! `{"sessions": [...], "next": cursor-or-null}`; pass `next` back as `?cursor=`.
//! `GET /admin/sessions/<id>` describes one session; its times are milliseconds:
//! `createdAt` and `lastActivity` since the Unix epoch, `idleMs` since the session's
//! last activity (its `initialize`, a request, or the layer's keep-alive of a request or
//! stream in flight), by the store's clock.
//! The admin routes are not behind the MCP layer: they are not MCP traffic.

use mcp_test_support::echo as common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any_service, delete, get};
use serde_json::json;
use tower_mcp_session::{McpSessionLayer, Principal, SessionAdmin, SessionId};

#[derive(Clone)]
struct Admin {
    sessions: SessionAdmin,
    token: Arc<str>,
}

impl Admin {
    /// A shared token keeps the example short; put real authentication (and a
    /// constant-time comparison) in front of an admin endpoint you deploy.
    fn allowed(&self, headers: &HeaderMap) -> bool {
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| t.as_bytes() == self.token.as_bytes())
    }
}

fn refused(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({"error": message}))).into_response()
}

fn unavailable() -> Response {
    refused(StatusCode::SERVICE_UNAVAILABLE, "session store unavailable")
}

async fn list(State(admin): State<Admin>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    if !admin.allowed(&headers) {
        return refused(StatusCode::UNAUTHORIZED, "bearer token required");
    }
    if q.contains_key("count") {
        return match admin.sessions.count().await {
            Ok(n) => axum::Json(json!({"count": n})).into_response(),
            Err(_) => unavailable(),
        };
    }
    let max = q.get("max").and_then(|m| m.parse().ok()).unwrap_or(100).min(1000);
    match admin.sessions.list(q.get("cursor").map(String::as_str), max).await {
        Ok(page) => {
            let ids: Vec<&str> = page.sessions.iter().map(SessionId::as_str).collect();
            axum::Json(json!({"sessions": ids, "next": page.next})).into_response()
        }
        Err(_) => unavailable(),
    }
}

async fn inspect(State(admin): State<Admin>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if !admin.allowed(&headers) {
        return refused(StatusCode::UNAUTHORIZED, "bearer token required");
    }
    let Some(id) = SessionId::parse(&id) else {
        return refused(StatusCode::NOT_FOUND, "no such session");
    };
    match admin.sessions.inspect(&id).await {
        Ok(Some(info)) => {
            let record = &info.record;
            let unix_ms = |at: SystemTime| at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
            axum::Json(json!({
                "id": record.id().as_str(),
                "protocolVersion": record.protocol_version().to_string(),
                "createdAt": unix_ms(record.created_at()),
                "lastActivity": unix_ms(info.last_activity),
                "idleMs": info.idle_for.as_millis(),
                "principal": record.principal().map(Principal::as_str),
                "clientInfo": record.client_info().map(|raw| serde_json::from_str::<serde_json::Value>(raw.get()).ok()),
                "attributes": info.attributes,
                "readersHere": info.readers_here,
                "busyHere": info.busy_here,
            }))
            .into_response()
        }
        Ok(None) => refused(StatusCode::NOT_FOUND, "no such session"),
        Err(_) => unavailable(),
    }
}

async fn terminate(State(admin): State<Admin>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if !admin.allowed(&headers) {
        return refused(StatusCode::UNAUTHORIZED, "bearer token required");
    }
    let Some(id) = SessionId::parse(&id) else {
        return refused(StatusCode::NOT_FOUND, "no such session");
    };
    match admin.sessions.terminate(&id).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => refused(StatusCode::NOT_FOUND, "no such session"),
        Err(_) => unavailable(),
    }
}

async fn terminate_principal(State(admin): State<Admin>, headers: HeaderMap, Path(subject): Path<String>) -> Response {
    if !admin.allowed(&headers) {
        return refused(StatusCode::UNAUTHORIZED, "bearer token required");
    }
    match admin.sessions.terminate_principal(&Principal::new(subject)).await {
        Ok(n) => axum::Json(json!({"terminated": n})).into_response(),
        Err(_) => unavailable(),
    }
}

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let Ok(token) = std::env::var("ADMIN_TOKEN") else {
        eprintln!("admin_endpoint: set ADMIN_TOKEN");
        std::process::exit(2);
    };
    let layer = McpSessionLayer::new();
    let admin = Admin {
        sessions: layer.manager().admin(),
        token: token.into(),
    };
    let options = common::EchoOptions {
        manager: Some(layer.manager()),
        ..Default::default()
    };
    let mcp = Router::new()
        .route_service("/mcp", any_service(common::echo_service(options)))
        .layer(layer);
    let admin_routes = Router::new()
        .route("/admin/sessions", get(list))
        .route("/admin/sessions/{id}", get(inspect).delete(terminate))
        .route("/admin/principals/{subject}", delete(terminate_principal))
        .with_state(admin);
    let app = mcp.merge(admin_routes);
    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap_or_else(|e| {
        eprintln!("admin_endpoint: {addr}: {e}");
        std::process::exit(2);
    });
    println!("MCP on http://{addr}/mcp, admin on http://{addr}/admin/sessions");
    axum::serve(listener, app).await.unwrap();
}
