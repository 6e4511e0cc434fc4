//! The JSON-RPC peek on arbitrary bodies.
//!
//! Invariants: never panics; whatever it accepts is JSON-RPC 2.0 as a JSON object model
//! reads it (one object, or a non-empty array of objects, each with `"jsonrpc":"2.0"`;
//! a request has a string method and a string or number id, a notification no id, a
//! response no method and a result or an error); a parse error is a body that is not
//! JSON; and the answer to an accepted request, with its id re-serialized, is matched
//! to it (`initialize_outcome`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tower_mcp_session::ProtocolVersion;
use tower_mcp_session::fuzzing::{Message, initialize_outcome, peek_body};

fuzz_target!(|body: &[u8]| {
    let peeked = peek_body(body);
    let value = serde_json::from_slice::<Value>(body);
    match peeked {
        Ok((batch, messages)) => {
            let value = match value {
                Ok(value) => value,
                // The JSON grammar lets a string escape name a lone surrogate (RFC 8259,
                // section 8.2); a `Value` cannot hold one. The peek does not judge the
                // strings it skips (that is the inner service's call), so such a body
                // passes when the surrogate is in none of the members it reads: it must
                // still be grammatical JSON, and every request id a Unicode string.
                // serde's skipping reader does not check `\u` escapes either (a short
                // or non-hex one passes): the inner service's own parse refuses such a
                // body. Known leniency, noted in FUZZING.md.
                // Nor can a `Value` hold a number beyond f64 (`1E999`), which the grammar
                // allows too; only request ids must be finite (checked below).
                Err(e)
                    if ["surrogate", "hex escape", "number out of range"]
                        .iter()
                        .any(|known| e.to_string().contains(known)) =>
                {
                    
                    for m in &messages {
                        if let Some(id) = &m.id {
                            serde_json::from_str::<Value>(id).expect("a request id the layer accepts is decodable");
                        }
                    }
                    return;
                }
                Err(e) => panic!("the peek accepted a body that is not JSON: {e}"),
            };
            let items = if batch {
                let items = value.as_array().expect("a batch is an array");
                assert!(!items.is_empty(), "an empty batch was accepted");
                items.clone()
            } else {
                vec![value]
            };
            assert_eq!(items.len(), messages.len());
            for (item, message) in items.iter().zip(&messages) {
                check_message(item, message);
            }
        }
        Err(-32700) => assert!(value.is_err(), "valid JSON read as a parse error"),
        Err(code) => assert_eq!(code, -32600),
    }
});

fn check_message(item: &Value, message: &Message) {
    let object = item.as_object().expect("a message is an object");
    assert_eq!(object.get("jsonrpc"), Some(&Value::from("2.0")));
    match message.kind {
        "request" => {
            assert_eq!(object.get("method").and_then(Value::as_str), message.method.as_deref());
            let id_text = message.id.as_deref().expect("a request has an id");
            let id: Value = serde_json::from_str(id_text).expect("the id is JSON");
            assert!(id.is_string() || id.is_number(), "id {id_text}");
            assert_eq!(Some(&id), object.get("id"));
            // The inner service answers with the id as it re-serializes it.
            let answer = serde_json::json!({
                "jsonrpc": "2.0", "id": id, "result": {"protocolVersion": "2025-06-18"}
            });
            let answer = serde_json::to_vec(&answer).unwrap();
            assert_eq!(
                initialize_outcome(&answer, id_text),
                Some(Some(ProtocolVersion::V2025_06_18)),
                "answer {} to id {id_text}",
                String::from_utf8_lossy(&answer)
            );
        }
        "notification" => {
            assert!(object.get("method").is_some_and(Value::is_string));
            assert!(!object.contains_key("id"));
        }
        "response" => {
            assert!(!object.contains_key("method"));
            assert!(object.contains_key("result") || object.contains_key("error"));
        }
        other => panic!("unknown kind {other}"),
    }
}
