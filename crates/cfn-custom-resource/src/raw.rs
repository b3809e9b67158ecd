//! An invocation's raw bytes, read so that whatever they hold, the `ResponseURL` and the other
//! protocol fields come out whenever they are there to be read.
//!
//! JSON parsers disagree on some inputs: a lone UTF-16 surrogate escape (`"\ud800"`), nesting
//! deeper than a parser's limit (serde_json refuses 128 levels), duplicate keys (serde_json and
//! JavaScript keep the last, others the first or refuse), invalid UTF-8, a truncated body. A
//! strict parser refuses the whole event for any of these, before anyone has read where to answer,
//! and CloudFormation then waits for its `ServiceTimeout`. [`read`] is one pass over the bytes
//! that never fails and never recurses: it builds the value serde_json would build when the bytes
//! are strict JSON, and otherwise the best value it can (lone surrogates and invalid UTF-8 become
//! U+FFFD, anything nested too deep becomes `null`, the last of duplicate keys wins, a truncated
//! body is closed where it ends, stray bytes are skipped) together with the first problem found,
//! which the guard answers FAILED with.

use serde_json::{Map, Value};

/// serde_json's nesting limit: it refuses arrays and objects 128 levels deep.
pub(crate) const MAX_DEPTH: usize = 127;

/// What [`read`] made of an invocation's bytes.
#[derive(Debug)]
pub(crate) struct RawEvent {
    /// The event as far as it could be read.
    pub value: Value,
    /// What makes the bytes something other than strict JSON (the first thing found). `None`:
    /// they are strict JSON without duplicate keys, and `value` is what serde_json reads.
    pub problem: Option<String>,
}

/// Reads `bytes` as leniently as it takes to find the protocol fields; never fails, never panics,
/// uses no recursion, and takes time linear in the input.
pub(crate) fn read(bytes: &[u8]) -> RawEvent {
    let mut reader = Reader {
        bytes,
        pos: 0,
        problem: None,
    };
    let value = reader.document();
    RawEvent {
        value,
        problem: reader.problem,
    }
}

enum Frame {
    Array(Vec<Value>),
    /// The members so far, and the key waiting for its value.
    Object(Map<String, Value>, Option<String>),
}

#[derive(Clone, Copy)]
enum State {
    /// A value is due (or, right after `[`, the end of the array).
    Value,
    /// A key is due (or, right after `{`, the end of the object).
    Key,
    /// A value is complete: `,`, the end of its container, or the end of the document is due.
    After,
}

/// What one step of [`Reader::document`] leads to.
enum Step {
    /// Go on in this state.
    Then(State),
    /// A container was opened: go on in this state, where it may end at once.
    Opened(State),
    /// Nothing was consumed as structure (an unexpected byte was skipped): same state, same
    /// freshness.
    Stay,
    /// The whole document.
    Done(Value),
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    problem: Option<String>,
}

