//! The reader against the WHATWG rules, chunk boundaries and its bounds.

use super::*;

fn read_chunks(chunks: &[&[u8]]) -> Vec<SseEvent> {
    let mut p = SseParser::new(1 << 20);
    let mut out = Vec::new();
    for c in chunks {
        p.push(c);
        while let Some(e) = p.next_event().unwrap() {
            out.push(e);
        }
    }
    out
}

fn datas(events: &[SseEvent]) -> Vec<&[u8]> {
    events.iter().map(|e| &e.data[..]).collect()
}

#[test]
fn one_event_all_fields() {
    let ev = read_chunks(&[b"event: ping\nid: 7\nretry: 250\ndata: hello\n\n"]);
    assert_eq!(
        ev,
        vec![SseEvent {
            event: Some("ping".into()),
            data: Bytes::from_static(b"hello"),
            id: Some("7".into()),
            retry: Some(250),
        }]
    );
}

#[test]
fn data_lines_join_with_lf_and_every_line_ending_counts() {
    let ev = read_chunks(&[b"data: a\ndata: b\r\ndata: c\rdata:d\n\r\n"]);
    assert_eq!(datas(&ev), vec![&b"a\nb\nc\nd"[..]]);
    let ev = read_chunks(&[b"data: x\r\rdata: y\r\n\r\ndata: z\n\n"]);
    assert_eq!(datas(&ev), vec![&b"x"[..], b"y", b"z"]);
}

#[test]
fn crlf_split_across_chunks_is_one_line_end() {
    let ev = read_chunks(&[b"data: a\r", b"\ndata: b\r", b"\n", b"\r", b"\n"]);
    assert_eq!(datas(&ev), vec![&b"a\nb"[..]]);
    // A CR at the very end of a chunk, then a non-LF: still one line end.
    let ev = read_chunks(&[b"data: a\r", b"data: b\r\r"]);
    assert_eq!(datas(&ev), vec![&b"a\nb"[..]]);
}

#[test]
fn utf8_split_inside_a_sequence() {
    let text = "data: h\u{e9}\u{1F600}\n\n".as_bytes();
    let chunks: Vec<&[u8]> = text.chunks(1).collect();
    let ev = read_chunks(&chunks);
    assert_eq!(datas(&ev), vec!["h\u{e9}\u{1F600}".as_bytes()]);
}

#[test]
fn invalid_utf8_is_replaced() {
    let ev = read_chunks(&[b"data: a\xffb\n\n"]);
    assert_eq!(datas(&ev), vec!["a\u{FFFD}b".as_bytes()]);
}

#[test]
fn leading_bom_is_skipped_even_when_split_and_only_once() {
    let ev = read_chunks(&[b"\xEF", b"\xBB", b"\xBFdata: a\n\n"]);
    assert_eq!(datas(&ev), vec![&b"a"[..]]);
    // A second BOM is part of the field name, which is then unknown.
    let ev = read_chunks(&[b"\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\ndata: b\n\n"]);
    assert_eq!(datas(&ev), vec![&b"b"[..]]);
    // Not a BOM after all.
    let ev = read_chunks(&[b"\xEF", b"data: a\n\n"]);
    assert_eq!(ev.len(), 0, "the first line's field name is \\xEF-prefixed");
}

#[test]
fn field_syntax_details() {
    // No colon: the whole line is the name and the value is empty.
    let ev = read_chunks(&[b"data\n\n"]);
    assert_eq!(datas(&ev), vec![&b""[..]]);
    // Exactly one leading space is removed.
    let ev = read_chunks(&[b"data:x\n\ndata:  y\n\n"]);
    assert_eq!(datas(&ev), vec![&b"x"[..], b" y"]);
    // Colons after the first are part of the value.
    let ev = read_chunks(&[b"data: a:b\n\n"]);
    assert_eq!(datas(&ev), vec![&b"a:b"[..]]);
    // Unknown fields and comments are ignored.
    let ev = read_chunks(&[b": hi\nfoo: bar\ndata: z\n:bye\n\n"]);
    assert_eq!(datas(&ev), vec![&b"z"[..]]);
    // An empty event name reads as none.
    let ev = read_chunks(&[b"event:\ndata: z\n\n"]);
    assert_eq!(ev[0].event, None);
}

