//! Feature `metrics`: the layer's metrics through the `metrics` crate's facade, named
//! in the OpenTelemetry style. Whatever recorder the application installs
//! (`metrics-exporter-prometheus`, an OpenTelemetry bridge, …) receives them; without
//! one every call is a no-op.
//!
//! Every label value is bounded: methods come from the conventions' list, versions,
//! error codes, reasons and store operations from fixed sets. No client text becomes a
//! label.

use std::sync::Mutex;
use std::sync::Once;
use std::time::{Duration, Instant};

use metrics::{Label, Unit};

use crate::ProtocolVersion;
use crate::drain::DrainReport;
use crate::rejection::RejectionKind;
use crate::session::{CloseReason, SessionId, SessionRecord};
use crate::util::FastDashMap;

/// `mcp.server.operation.duration` (histogram, seconds): one sample per JSON-RPC
/// request or notification, from the start of its POST to its answer's head.
pub(crate) const OPERATION_DURATION: &str = "mcp.server.operation.duration";
/// `mcp.server.session.duration` (histogram, seconds): one sample per session this
/// instance created and saw end.
pub(crate) const SESSION_DURATION: &str = "mcp.server.session.duration";
/// Sessions created here minus sessions seen ending here (gauge).
pub(crate) const SESSIONS_ACTIVE: &str = "mcp.server.session.active";
/// Sessions created (counter).
pub(crate) const SESSIONS_CREATED: &str = "mcp.server.session.created";
/// Sessions ended, by `mcp.session.close_reason` (counter).
pub(crate) const SESSIONS_CLOSED: &str = "mcp.server.session.closed";
/// Requests refused by the layer, by `mcp.rejection.reason` (counter).
pub(crate) const REJECTIONS: &str = "mcp.server.rejections";
/// SSE streams being written to a client by this instance (gauge).
pub(crate) const STREAMS_OPEN: &str = "mcp.server.stream.open";
/// Successful `Last-Event-ID` resumptions (counter).
pub(crate) const STREAMS_RESUMED: &str = "mcp.server.stream.resumed";
/// Events the memory event log dropped to stay within its bounds (counter).
pub(crate) const EVENTS_EVICTED: &str = "mcp.server.event_log.evicted";
/// One `SessionStore` call of the layer, by `mcp.store.operation` (histogram, seconds).
pub(crate) const STORE_DURATION: &str = "mcp.server.store.duration";
/// Layers of this process that were told to drain (gauge): 0, then 1 from the drain
/// call on (a drain is never undone).
pub(crate) const DRAIN_ACTIVE: &str = "mcp.server.drain.active";
/// What a drain still waits for, by `mcp.drain.work` (gauge), while it waits.
pub(crate) const DRAIN_IN_FLIGHT: &str = "mcp.server.drain.in_flight";
/// One sample per drain as it ends, by `mcp.drain.outcome` (histogram, seconds).
pub(crate) const DRAIN_DURATION: &str = "mcp.server.drain.duration";

/// Every metric this module can emit, with its type: what the README's table must list.
#[cfg(test)]
const ALL: [(&str, &str); 13] = [
    (OPERATION_DURATION, "histogram"),
    (SESSION_DURATION, "histogram"),
    (SESSIONS_ACTIVE, "gauge"),
    (SESSIONS_CREATED, "counter"),
    (SESSIONS_CLOSED, "counter"),
    (REJECTIONS, "counter"),
    (STREAMS_OPEN, "gauge"),
    (STREAMS_RESUMED, "counter"),
    (EVENTS_EVICTED, "counter"),
    (STORE_DURATION, "histogram"),
    (DRAIN_ACTIVE, "gauge"),
    (DRAIN_IN_FLIGHT, "gauge"),
    (DRAIN_DURATION, "histogram"),
];