impl Reader<'_> {
    fn flag(&mut self, what: impl FnOnce() -> String) {
        if self.problem.is_none() {
            self.problem = Some(what());
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn unexpected(&mut self) {
        let at = self.pos;
        let shown = match self.bytes[at] {
            b @ 0x21..=0x7e => format!("{:?}", b as char),
            b => format!("byte 0x{b:02x}"),
        };
        self.flag(|| format!("unexpected {shown} at byte {at}"));
        self.pos += 1;
    }

    /// Skips a run of bytes that cannot start anything, up to the next structural byte.
    fn stray_token(&mut self) {
        self.unexpected();
        while self.peek().is_some_and(|b| {
            !matches!(
                b,
                b',' | b':' | b'[' | b']' | b'{' | b'}' | b'"' | b' ' | b'\t' | b'\n' | b'\r'
            )
        }) {
            self.pos += 1;
        }
    }

    fn truncated(&mut self) {
        let at = self.pos;
        self.flag(|| format!("the JSON ends early, at byte {at} (truncated?)"));
    }

    /// Reads the whole document: one step per structural position, by what is due
    /// ([`Reader::value_due`], [`Reader::key_due`], [`Reader::after_value`]).
    fn document(&mut self) -> Value {
        let mut stack: Vec<Frame> = Vec::new();
        let mut state = State::Value;
        // Right after `[` or `{`: the container may end at once.
        let mut fresh = false;
        loop {
            self.skip_whitespace();
            let Some(byte) = self.peek() else {
                self.truncated();
                return close_all(stack);
            };
            let step = match state {
                State::Value => self.value_due(byte, &mut stack, fresh),
                State::Key => self.key_due(byte, &mut stack, fresh),
                State::After => self.after_value(byte, &mut stack),
            };
            match step {
                Step::Then(next) => {
                    state = next;
                    fresh = false;
                }
                Step::Opened(next) => {
                    state = next;
                    fresh = true;
                }
                Step::Stay => {}
                Step::Done(document) => return document,
            }
        }
    }

    /// `value` is complete: the whole document when no container is open; otherwise what follows
    /// a value is due ([`State::After`]).
    fn completed(&mut self, stack: &mut [Frame], value: Value) -> Step {
        match self.complete(stack, value) {
            Some(done) => Step::Done(done),
            None => Step::Then(State::After),
        }
    }

    /// Closes the innermost container (its closing byte is at `pos`).
    fn close(&mut self, stack: &mut Vec<Frame>) -> Step {
        self.pos += 1;
        let frame = stack.pop().expect("a container is open");
        self.completed(stack, finish(frame))
    }

    /// A value is due at `byte`.
    fn value_due(&mut self, byte: u8, stack: &mut Vec<Frame>, fresh: bool) -> Step {
        match byte {
            b'[' | b'{' if stack.len() >= MAX_DEPTH => {
                let at = self.pos;
                self.flag(|| {
                    format!("arrays and objects nest more than {MAX_DEPTH} levels deep at byte {at}")
                });
                self.skip_container();
                self.completed(stack, Value::Null)
            }
            b'[' => {
                self.pos += 1;
                stack.push(Frame::Array(Vec::new()));
                Step::Opened(State::Value)
            }
            b'{' => {
                self.pos += 1;
                stack.push(Frame::Object(Map::new(), None));
                Step::Opened(State::Key)
            }
            b']' | b'}' => {
                let closes = match stack.last() {
                    Some(Frame::Array(_)) => byte == b']',
                    Some(Frame::Object(..)) => byte == b'}',
                    None => false,
                };
                if !closes {
                    self.unexpected();
                    return Step::Stay;
                }
                // `[]` is fine; `[1,]` and `{"a":}` lack a value.
                if !fresh {
                    let at = self.pos;
                    self.flag(|| format!("a value is missing before byte {at}"));
                }
                self.close(stack)
            }
            b'"' => {
                let text = self.string();
                self.completed(stack, Value::String(text))
            }
            b'-' | b'0'..=b'9' => {
                let number = self.number();
                self.completed(stack, number)
            }
            b',' => {
                // `[1,,2]`, `{"a":,`: a value is missing; the comma is read next.
                let at = self.pos;
                self.flag(|| format!("a value is missing before byte {at}"));
                self.completed(stack, Value::Null)
            }
            b':' => {
                self.unexpected();
                Step::Stay
            }
            _ => {
                // A literal, or a stray token read as `null`.
                let value = match self.literal() {
                    Some(literal) => literal,
                    None => {
                        self.stray_token();
                        Value::Null
                    }
                };
                self.completed(stack, value)
            }
        }
    }

    /// A key (or, right after `{`, the end of the object) is due at `byte`.
    fn key_due(&mut self, byte: u8, stack: &mut Vec<Frame>, fresh: bool) -> Step {
        match byte {
            b'"' => {
                let key_at = self.pos;
                let key = self.string();
                self.skip_whitespace();
                if self.peek() == Some(b':') {
                    self.pos += 1;
                } else if self.peek().is_some() {
                    let at = self.pos;
                    self.flag(|| format!("':' is missing at byte {at}"));
                }
                if let Some(Frame::Object(map, pending)) = stack.last_mut() {
                    if map.contains_key(&key) {
                        self.flag(|| format!("duplicate key {} at byte {key_at}", shown_key(&key)));
                    }
                    *pending = Some(key);
                }
                Step::Then(State::Value)
            }
            b'}' => {
                if !fresh {
                    let at = self.pos;
                    self.flag(|| format!("a trailing comma before byte {at}"));
                }
                self.close(stack)
            }
            _ => {
                self.unexpected();
                Step::Stay
            }
        }
    }

    /// A value is complete; `,`, the end of its container, or the end of the document is due at
    /// `byte`.
    fn after_value(&mut self, byte: u8, stack: &mut Vec<Frame>) -> Step {
        let in_array = matches!(stack.last(), Some(Frame::Array(_)));
        let next_member = if in_array { State::Value } else { State::Key };
        match byte {
            b',' => {
                self.pos += 1;
                Step::Then(next_member)
            }
            b']' | b'}' => {
                if (byte == b']') != in_array {
                    let at = self.pos;
                    self.flag(|| format!("mismatched {:?} at byte {at}", byte as char));
                }
                self.close(stack)
            }
            b'"' | b'[' | b'{' => {
                // A missing comma: read on as if it were there.
                let at = self.pos;
                self.flag(|| format!("',' is missing at byte {at}"));
                Step::Then(next_member)
            }
            b':' => {
                self.unexpected();
                Step::Then(State::After)
            }
            _ => {
                self.stray_token();
                Step::Then(State::After)
            }
        }
    }

    /// Adds a finished value to the open container; `Some` is the whole document when there is
    /// none, after checking that nothing but whitespace follows.
    fn complete(&mut self, stack: &mut [Frame], value: Value) -> Option<Value> {
        match stack.last_mut() {
            Some(frame) => {
                add(frame, value);
                None
            }
            None => {
                self.skip_whitespace();
                if self.pos < self.bytes.len() {
                    let at = self.pos;
                    self.flag(|| format!("unexpected bytes after the JSON value, from byte {at}"));
                }
                Some(value)
            }
        }
    }

    /// Skips a whole array or object without building it, counting brackets outside strings.
    fn skip_container(&mut self) {
        let mut depth = 0usize;
        let mut in_string = false;
        while let Some(byte) = self.peek() {
            self.pos += 1;
            if in_string {
                match byte {
                    b'\\' => self.pos += 1,
                    b'"' => in_string = false,
                    _ => {}
                }
                continue;
            }
            match byte {
                b'"' => in_string = true,
                b'[' | b'{' => depth += 1,
                b']' | b'}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return;
                    }
                }
                _ => {}
            }
        }
        self.pos = self.pos.min(self.bytes.len());
    }

    /// A string starting at the opening quote; escapes decoded, lone surrogates and invalid UTF-8
    /// replaced by U+FFFD.
    fn string(&mut self) -> String {
        let start = self.pos;
        self.pos += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(byte) = self.peek() else {
                self.flag(|| format!("the string at byte {start} never ends (truncated?)"));
                break;
            };
            match byte {
                b'"' => {
                    self.pos += 1;
                    break;
                }
                b'\\' => self.escape(&mut out),
                0x00..=0x1f => {
                    let at = self.pos;
                    self.flag(|| {
                        format!("an unescaped control character (0x{byte:02x}) in a string at byte {at}")
                    });
                    out.push(byte);
                    self.pos += 1;
                }
                _ => {
                    // Copy the run up to the next quote, backslash or control byte at once.
                    let run = self.bytes[self.pos..]
                        .iter()
                        .position(|b| matches!(b, b'"' | b'\\' | 0x00..=0x1f))
                        .unwrap_or(self.bytes.len() - self.pos);
                    out.extend_from_slice(&self.bytes[self.pos..self.pos + run]);
                    self.pos += run;
                }
            }
        }
        match String::from_utf8(out) {
            Ok(text) => text,
            Err(error) => {
                self.flag(|| format!("invalid UTF-8 in the string at byte {start}"));
                String::from_utf8_lossy(error.as_bytes()).into_owned()
            }
        }
    }

    /// An escape sequence at the backslash.
    fn escape(&mut self, out: &mut Vec<u8>) {
        let at = self.pos;
        self.pos += 1;
        let Some(kind) = self.peek() else {
            return;
        };
        self.pos += 1;
        let simple = match kind {
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            _ => None,
        };
        if let Some(byte) = simple {
            out.push(byte);
            return;
        }
        let mut push = |c: char| out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
        if kind != b'u' {
            self.pos -= 1;
            self.flag(|| format!("an invalid escape sequence at byte {at}"));
            return;
        }
        let Some(unit) = self.hex4() else {
            self.flag(|| format!("an invalid \\u escape at byte {at}"));
            push(char::REPLACEMENT_CHARACTER);
            return;
        };
        let code = match unit {
            0xD800..=0xDBFF => {
                let low = (self.bytes.get(self.pos..self.pos + 2) == Some(b"\\u"))
                    .then(|| {
                        let saved = self.pos;
                        self.pos += 2;
                        let low = self.hex4().filter(|low| (0xDC00..=0xDFFF).contains(low));
                        if low.is_none() {
                            self.pos = saved;
                        }
                        low
                    })
                    .flatten();
                match low {
                    Some(low) => 0x10000 + ((u32::from(unit) - 0xD800) << 10) + (u32::from(low) - 0xDC00),
                    None => {
                        self.flag(|| format!("a lone UTF-16 surrogate escape (\\u{unit:04x}) at byte {at}"));
                        u32::from(char::REPLACEMENT_CHARACTER)
                    }
                }
            }
            0xDC00..=0xDFFF => {
                self.flag(|| format!("a lone UTF-16 surrogate escape (\\u{unit:04x}) at byte {at}"));
                u32::from(char::REPLACEMENT_CHARACTER)
            }
            unit => u32::from(unit),
        };
        push(char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER));
    }

    /// Four hex digits, consumed only when all four are there.
    fn hex4(&mut self) -> Option<u16> {
        let digits = self.bytes.get(self.pos..self.pos + 4)?;
        let text = std::str::from_utf8(digits).ok()?;
        if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let unit = u16::from_str_radix(text, 16).ok()?;
        self.pos += 4;
        Some(unit)
    }

    /// A number by JSON's grammar, converted by serde_json itself so that it is the same value.
    fn number(&mut self) -> Value {
        let start = self.pos;
        let digits = |reader: &mut Self| {
            let from = reader.pos;
            while reader.peek().is_some_and(|b| b.is_ascii_digit()) {
                reader.pos += 1;
            }
            reader.pos > from
        };
        let mut valid = true;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        if self.peek() == Some(b'0') {
            self.pos += 1;
        } else {
            valid &= digits(self);
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            valid &= digits(self);
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            valid &= digits(self);
        }
        let text = std::str::from_utf8(&self.bytes[start..self.pos]).unwrap_or_default();
        match serde_json::from_str::<serde_json::Number>(text) {
            Ok(number) if valid => Value::Number(number),
            _ => {
                self.flag(|| format!("an invalid or out-of-range number at byte {start}"));
                Value::Null
            }
        }
    }

    fn literal(&mut self) -> Option<Value> {
        let rest = &self.bytes[self.pos..];
        let (value, len) = if rest.starts_with(b"true") {
            (Value::Bool(true), 4)
        } else if rest.starts_with(b"false") {
            (Value::Bool(false), 5)
        } else if rest.starts_with(b"null") {
            (Value::Null, 4)
        } else {
            return None;
        };
        self.pos += len;
        Some(value)
    }
}

