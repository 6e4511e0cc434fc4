//! The peek's unit tests: kinds, ids, batches, leniency on `params`, answers' ids.
use super::*;

fn single(body: &str) -> Peeked {
    match peek_body(body.as_bytes()).unwrap() {
        Body::Single(p) => p,
        Body::Batch(_) => panic!("batch"),
    }
}

#[test]
fn kinds() {
    let p = single(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
    assert_eq!(p.method(), Some("tools/list"));
    assert_eq!(p.id().unwrap().get(), "1");
    let p = single(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    assert!(matches!(p.kind, MessageKind::Notification { .. }));
    let p = single(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#);
    assert!(matches!(p.kind, MessageKind::Response));
}

#[test]
fn errors() {
    assert_eq!(peek_body(b"{not json").unwrap_err(), PeekError::Parse);
    assert_eq!(peek_body(b"").unwrap_err(), PeekError::Parse);
    assert_eq!(peek_body(b"42").unwrap_err(), PeekError::InvalidRequest);
    assert_eq!(peek_body(b"{}").unwrap_err(), PeekError::InvalidRequest);
    assert_eq!(peek_body(b"[]").unwrap_err(), PeekError::InvalidRequest);
    assert_eq!(
        peek_body(br#"{"jsonrpc":"1.0","id":1,"method":"x"}"#).unwrap_err(),
        PeekError::InvalidRequest
    );
    assert_eq!(
        peek_body(br#"{"jsonrpc":"2.0","id":{},"method":"x"}"#).unwrap_err(),
        PeekError::InvalidRequest
    );
    assert_eq!(
        peek_body(br#"{"jsonrpc":"2.0","id":1,"method":3}"#).unwrap_err(),
        PeekError::InvalidRequest
    );
}

/// Found by the `jsonrpc_peek` fuzz target: an id string escaping a lone surrogate
/// (grammatical JSON, no Unicode string) was taken as a request id.
#[test]
fn an_id_naming_a_lone_surrogate_is_an_invalid_request() {
    for body in [
        r#"{"jsonrpc":"2.0","id":"a\udfff","method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":"\ud800","method":"ping"}"#,
        r#"[{"jsonrpc":"2.0","id":"\udc00x","method":"ping"}]"#,
    ] {
        assert_eq!(
            peek_body(body.as_bytes()).unwrap_err(),
            PeekError::InvalidRequest,
            "{body}"
        );
    }
    // A surrogate pair is one character, and escapes of others are fine.
    for body in [
        r#"{"jsonrpc":"2.0","id":"\ud83d\ude00","method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":"a\/b\u0061","method":"ping"}"#,
    ] {
        assert!(matches!(single(body).kind, MessageKind::Request { .. }), "{body}");
    }
}

#[test]
fn null_id_is_an_invalid_request_not_a_notification() {
    for body in [
        r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","method":"ping","id" : null}"#,
        r#"[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","id":null,"method":"b"}]"#,
    ] {
        assert_eq!(
            peek_body(body.as_bytes()).unwrap_err(),
            PeekError::InvalidRequest,
            "{body}"
        );
    }
    let p = single(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    assert!(matches!(p.kind, MessageKind::Notification { .. }));
    // A response may carry a null id: the error answering an unreadable request.
    let p = single(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}"#);
    assert!(matches!(p.kind, MessageKind::Response));
}

#[test]
fn initialize_and_modern_params() {
    let p = single(
        r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"roots":{}},"clientInfo":{"name":"c","version":"1"}}}"#,
    );
    assert!(p.is_initialize());
    let init = p.initialize.unwrap();
    assert_eq!(init.client_info.unwrap().get(), r#"{"name":"c","version":"1"}"#);
    let p = single(
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#,
    );
    assert_eq!(p.modern.protocol_version.as_deref(), Some("2026-07-28"));
    assert!(p.modern.has_client_capabilities);
    assert_eq!(p.modern.name.as_deref(), Some("echo"));
}

#[test]
fn params_of_any_shape_are_peeked_not_judged() {
    // Member types the layer does not expect are the inner service's to refuse.
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":5,"_meta":7}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[1,{"a":[]}]}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":"text"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":null}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":{}}}}"#,
    ] {
        let p = single(body);
        assert_eq!(p.method(), Some("tools/call"), "{body}");
        assert_eq!(p.modern.protocol_version, None, "{body}");
        assert_eq!(p.modern.name, None, "{body}");
    }
    // Escaped strings are decoded; the last duplicate member wins, as in a JSON object model.
    let p = single(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"n\u0061me":"a","name":"e\u0063ho","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":null}}}"#,
    );
    assert_eq!(p.modern.name.as_deref(), Some("echo"));
    assert_eq!(p.modern.protocol_version.as_deref(), Some("2026-07-28"));
    assert!(
        !p.modern.has_client_capabilities,
        "null capabilities are no capabilities"
    );
    let p = single(r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a"}}"#);
    assert_eq!(p.modern.name.as_deref(), Some("file:///a"));
    // Broken JSON inside params is still a parse error.
    assert_eq!(
        peek_body(br#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":}}"#).unwrap_err(),
        PeekError::Parse
    );
    let p = single(r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":[]}"#);
    assert_eq!(p.initialize.unwrap().protocol_version, None);
}

#[test]
fn batch() {
    let Body::Batch(items) =
        peek_body(br#"[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"b"}]"#).unwrap()
    else {
        panic!("not a batch");
    };
    assert_eq!(items.len(), 2);
}

#[test]
fn batch_items_that_are_arrays_are_invalid() {
    // Found by fuzzing: serde reads a struct from an array by position, so these
    // batches passed as a request, a notification and a response.
    for body in [
        r#"[["2.0","ping",1]]"#,
        r#"[["2.0","notifications/initialized"]]"#,
        r#"[{"jsonrpc":"2.0","id":1,"method":"a"},["2.0","b",2]]"#,
        r#"[["2.0",null,null,null,{}]]"#,
        r#"[[{"jsonrpc":"2.0","id":1,"method":"a"}]]"#,
        r#"[ [] ]"#,
    ] {
        assert_eq!(
            peek_body(body.as_bytes()).unwrap_err(),
            PeekError::InvalidRequest,
            "{body}"
        );
    }
}

#[test]
fn initialize_outcomes() {
    let id = RawValue::from_string("7".into()).unwrap();
    let ok = br#"{"jsonrpc":"2.0","id":7,"result":{"protocolVersion":"2025-11-25","capabilities":{},"serverInfo":{"name":"s","version":"1"}}}"#;
    assert_eq!(
        initialize_outcome(ok, &id),
        Some(InitializeOutcome::Succeeded(ProtocolVersion::V2025_11_25))
    );
    let err = br#"{"jsonrpc":"2.0","id":7,"error":{"code":-32602,"message":"bad"}}"#;
    assert_eq!(initialize_outcome(err, &id), Some(InitializeOutcome::Failed));
    let other = br#"{"jsonrpc":"2.0","id":8,"result":{"protocolVersion":"2025-11-25"}}"#;
    assert_eq!(initialize_outcome(other, &id), None);
    let note = br#"{"jsonrpc":"2.0","method":"notifications/message","params":{}}"#;
    assert_eq!(initialize_outcome(note, &id), None);
}

#[test]
fn initialize_answers_match_ids_as_json_values() {
    let answer =
        |id: &str| format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"protocolVersion":"2025-11-25"}}}}"#).into_bytes();
    let succeeded = Some(InitializeOutcome::Succeeded(ProtocolVersion::V2025_11_25));
    let same = [
        (r#""a/b""#, r#""a\/b""#),
        (r#""a""#, r#""\u0061""#),
        ("\"\u{e9}\"", r#""\u00e9""#),
        (r#""\ud83d\ude00""#, "\"\u{1f600}\""),
        ("0", "-0"),
        ("1.5", "15e-1"),
        ("1e0", "1.0"),
        ("1", "1e0"),
        ("1", "1.0"),
        ("123456789012345678901234567890", "123456789012345678901234567890"),
    ];
    for (sent, answered) in same {
        for (a, b) in [(sent, answered), (answered, sent)] {
            let id = RawValue::from_string(a.into()).unwrap();
            assert_eq!(initialize_outcome(&answer(b), &id), succeeded, "{a} and {b}");
        }
    }
    // Big integers are compared exactly, not as the floats they round to.
    let different = [
        (r#""a""#, r#""A""#),
        (r#""1""#, "1"),
        ("1", "2.0"),
        ("18446744073709551616", "18446744073709551617"),
        ("123456789012345678901234567890", "123456789012345678901234567891"),
        (r#""a\/b""#, r#""a\\/b""#),
    ];
    for (sent, answered) in different {
        for (a, b) in [(sent, answered), (answered, sent)] {
            let id = RawValue::from_string(a.into()).unwrap();
            assert_eq!(initialize_outcome(&answer(b), &id), None, "{a} and {b}");
        }
    }
}

#[test]
fn error_bodies() {
    let b = error_body(None, -32001, "Session not found", None);
    assert_eq!(
        &b[..],
        br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"Session not found"}}"#
    );
}

#[test]
fn trace_context_in_meta() {
    let p = single(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","_meta":{"traceparent":"00-ab-cd-01","tracestate":7,"baggage":"k=v"}}}"#,
    );
    let trace = p.trace.expect("a trace context");
    assert_eq!(trace.traceparent(), Some("00-ab-cd-01"));
    assert_eq!(trace.tracestate(), None, "not a string: left out");
    assert_eq!(trace.baggage(), Some("k=v"));
    assert!(
        single(r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{}}}"#)
            .trace
            .is_none()
    );
}

/// Found by the `jsonrpc_peek` fuzz target: a 27-digit id answered with the float
/// serde_json makes of it, one unit in the last place off.
#[test]
fn a_wide_integer_id_matches_its_float_neighbour() {
    let id = RawValue::from_string("333333333333333333333333030".to_owned()).unwrap();
    let answer = br#"{"id":3.333333333333334e+26,"jsonrpc":"2.0","result":{"protocolVersion":"2025-06-18"}}"#;
    assert!(initialize_outcome(answer, &id).is_some());
    let far = br#"{"id":3.3333333333333e+26,"jsonrpc":"2.0","result":{"protocolVersion":"2025-06-18"}}"#;
    assert!(initialize_outcome(far, &id).is_none());
}

/// Found by the `jsonrpc_peek` fuzz target: an id beyond any float.
#[test]
fn an_id_no_float_can_hold_is_an_invalid_request() {
    let body = r#"{"jsonrpc":"2.0","id":3E999,"method":"ping"}"#;
    assert_eq!(peek_body(body.as_bytes()).unwrap_err(), PeekError::InvalidRequest);
    assert!(matches!(
        single(r#"{"jsonrpc":"2.0","id":3E99,"method":"ping"}"#).kind,
        MessageKind::Request { .. }
    ));
}