/// Sessions whose creation time is kept for `mcp.server.session.duration`, at most.
const MAX_TRACKED: usize = 1 << 16;
/// How often a full table may be pruned of sessions past their lifetime.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Describe every metric to the recorder once per process (units and help texts).
pub(crate) fn describe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        metrics::describe_histogram!(
            OPERATION_DURATION,
            Unit::Seconds,
            "Duration of MCP requests and notifications"
        );
        metrics::describe_histogram!(SESSION_DURATION, Unit::Seconds, "Duration of MCP sessions");
        metrics::describe_gauge!(SESSIONS_ACTIVE, "Sessions created here and not seen ending");
        metrics::describe_counter!(SESSIONS_CREATED, "Sessions created");
        metrics::describe_counter!(SESSIONS_CLOSED, "Sessions ended, by reason");
        metrics::describe_counter!(REJECTIONS, "Requests refused by the session layer, by reason");
        metrics::describe_gauge!(STREAMS_OPEN, "SSE streams being written to clients");
        metrics::describe_counter!(STREAMS_RESUMED, "Streams resumed with Last-Event-ID");
        metrics::describe_counter!(
            EVENTS_EVICTED,
            "Events dropped by the memory event log to stay within bounds"
        );
        metrics::describe_histogram!(STORE_DURATION, Unit::Seconds, "Duration of session store calls");
        metrics::describe_gauge!(DRAIN_ACTIVE, "Session layers told to drain");
        metrics::describe_gauge!(DRAIN_IN_FLIGHT, "What a drain still waits for, by kind of work");
        metrics::describe_histogram!(DRAIN_DURATION, Unit::Seconds, "Duration of drains, by outcome");
    });
}

/// A running operation's duration sample: one message's, or each of a batch's.
pub(crate) struct OperationSample {
    methods: Methods,
    version: Option<&'static str>,
    started: Instant,
}

