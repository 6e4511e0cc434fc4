//! Real servers on 127.0.0.1 for the client tests: the echo server behind
//! `McpSessionLayer`, served by hyper; connections can be cut and the server killed and
//! restarted on the same port.
#![allow(dead_code)]

pub(crate) use mcp_test_support::echo;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::{AbortHandle, JoinHandle};
use tower::Layer;
use tower_mcp_session::McpSessionLayer;
use tower_mcp_session_client::{McpClient, McpClientLayer, McpClientLayerBuilder};

pub(crate) use echo::EchoOptions;

pub(crate) type Http = Client<HttpConnector, Full<Bytes>>;

/// A test server that owns its listener and its connections.
pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    pub(crate) layer: McpSessionLayer,
    accept: Option<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
}

/// The layer the tests use: a short `retry` so polling and resumption stay fast.
pub(crate) fn test_layer() -> McpSessionLayer {
    McpSessionLayer::builder().sse_retry(Duration::from_millis(30)).build()
}

impl TestServer {
    /// The echo server behind `layer` on a free port.
    pub(crate) async fn start(layer: McpSessionLayer) -> Self {
        Self::start_on(0, layer).await
    }

    /// The echo server behind `layer` on `port` (0: any free port).
    pub(crate) async fn start_on(port: u16, layer: McpSessionLayer) -> Self {
        let options = EchoOptions {
            sse_tool_calls: false,
            manager: Some(layer.manager()),
        };
        let svc = tower::ServiceBuilder::new()
            .layer(layer.clone())
            .service(echo::echo_service::<Full<Bytes>>(options));
        // The layer hands the inner service `Full<Bytes>`; hyper hands the layer `Incoming`.
        Self::serve(port, layer, svc).await
    }

    /// Any service over `Request<Incoming>` on `port`.
    pub(crate) async fn serve<S, B>(port: u16, layer: McpSessionLayer, svc: S) -> Self
    where
        S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let listener = bind(port).await;
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let tracked = conns.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let svc = TowerToHyperService::new(svc.clone());
                let task = tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
                let mut list = tracked.lock().unwrap();
                list.retain(|h| !h.is_finished());
                list.push(task.abort_handle());
            }
        });
        Self {
            addr,
            layer,
            accept: Some(accept),
            conns,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    pub(crate) fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Cut every open connection (the server and its sessions live on).
    pub(crate) fn drop_connections(&self) {
        for conn in self.conns.lock().unwrap().drain(..) {
            conn.abort();
        }
    }

    /// Stop listening and cut every connection; the port is free when this returns.
    pub(crate) async fn kill(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
            let _ = accept.await;
        }
        self.drop_connections();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
        self.drop_connections();
    }
}

async fn bind(port: u16) -> TcpListener {
    // A port just freed may take a moment (the kernel, or an abort still unwinding).
    for _ in 0..100 {
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)).await {
            return listener;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("cannot bind 127.0.0.1:{port}");
}

/// A hyper client with TCP_NODELAY.
pub(crate) fn http() -> Http {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_millis(500)));
    Client::builder(TokioExecutor::new()).build(connector)
}

/// A client builder with test-friendly timings, pointed at `url`.
pub(crate) fn client_builder(url: &str) -> McpClientLayerBuilder {
    McpClientLayer::builder()
        .endpoint(url.parse().unwrap())
        .client_info("client-tests", "0.0.0")
        .resume_backoff(tower_mcp_session_client::Backoff::new(
            Duration::from_millis(10),
            Duration::from_millis(200),
        ))
        .request_timeout(Some(Duration::from_secs(5)))
}

pub(crate) fn client(url: &str) -> McpClient<Http> {
    client_builder(url).build().layer(http())
}

/// Records the headers of every request the client sends, on the real client.
pub(crate) type Recorded = Arc<Mutex<Vec<(http::Method, HeaderMap, Bytes)>>>;

pub(crate) fn recording_http(
    recorded: Recorded,
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<Incoming>,
    Error = hyper_util::client::legacy::Error,
    Future = impl Send,
> + Clone
+ Send
+ Sync
+ 'static {
    let http = http();
    tower::service_fn(move |req: Request<Full<Bytes>>| {
        let http = http.clone();
        let recorded = recorded.clone();
        async move {
            let (parts, body) = req.into_parts();
            let bytes = body.collect().await.unwrap().to_bytes();
            recorded
                .lock()
                .unwrap()
                .push((parts.method.clone(), parts.headers.clone(), bytes.clone()));
            let req = Request::from_parts(parts, Full::new(bytes));
            http.request(req).await
        }
    })
}

pub(crate) fn json_rpc(id: u64, method: &str, params: Value) -> Value {
    serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

pub(crate) fn post(url: &str, message: &Value) -> Request<Full<Bytes>> {
    Request::post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(Full::new(Bytes::from(message.to_string())))
        .unwrap()
}

/// Poll `check` every 10 ms until it holds; how long it took, or panic after `limit`.
pub(crate) async fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let start = tokio::time::Instant::now();
    loop {
        if check() {
            return start.elapsed();
        }
        if start.elapsed() > limit {
            panic!("{what}: not within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