fn add(frame: &mut Frame, value: Value) {
    match frame {
        Frame::Array(items) => items.push(value),
        Frame::Object(map, pending) => {
            if let Some(key) = pending.take() {
                map.insert(key, value);
            }
        }
    }
}

fn finish(frame: Frame) -> Value {
    match frame {
        Frame::Array(items) => Value::Array(items),
        Frame::Object(map, _) => Value::Object(map),
    }
}

/// Closes every open container where the bytes end.
fn close_all(mut stack: Vec<Frame>) -> Value {
    let mut value: Option<Value> = None;
    while let Some(mut frame) = stack.pop() {
        if let Some(value) = value.take() {
            add(&mut frame, value);
        }
        value = Some(finish(frame));
    }
    value.unwrap_or(Value::Null)
}

/// A key as a Reason may show it: only short names of safe characters, so that no value (a URL
/// with its signature, say) that a mangled event turned into a key is ever repeated.
fn shown_key(key: &str) -> String {
    let safe = key.len() <= 64
        && !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if safe {
        format!("`{key}`")
    } else {
        "(a key not shown)".to_string()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn strict(text: &str) -> Value {
        let event = read(text.as_bytes());
        assert_eq!(event.problem, None, "{text}");
        assert_eq!(
            event.value,
            serde_json::from_str::<Value>(text).unwrap(),
            "{text}"
        );
        event.value
    }

    fn problem(bytes: &[u8]) -> (Value, String) {
        let event = read(bytes);
        let problem = event.problem.unwrap_or_else(|| panic!("no problem in {bytes:?}"));
        (event.value, problem)
    }

    #[test]
    fn strict_json_reads_as_serde_json_reads_it() {
        strict(
            r#"{"a": [1, -2.5e3, 0, true, false, null, "x\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"], "b": {}, "c": []}"#,
        );
        strict("  [ ]  ");
        strict(r#""just a string""#);
        strict("18446744073709551616");
        strict(&format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH)));
        for sample in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/events")).unwrap() {
            strict(&std::fs::read_to_string(sample.unwrap().path()).unwrap());
        }
    }

    #[test]
    fn a_lone_surrogate_is_replaced_and_named() {
        let (value, why) = problem(br#"{"ResponseURL": "http://h/p?s=1", "X": "a\ud800b", "Y": "\udc00"}"#);
        assert_eq!(value["ResponseURL"], "http://h/p?s=1");
        assert_eq!(value["X"], "a\u{fffd}b");
        assert_eq!(value["Y"], "\u{fffd}");
        assert!(
            why.contains("lone UTF-16 surrogate") && why.contains("ud800"),
            "{why}"
        );
        assert!(serde_json::from_str::<Value>(r#""\ud800""#).is_err());
    }

    #[test]
    fn nesting_beyond_serde_jsons_limit_is_cut_off_without_recursion() {
        let deep = format!("{}{}", "[".repeat(1_000_000), "]".repeat(1_000_000));
        let text = format!(r#"{{"X": {deep}, "ResponseURL": "http://h/"}}"#);
        let (value, why) = problem(text.as_bytes());
        assert_eq!(value["ResponseURL"], "http://h/");
        assert!(why.contains("nest more than 127"), "{why}");
        let just_over = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(serde_json::from_str::<Value>(&just_over).is_err());
        problem(just_over.as_bytes());
        // Unclosed, too: a million open brackets are not a million frames.
        problem("[".repeat(1_000_000).as_bytes());
    }

    #[test]
    fn duplicate_keys_keep_the_last_as_serde_json_does_and_are_named() {
        let (value, why) = problem(br#"{"ResponseURL": "http://a/", "ResponseURL": "http://b/"}"#);
        assert_eq!(value["ResponseURL"], "http://b/");
        assert!(why.contains("duplicate key `ResponseURL`"), "{why}");
        let (_, why) =
            problem(br#"{"http://h/?X-Amz-Signature=abc": 1, "http://h/?X-Amz-Signature=abc": 2}"#);
        assert!(!why.contains("abc"), "{why}");
    }

    #[test]
    fn truncated_and_broken_events_still_give_their_fields() {
        let full = r#"{"RequestType": "Create", "ResponseURL": "http://h/p?s=1", "StackId": "s", "ResourceProperties": {"A": "1"}}"#;
        for cut in full.find("\"StackId").unwrap()..full.len() {
            let (value, _) = problem(&full.as_bytes()[..cut]);
            assert_eq!(value["ResponseURL"], "http://h/p?s=1", "cut at {cut}");
            assert_eq!(value["RequestType"], "Create");
        }
        let (value, why) =
            problem(b"{\"ResponseURL\": \"http://h/\", \"X\": \"\xff\xfe\", \"RequestId\": \"r\"}");
        assert_eq!(value["RequestId"], "r");
        assert_eq!(value["X"], "\u{fffd}\u{fffd}");
        assert!(why.contains("UTF-8"), "{why}");
        let (value, _) = problem(br#"{"ResponseURL": "http://h/" "RequestId": "r",}"#);
        assert_eq!(value, json!({"ResponseURL": "http://h/", "RequestId": "r"}));
        let (value, _) =
            problem(br#"{"ResponseURL": "http://h/", "N": 01, "M": -, "L": tru, "RequestId": "r"} trailing"#);
        assert_eq!(value["RequestId"], "r");
        for bad in [
            &b""[..],
            b"   ",
            b"\xef\xbb\xbf{}",
            b"}",
            b"]]]",
            b"{\"a\":}",
            b"[1,]",
            b"\"\\",
            b"\"\\u12",
        ] {
            read(bad).problem.unwrap_or_else(|| panic!("{bad:?}"));
        }
    }
}