/// The method labels of an operation; one message needs no allocation.
pub(crate) enum Methods {
    One(&'static str),
    Batch(Vec<&'static str>),
}

impl OperationSample {
    pub(crate) fn start(methods: Methods, version: Option<ProtocolVersion>) -> Self {
        Self {
            methods,
            version: version.and_then(super::labels::version_label),
            started: Instant::now(),
        }
    }

    pub(crate) fn finish(self, error: Option<&'static str>) {
        let seconds = self.started.elapsed().as_secs_f64();
        let methods = match &self.methods {
            Methods::One(method) => std::slice::from_ref(method),
            Methods::Batch(methods) => methods.as_slice(),
        };
        for &method in methods {
            let mut labels = Vec::with_capacity(4);
            labels.push(Label::from_static_parts("mcp.method.name", method));
            if let Some(version) = self.version {
                labels.push(Label::from_static_parts("mcp.protocol.version", version));
            }
            if let Some(error) = error {
                labels.push(Label::from_static_parts("error.type", error));
            }
            labels.push(Label::from_static_parts("network.transport", "tcp"));
            metrics::histogram!(OPERATION_DURATION, labels).record(seconds);
        }
    }
}

/// When each session this instance created was born, for its duration at the end.
///
/// Bounded: at most [`MAX_TRACKED`] sessions; a full table is pruned of sessions older
/// than the lifetime (they ended, wherever that was seen) at most once a minute, and
/// a session that finds it still full goes without a duration sample.
pub(crate) struct Births {
    born: FastDashMap<SessionId, (Instant, Option<&'static str>)>,
    lifetime: Duration,
    pruned: Mutex<Option<Instant>>,
}

impl Births {
    pub(crate) fn new(lifetime: Duration) -> Self {
        describe();
        // Registered at 0 from the start, so a scrape shows an instance not draining.
        metrics::gauge!(DRAIN_ACTIVE).increment(0.0);
        Self {
            born: FastDashMap::default(),
            lifetime,
            pruned: Mutex::new(None),
        }
    }

    pub(crate) fn created(&self, record: &SessionRecord) {
        metrics::counter!(SESSIONS_CREATED).increment(1);
        metrics::gauge!(SESSIONS_ACTIVE).increment(1.0);
        if self.born.len() >= MAX_TRACKED && !self.prune() {
            return;
        }
        let version = super::labels::version_label(record.protocol_version());
        self.born.insert(record.id().clone(), (Instant::now(), version));
    }

    /// Drop sessions past their lifetime; whether there is room now.
    fn prune(&self) -> bool {
        {
            let mut pruned = self.pruned.lock().unwrap_or_else(|e| e.into_inner());
            if pruned.is_some_and(|at| at.elapsed() < PRUNE_EVERY) {
                return false;
            }
            *pruned = Some(Instant::now());
        }
        let lifetime = self.lifetime;
        self.born.retain(|_, (at, _)| at.elapsed() <= lifetime);
        self.born.len() < MAX_TRACKED
    }

    pub(crate) fn closed(&self, id: &SessionId, reason: CloseReason) {
        metrics::counter!(SESSIONS_CLOSED, "mcp.session.close_reason" => reason.as_str()).increment(1);
        metrics::gauge!(SESSIONS_ACTIVE).decrement(1.0);
        let Some((_, (born, version))) = self.born.remove(id) else {
            return;
        };
        let seconds = born.elapsed().as_secs_f64();
        let mut labels = vec![Label::from_static_parts("network.transport", "tcp")];
        if let Some(version) = version {
            labels.push(Label::from_static_parts("mcp.protocol.version", version));
        }
        metrics::histogram!(SESSION_DURATION, labels).record(seconds);
    }
}

pub(crate) fn rejected(kind: RejectionKind) {
    metrics::counter!(REJECTIONS, "mcp.rejection.reason" => kind.reason()).increment(1);
}

pub(crate) fn resumed() {
    metrics::counter!(STREAMS_RESUMED).increment(1);
}

pub(crate) fn stream_opened() {
    metrics::gauge!(STREAMS_OPEN).increment(1.0);
}

pub(crate) fn stream_closed() {
    metrics::gauge!(STREAMS_OPEN).decrement(1.0);
}

pub(crate) fn event_evicted() {
    metrics::counter!(EVENTS_EVICTED).increment(1);
}

/// One store call of `operation`, `seconds` long.
pub(crate) fn store_call(operation: &'static str, seconds: f64) {
    metrics::histogram!(STORE_DURATION, "mcp.store.operation" => operation).record(seconds);
}

/// A layer was told to drain, for the first time.
pub(crate) fn drain_begun() {
    metrics::gauge!(DRAIN_ACTIVE).increment(1.0);
}

/// What a drain waits for now.
pub(crate) fn drain_in_flight(report: &DrainReport) {
    let work = [
        ("pump", report.pumps),
        ("connection", report.connections),
        ("client_request", report.client_requests),
    ];
    for (kind, count) in work {
        metrics::gauge!(DRAIN_IN_FLIGHT, "mcp.drain.work" => kind).set(count as f64);
    }
}

/// A drain ended: nothing left (`complete`) or at its deadline (`deadline`).
pub(crate) fn drain_ended(report: &DrainReport) {
    let outcome = if report.is_complete() { "complete" } else { "deadline" };
    metrics::histogram!(DRAIN_DURATION, "mcp.drain.outcome" => outcome).record(report.elapsed.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// The metric table of the README's "Operating it" section: `(name, type, unit)` for
    /// each of its rows.
    fn readme_table() -> BTreeSet<(String, String, String)> {
        let readme = include_str!("../../README.md");
        let start = readme.find("\n## Operating it\n").expect("an \"Operating it\" section");
        let section = &readme[start + 1..];
        let section = &section[..section[3..].find("\n## ").map_or(section.len(), |end| end + 3)];
        let table = section
            .find("\n| metric | type | unit | attributes | Prometheus |\n")
            .map(|at| &section[at + 1..])
            .expect("the metric table");
        let mut rows = BTreeSet::new();
        for line in table.lines().take_while(|line| line.starts_with('|')) {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            // "", name, type, unit, attributes, Prometheus, ""
            if let [_, name, kind, unit, ..] = cells.as_slice()
                && let Some(name) = name.strip_prefix("`mcp.").and_then(|n| n.strip_suffix('`'))
            {
                rows.insert((format!("mcp.{name}"), (*kind).to_owned(), (*unit).to_owned()));
            }
        }
        rows
    }

    #[test]
    fn the_readme_table_lists_every_metric_and_no_other() {
        let table = readme_table();
        let documented: BTreeSet<(String, String)> = table.iter().map(|(n, k, _)| (n.clone(), k.clone())).collect();
        let emitted: BTreeSet<(String, String)> = super::ALL
            .iter()
            .map(|(n, k)| ((*n).to_owned(), (*k).to_owned()))
            .collect();
        let missing: Vec<_> = emitted.difference(&documented).collect();
        let stale: Vec<_> = documented.difference(&emitted).collect();
        assert!(missing.is_empty(), "emitted but not in the README's table: {missing:?}");
        assert!(stale.is_empty(), "in the README's table but never emitted: {stale:?}");
        assert_eq!(table.len(), emitted.len(), "a metric is listed twice: {table:?}");
        // Every histogram is in seconds, and nothing else has a unit.
        for (name, kind, unit) in &table {
            let want = if kind == "histogram" { "s" } else { "—" };
            assert_eq!(unit, want, "the unit of {name}");
        }
    }
}
