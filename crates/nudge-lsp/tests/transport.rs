//! The stdio framing: malformed frames become errors to answer, and the
//! reader finds the next frame after each of them.

use std::io::Cursor;

use lsp_server::Message;
use nudge_lsp::transport::{Frame, FrameReader};

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

const PING: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"textDocument/hover","params":{}}"#;

/// The error code of each frame until the end of the input; 0 for a message.
fn codes(input: Vec<u8>, max: usize) -> Vec<i32> {
    let mut reader = FrameReader::new(Cursor::new(input), max);
    let mut out = Vec::new();
    loop {
        match reader.next_frame().expect("no I/O error") {
            Frame::Eof => return out,
            Frame::Message(Message::Request(r)) => {
                assert_eq!(r.method, "textDocument/hover");
                out.push(0);
            }
            Frame::Message(m) => panic!("unexpected {m:?}"),
            Frame::Invalid(e) => out.push(e.code),
        }
    }
}

#[test]
fn each_malformed_frame_is_answered_and_the_next_one_is_read() {
    let mut input = Vec::new();
    input.extend(frame(b"{ not json"));
    input.extend(frame(PING));
    input.extend(frame(b"[1, 2]"));
    input.extend(frame(b"\xff\xfe{}"));
    input.extend(frame(br#"{"jsonrpc":"2.0","id":4,"method":7}"#));
    input.extend(b"Content-Type: application/json\r\n\r\n");
    input.extend(frame(PING));
    input.extend(b"Content-Length: twelve\r\n\r\n");
    // A body without a header runs straight into the next frame's header.
    input.extend(br#"{"jsonrpc":"2.0","method":"x"}"#);
    input.extend(frame(PING));
    assert_eq!(
        codes(input, 1 << 20),
        [
            -32700, 0, -32600, -32700, -32600, -32700, 0, -32700, -32700, 0
        ]
    );
}

#[test]
fn the_id_of_an_invalid_request_is_echoed() {
    let mut reader = FrameReader::new(
        Cursor::new(frame(br#"{"jsonrpc":"2.0","id":"a-1","method":null}"#)),
        1 << 20,
    );
    let Frame::Invalid(e) = reader.next_frame().unwrap() else {
        panic!("an invalid frame");
    };
    assert_eq!(e.response()["id"], "a-1");
    assert_eq!(e.response()["error"]["code"], -32600);
}

#[test]
fn an_oversized_body_is_refused_and_skipped_without_being_kept() {
    let mut input = frame(&vec![b' '; 5000]);
    input.extend(frame(PING));
    assert_eq!(codes(input, 1000), [-32700, 0]);
}

#[test]
fn an_absurd_length_is_refused_before_allocating() {
    let mut input = b"Content-Length: 4611686018427387904\r\n\r\n".to_vec();
    input.extend(PING);
    // Refused at once; the claimed body swallows the rest of the input.
    assert_eq!(codes(input, nudge_lsp::transport::MAX_MESSAGE), [-32700]);
}

#[test]
fn random_bytes_never_panic_or_hang_the_reader() {
    // A fixed linear congruential generator: the same bytes on every run.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as u8
    };
    for round in 0..200 {
        let mut input = Vec::new();
        for _ in 0..(round % 7 + 1) {
            // Fragments that look like frames, mixed with noise.
            match next() % 4 {
                0 => input.extend(frame(PING)),
                1 => input.extend(format!("Content-Length: {}\r\n\r\n", next() % 40).bytes()),
                2 => input.extend(b"\r\n"),
                _ => input.extend((0..next() % 60).map(|_| next())),
            }
        }
        let mut reader = FrameReader::new(Cursor::new(input), 1 << 10);
        let mut frames = 0;
        loop {
            match reader.next_frame().expect("no I/O error") {
                Frame::Eof => break,
                _ => frames += 1,
            }
            assert!(frames <= 10_000, "the reader does not advance");
        }
    }
}
