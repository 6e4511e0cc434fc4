//! `PgSessionStore` against a real PostgreSQL (default `host=127.0.0.1 user=postgres
//! dbname=test`, or `POSTGRES_CONN`): the conformance suite, and one layer in front of a
//! tiny MCP service. Every backend lives in a schema of its own, named at random and
//! dropped when the test ends, also when it fails.

use std::convert::Infallible;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use postgres_session_store_example::PgSessionStore;
use serde_json::{Value, json};
use tower::ServiceExt;
use tower_mcp_session::McpSessionLayer;

fn conn_str() -> String {
    std::env::var("POSTGRES_CONN").unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".into())
}

/// Hands out fresh schemas and drops every one of them when dropped.
struct Schemas {
    prefix: String,
    made: Mutex<Vec<String>>,
    next: AtomicUsize,
}

impl Schemas {
    fn new() -> Self {
        let prefix = format!("mcp_conf_{:016x}", getrandom::u64().expect("random"));
        Self {
            prefix,
            made: Mutex::new(Vec::new()),
            next: AtomicUsize::new(0),
        }
    }

    /// A store on a new, empty schema, tables created.
    async fn fresh(&self) -> PgSessionStore {
        let schema = format!("{}_{}", self.prefix, self.next.fetch_add(1, Ordering::Relaxed));
        self.made.lock().unwrap().push(schema.clone());
        let store = PgSessionStore::connect(&conn_str(), &schema).await.expect("connect");
        store.migrate().await.expect("migrate");
        store
    }
}

impl Drop for Schemas {
    // Drop runs inside the test's runtime, which cannot block on itself: the cleanup
    // gets a thread and a runtime of its own.
    fn drop(&mut self) {
        let schemas = std::mem::take(&mut *self.made.lock().unwrap_or_else(|e| e.into_inner()));
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async move {
                let (client, connection) = tokio_postgres_connect().await?;
                tokio::spawn(connection);
                for schema in schemas {
                    client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                        .await?;
                }
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        });
        match cleanup.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop the test schemas: {e}"),
            Err(_) => eprintln!("the schema cleanup panicked"),
        }
    }
}

async fn tokio_postgres_connect() -> Result<
    (
        tokio_postgres::Client,
        tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
    ),
    tokio_postgres::Error,
> {
    tokio_postgres::connect(&conn_str(), tokio_postgres::NoTls).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_conforms() {
    let schemas = Schemas::new();
    tower_mcp_session::conformance::session_store_with(
        || schemas.fresh(),
        |store: &PgSessionStore| {
            // Its own pool onto the same schema: the races cross connections, as they
            // would across server instances.
            let schema = store.schema().to_owned();
            async move { PgSessionStore::connect(&conn_str(), &schema).await.expect("connect") }
        },
    )
    .await;
}

/// The smallest MCP server a layer needs: answers `initialize`, and `{}` to the rest.
async fn tiny_mcp(req: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let result = if message["method"] == "initialize" {
        json!({"protocolVersion": message["params"]["protocolVersion"], "capabilities": {},
               "serverInfo": {"name": "tiny", "version": "1"}})
    } else {
        json!({})
    };
    let answer = json!({"jsonrpc": "2.0", "id": message["id"], "result": result});
    let mut response = Response::new(Full::new(Bytes::from(answer.to_string())));
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    Ok(response)
}

fn post(session: Option<&str>, body: Value) -> Request<Full<Bytes>> {
    let mut request = Request::post("http://localhost/mcp")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if let Some(id) = session {
        request = request.header("mcp-session-id", id);
    }
    request.body(Full::new(Bytes::from(body.to_string()))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layer_keeps_sessions_in_postgres() {
    let schemas = Schemas::new();
    let store = schemas.fresh().await;
    let layer = McpSessionLayer::builder().store(store.clone()).build();
    let app = tower::ServiceBuilder::new()
        .layer(layer)
        .service(tower::service_fn(tiny_mcp));

    let initialize = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let response = app.clone().oneshot(post(None, initialize)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let session = response.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let id = tower_mcp_session::SessionId::parse(&session).unwrap();
    let stored = tower_mcp_session::store::SessionStore::load(&store, &id, None)
        .await
        .unwrap();
    assert_eq!(
        stored
            .expect("the session is in PostgreSQL")
            .client_info()
            .unwrap()
            .get(),
        r#"{"name":"t","version":"1"}"#
    );

    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}});
    let response = app.clone().oneshot(post(Some(&session), list.clone())).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let delete = Request::delete("http://localhost/mcp")
        .header("host", "localhost")
        .header("mcp-session-id", &session)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = app.clone().oneshot(delete).await.unwrap();
    assert!(response.status().is_success(), "DELETE answered {}", response.status());

    let response = app.clone().oneshot(post(Some(&session), list)).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}
