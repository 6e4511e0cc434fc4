//! The README's CORS recipe ("Browsers") in a real browser: headless Chromium loads a
//! page from one loopback port and calls the MCP endpoint on another with `fetch`,
//! which takes a preflight (the requests carry `Content-Type: application/json` and
//! `Mcp-Session-Id`) and needs `Mcp-Session-Id` exposed to read the id at all.
//!
//! Needs `chromium` on PATH (`apt-get install chromium`; `.ci/run` installs it).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::Html;
use axum::routing::{get, post};
use http::{HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mcp_test_support::rmcp::RmcpEcho;
use serde_json::Value;
use tokio::sync::mpsc;
use tower_http::cors::CorsLayer;

/// The recipe, as in the README: the CORS layer goes *outside* the session layer, so a
/// preflight (`OPTIONS`, which the session layer answers with 405) never reaches it.
fn cors(page_origin: &str) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(page_origin.parse::<HeaderValue>().unwrap())
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([
            http::header::CONTENT_TYPE,
            http::header::ACCEPT,
            http::header::AUTHORIZATION,
            HeaderName::from_static("mcp-session-id"),
            HeaderName::from_static("mcp-protocol-version"),
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([HeaderName::from_static("mcp-session-id")])
}

async fn listen() -> (tokio::net::TcpListener, SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// The MCP endpoint for pages of `page_origin`: rmcp behind the layer, CORS outside.
async fn start_endpoint(page_origin: &str) -> SocketAddr {
    let (_manager, mcp) = tower_mcp_session_rmcp::service(|| Ok(RmcpEcho)).build();
    let app = Router::new().route_service("/mcp", mcp).layer(cors(page_origin));
    let (listener, addr) = listen().await;
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

const PAGE: &str = r#"<!doctype html>
<html><body><script>
const endpoint = "ENDPOINT";
const headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"};
async function post(body, session) {
  const h = Object.assign({}, headers);
  if (session) { h["mcp-session-id"] = session; h["mcp-protocol-version"] = "2025-06-18"; }
  const response = await fetch(endpoint, {method: "POST", headers: h, body: JSON.stringify(body)});
  return {status: response.status, session: response.headers.get("mcp-session-id"), text: await response.text()};
}
async function run() {
  const init = await post({jsonrpc: "2.0", id: 1, method: "initialize", params: {
    protocolVersion: "2025-06-18", capabilities: {}, clientInfo: {name: "chromium", version: "1"}}});
  const ack = await post({jsonrpc: "2.0", method: "notifications/initialized"}, init.session);
  const call = await post({jsonrpc: "2.0", id: 2, method: "tools/call",
    params: {name: "echo", arguments: {message: "from the browser"}}}, init.session);
  return {init_status: init.status, session: init.session, ack_status: ack.status,
          call_status: call.status, call_text: call.text};
}
run().then(
  (result) => fetch("/report", {method: "POST", body: JSON.stringify(result)}),
  (error) => fetch("/report", {method: "POST", body: JSON.stringify({error: String(error)})}));
</script></body></html>
"#;

/// Serve the page, and `/report`, where it posts what it saw.
async fn serve_page(listener: tokio::net::TcpListener, page: String, tx: mpsc::Sender<Value>) {
    async fn report(State(tx): State<mpsc::Sender<Value>>, body: Bytes) -> StatusCode {
        let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let _ = tx.send(value).await;
        StatusCode::NO_CONTENT
    }
    let app = Router::new()
        .route("/", get(move || async move { Html(page) }))
        .route("/report", post(report))
        .with_state(tx);
    axum::serve(listener, app).await.unwrap();
}

/// Headless Chromium on `url`, ended (by its own pid) when dropped.
struct Browser {
    child: Child,
    _profile: tempdir::Dir,
}

mod tempdir {
    /// A directory removed when dropped (Chromium's profile).
    pub(crate) struct Dir(pub(crate) std::path::PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Browser {
    fn open(url: &str) -> Self {
        let profile = std::env::temp_dir().join(format!("tms-chromium-{}-{}", std::process::id(), url.len()));
        let binary = ["chromium", "chromium-browser", "google-chrome"]
            .into_iter()
            .find(|b| {
                Command::new(b)
                    .arg("--version")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok()
            })
            .expect("this test needs Chromium on PATH: apt-get install chromium");
        let child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-extensions",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        Self {
            child,
            _profile: tempdir::Dir(profile),
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_on_another_origin_gets_a_session_through_cors() {
    let (listener, page_addr) = listen().await;
    let (tx, mut reports) = mpsc::channel(1);
    // Two loopback ports: two origins, so every call is cross-origin.
    let endpoint = start_endpoint(&format!("http://{page_addr}")).await;
    let page = PAGE.replace("ENDPOINT", &format!("http://{endpoint}/mcp"));
    tokio::spawn(serve_page(listener, page, tx));
    let _browser = Browser::open(&format!("http://{page_addr}/"));
    // A bound on the wait, not a timed assertion: a browser that never reports fails
    // the test instead of hanging it.
    let report = tokio::time::timeout(Duration::from_secs(60), reports.recv())
        .await
        .expect("the page reports within a minute")
        .expect("a report");
    assert!(report.get("error").is_none(), "fetch failed in the browser: {report}");
    assert_eq!(report["init_status"], 200, "{report}");
    let session = report["session"]
        .as_str()
        .expect("Mcp-Session-Id is exposed to the page");
    assert_eq!(session.len(), 32, "{report}");
    assert_eq!(report["ack_status"], 202, "{report}");
    assert_eq!(report["call_status"], 200, "{report}");
    assert!(
        report["call_text"].as_str().unwrap().contains("from the browser"),
        "{report}"
    );
}

/// The preflight itself, without a browser: answered by the CORS layer with what a
/// page needs, before the session layer (which would answer `OPTIONS` with 405).
#[tokio::test]
async fn preflight_allows_and_exposes_the_mcp_headers() {
    let origin = "http://127.0.0.1:1";
    let endpoint = start_endpoint(origin).await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let preflight = Request::builder()
        .method(Method::OPTIONS)
        .uri(format!("http://{endpoint}/mcp"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,mcp-session-id,mcp-protocol-version,last-event-id",
        )
        .body(Full::default())
        .unwrap();
    let answer = client.request(preflight).await.unwrap();
    assert!(answer.status().is_success(), "{}", answer.status());
    let header = |name: &str| {
        answer
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_ascii_lowercase())
            .unwrap_or_default()
    };
    assert_eq!(header("access-control-allow-origin"), origin);
    let allowed = header("access-control-allow-headers");
    for name in [
        "content-type",
        "mcp-session-id",
        "mcp-protocol-version",
        "last-event-id",
    ] {
        assert!(allowed.contains(name), "{name} not in {allowed}");
    }
    assert!(header("access-control-allow-methods").contains("post"));

    // An actual request from that origin: the id is exposed to the page.
    let init = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{endpoint}/mcp"))
        .header("origin", origin)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(Full::new(Bytes::from(
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
        )))
        .unwrap();
    let answer = client.request(init).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert!(answer.headers().contains_key("mcp-session-id"));
    let exposed = answer.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(exposed.contains("mcp-session-id"), "{exposed}");
    let _ = answer.into_body().collect().await;
}