#[test]
fn blocks_without_data_are_not_events_but_id_and_retry_stick() {
    let mut p = SseParser::new(1024);
    p.push(b"id: 5\nevent: x\n\nretry: 3000\n\n");
    assert_eq!(p.next_event().unwrap(), None);
    assert_eq!(p.last_event_id(), "5");
    assert_eq!(p.reconnection_time(), Some(3000));
    // The event name of the data-less block does not leak into the next event.
    p.push(b"data: a\n\n");
    let e = p.next_event().unwrap().unwrap();
    assert_eq!((e.event, e.id), (None, None));
    assert_eq!(p.last_event_id(), "5");
}

#[test]
fn id_with_nul_is_ignored_and_empty_id_clears() {
    let mut p = SseParser::new(1024);
    p.push(b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n");
    assert_eq!(p.next_event().unwrap().unwrap().id.as_deref(), Some("1"));
    assert_eq!(p.next_event().unwrap().unwrap().id, None);
    assert_eq!(p.last_event_id(), "1");
    p.push(b"id\ndata: c\n\n");
    assert_eq!(p.next_event().unwrap().unwrap().id.as_deref(), Some(""));
    assert_eq!(p.last_event_id(), "");
}

#[test]
fn retry_accepts_digits_only() {
    for bad in [
        &b"retry: 1a\n\n"[..],
        b"retry: -1\n\n",
        b"retry:\n\n",
        b"retry: 99999999999999999999\n\n",
    ] {
        let mut p = SseParser::new(1024);
        p.push(bad);
        assert_eq!(p.next_event().unwrap(), None);
        assert_eq!(p.reconnection_time(), None, "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn incomplete_event_at_end_is_discarded() {
    let mut p = SseParser::new(1024);
    p.push(b"data: a\n\ndata: b\n");
    assert_eq!(&p.next_event().unwrap().unwrap().data[..], b"a");
    assert_eq!(p.next_event().unwrap(), None);
    assert!(p.finish());
    assert_eq!(p.next_event().unwrap(), None);
    assert!(!p.finish());
    // Usable for the next stream, BOM included.
    p.push(b"\xEF\xBB\xBFdata: c\n\n");
    assert_eq!(&p.next_event().unwrap().unwrap().data[..], b"c");
}

#[test]
fn oversized_event_is_refused_then_skipped() {
    let mut p = SseParser::new(16);
    p.push(b"data: 0123456789\ndata: 0123456789\nid: x\n\ndata: ok\n\n");
    assert_eq!(p.next_event(), Err(SseError::EventTooLarge { limit: 16 }));
    assert_eq!(&p.next_event().unwrap().unwrap().data[..], b"ok");
    assert_eq!(p.last_event_id(), "", "fields of the skipped event do not apply");
}

#[test]
fn endless_line_is_refused_with_bounded_memory() {
    let mut p = SseParser::new(100);
    p.push(b"data: ");
    let mut errors = 0;
    for _ in 0..1000 {
        p.push(&[b'x'; 10]);
        loop {
            match p.next_event() {
                Ok(None) => break,
                Ok(Some(_)) => panic!("no event expected"),
                Err(_) => errors += 1,
            }
        }
        assert!(p.buffered_bytes() <= 110, "{}", p.buffered_bytes());
    }
    assert_eq!(errors, 1);
    p.push(b"\n\ndata: after\n\n");
    assert_eq!(&p.next_event().unwrap().unwrap().data[..], b"after");
}

/// Every event and error `chunks` give, fed one by one, then whether `finish`
/// discarded something.
fn outcomes(max: usize, chunks: &[&[u8]]) -> (Vec<Result<SseEvent, SseError>>, bool) {
    let mut p = SseParser::new(max);
    let mut out = Vec::new();
    for c in chunks {
        p.push(c);
        loop {
            match p.next_event() {
                Ok(None) => break,
                Ok(Some(e)) => out.push(Ok(e)),
                Err(e) => out.push(Err(e)),
            }
        }
    }
    (out, p.finish())
}

#[test]
fn a_line_in_pieces_reads_as_the_whole_line() {
    // Found by fuzzing: a line arriving in pieces was bounded by its raw length
    // (field name included), and its overflow dropped only the line, so the rest of
    // the event was dispatched without it.
    let cases: [(usize, &[&[u8]]); 7] = [
        // The value fits exactly; the raw line does not.
        (10, &[b"data: 1234", b"56789\n\n"]),
        // Overflow in pieces drops the whole event, as in one piece.
        (
            16,
            &[
                b"data: a\ndata: xxxxxx",
                b"xxxxxxxxxxxxxxxxxxxxxxxxx",
                b"\ndata: b\n\ndata: c\n\n",
            ],
        ),
        // An ignored field costs nothing and refuses nothing, however long.
        (8, &[b"foo: 0123456", b"789abcdef\ndata: x\n\n"]),
        (8, &[b"retryx", b"0123456789\ndata: x\n\n"]),
        (8, &[b"retry: 1", b"0000000000000000000000\ndata: x\n\n"]),
        // An over-long id overflows even with a NUL after the cut.
        (8, &[b"id: 0123456789", b"\0\ndata: x\n\ndata: y\n\n"]),
        // Replacing the event name frees what the old one held.
        (8, &[b"event: abcdef\nevent: ", b"ghijkl\ndata: x\n\n"]),
    ];
    for (max, chunks) in cases {
        let whole = chunks.concat();
        let one_piece = outcomes(max, &[&whole]);
        assert_eq!(
            outcomes(max, chunks),
            one_piece,
            "{:?}",
            String::from_utf8_lossy(&whole)
        );
        let bytes: Vec<&[u8]> = whole.chunks(1).collect();
        assert_eq!(
            outcomes(max, &bytes),
            one_piece,
            "{:?}",
            String::from_utf8_lossy(&whole)
        );
    }
    let (events, _) = outcomes(10, &[b"data: 1234", b"56789\n\n"]);
    assert_eq!(
        events,
        vec![Ok(SseEvent {
            event: None,
            data: Bytes::from_static(b"123456789"),
            id: None,
            retry: None
        })]
    );
    let (events, _) = outcomes(
        16,
        &[
            b"data: a\ndata: xxxxxx",
            b"xxxxxxxxxxxxxxxxxxxxxxxxx",
            b"\ndata: b\n\ndata: c\n\n",
        ],
    );
    assert_eq!(events.len(), 2);
    assert_eq!(events[0], Err(SseError::EventTooLarge { limit: 16 }));
    assert_eq!(events[1].as_ref().map(|e| &e.data[..]), Ok(&b"c"[..]));
}

#[test]
fn long_comment_costs_no_memory() {
    let mut p = SseParser::new(8);
    p.push(b":");
    for _ in 0..100 {
        p.push(&[b'c'; 100]);
        assert_eq!(p.next_event(), Ok(None));
        assert_eq!(p.buffered_bytes(), 0);
    }
    p.push(b"\ndata: a\n\n");
    assert_eq!(&p.next_event().unwrap().unwrap().data[..], b"a");
}

#[test]
fn many_events_in_one_chunk() {
    let ev = read_chunks(&[b"data: 1\n\ndata: 2\n\n\n\ndata: 3\n\n"]);
    assert_eq!(datas(&ev), vec![&b"1"[..], b"2", b"3"]);
}
