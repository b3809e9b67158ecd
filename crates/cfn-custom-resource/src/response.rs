use std::collections::HashMap;
use std::fmt;

use aws_lambda_events::cloudformation::{
    CloudFormationCustomResourceResponse, CloudFormationCustomResourceResponseStatus,
};

/// CloudFormation rejects a response body larger than this (exactly 4096 is accepted).
pub const MAX_BODY_BYTES: usize = 4096;

/// CloudFormation's limit on a physical resource id.
pub(crate) const MAX_PHYSICAL_ID_BYTES: usize = 1024;

/// The `Data` a resource returns for `Fn::GetAtt`.
pub type Data = HashMap<String, String>;

/// A physical resource id: non-empty and at most 1 KB, as CloudFormation requires.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PhysicalId(String);

/// A physical id CloudFormation would reject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhysicalIdError {
    /// CloudFormation rejects an empty id.
    #[error("the physical resource id is empty")]
    Empty,
    /// The id is longer than CloudFormation's 1024 bytes (its length given).
    #[error("the physical resource id is {0} bytes; CloudFormation accepts at most 1024")]
    TooLong(usize),
}

impl PhysicalId {
    /// Checks the id against CloudFormation's rules.
    pub fn new(id: impl Into<String>) -> Result<Self, PhysicalIdError> {
        let id = id.into();
        if id.is_empty() {
            Err(PhysicalIdError::Empty)
        } else if id.len() > MAX_PHYSICAL_ID_BYTES {
            Err(PhysicalIdError::TooLong(id.len()))
        } else {
            Ok(Self(id))
        }
    }

    /// An id CloudFormation sent us: kept exactly as it came, since answering with anything else
    /// would make CloudFormation see a replacement.
    pub(crate) fn from_event(id: String) -> Self {
        Self(id)
    }

    /// The id as sent to CloudFormation.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PhysicalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PhysicalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// The result of a successful Create: the new resource's id and its attributes.
#[derive(Debug, Clone)]
pub struct Created {
    pub(crate) physical_id: PhysicalId,
    pub(crate) data: Data,
    pub(crate) no_echo: bool,
}

impl Created {
    /// Created under `physical_id`, with no `Data`.
    pub fn new(physical_id: PhysicalId) -> Self {
        Self {
            physical_id,
            data: Data::new(),
            no_echo: false,
        }
    }

    /// Attributes for `Fn::GetAtt`.
    pub fn with_data(mut self, data: Data) -> Self {
        self.data = data;
        self
    }

    /// Asks CloudFormation to mask `Data` in `Fn::GetAtt` output and events.
    pub fn no_echo(mut self, no_echo: bool) -> Self {
        self.no_echo = no_echo;
        self
    }
}

/// The result of a successful Update: the same resource, or a replacement with a new id.
#[derive(Debug, Clone)]
pub struct Updated {
    pub(crate) replacement: Option<PhysicalId>,
    pub(crate) data: Data,
    pub(crate) no_echo: bool,
}

impl Updated {
    /// Updated in place: the response carries the event's physical id.
    pub fn keep() -> Self {
        Self {
            replacement: None,
            data: Data::new(),
            no_echo: false,
        }
    }

    /// Replaced: CloudFormation will send a Delete for the old id once the stack update is done.
    pub fn replace(physical_id: PhysicalId) -> Self {
        Self {
            replacement: Some(physical_id),
            ..Self::keep()
        }
    }

    /// Attributes for `Fn::GetAtt`.
    pub fn with_data(mut self, data: Data) -> Self {
        self.data = data;
        self
    }

    /// Asks CloudFormation to mask `Data` in `Fn::GetAtt` output and events.
    pub fn no_echo(mut self, no_echo: bool) -> Self {
        self.no_echo = no_echo;
        self
    }
}

/// What the guard decided to answer, before it is fitted into 4096 bytes. A SUCCESS carries no
/// `Reason` and a FAILED always carries one (an empty one is replaced when it is encoded); a
/// FAILED carries no `Data`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Answer {
    Success {
        physical_id: String,
        data: Data,
        no_echo: bool,
    },
    Failed {
        physical_id: String,
        reason: String,
        /// Kept from a SUCCESS whose `Data` did not fit ([`encode`]); `false` otherwise.
        no_echo: bool,
    },
}

impl Answer {
    /// A SUCCESS.
    pub(crate) fn success(physical_id: String, data: Data, no_echo: bool) -> Self {
        Self::Success {
            physical_id,
            data,
            no_echo,
        }
    }

    /// A FAILED saying `reason`.
    pub(crate) fn failed(reason: String, physical_id: String) -> Self {
        Self::Failed {
            physical_id,
            reason,
            no_echo: false,
        }
    }

    /// `SUCCESS` or `FAILED`, as the response's `Status` says it.
    pub(crate) fn status(&self) -> &'static str {
        match self {
            Self::Success { .. } => "SUCCESS",
            Self::Failed { .. } => "FAILED",
        }
    }

    pub(crate) fn physical_id(&self) -> &str {
        match self {
            Self::Success { physical_id, .. } | Self::Failed { physical_id, .. } => physical_id,
        }
    }

    fn physical_id_mut(&mut self) -> &mut String {
        match self {
            Self::Success { physical_id, .. } | Self::Failed { physical_id, .. } => physical_id,
        }
    }
}

/// The identity fields every response copies from its request.
#[derive(Debug, Clone, Default)]
pub(crate) struct Identity {
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
}

const TRUNCATED: &str = " [...truncated]";

/// Why the answer's `Data` cannot be sent: `Some(reason)` when the body would exceed
/// [`MAX_BODY_BYTES`] with it (a `Reason` can be cut to fit, `Data` cannot).
pub(crate) fn oversized_data(identity: &Identity, answer: &Answer) -> Option<String> {
    let Answer::Success { data, .. } = answer else {
        return None;
    };
    if data.is_empty() || serialize(identity, answer).len() <= MAX_BODY_BYTES {
        return None;
    }
    let data_bytes = serde_json::to_vec(data).map_or(0, |d| d.len());
    Some(format!(
        "the response Data ({} keys, {data_bytes} bytes as JSON) does not fit in CloudFormation's \
         {MAX_BODY_BYTES}-byte response limit; return less Data",
        data.len()
    ))
}

/// Serializes the answer into a body of at most [`MAX_BODY_BYTES`]: an oversized `Reason` is cut
/// on a character boundary keeping its head; `Data` that cannot fit turns the answer into FAILED
/// (the guard checks [`oversized_data`] first, to choose the FAILED answer's physical id).
pub(crate) fn encode(identity: &Identity, mut answer: Answer) -> Vec<u8> {
    if let Answer::Failed { reason, .. } = &mut answer {
        *reason = sanitize_reason(reason);
        if reason.trim().is_empty() {
            *reason = NO_REASON.to_string();
        }
    }
    let body = serialize(identity, &answer);
    if body.len() <= MAX_BODY_BYTES {
        return body;
    }
    if let Some(reason) = oversized_data(identity, &answer) {
        let no_echo = matches!(answer, Answer::Success { no_echo: true, .. });
        answer = Answer::Failed {
            physical_id: std::mem::take(answer.physical_id_mut()),
            reason,
            no_echo,
        };
    }
    let body = fit_reason(identity, answer.clone());
    if body.len() <= MAX_BODY_BYTES {
        return body;
    }
    // The fields copied from the event are too long to echo: no event CloudFormation sends gets
    // here (an ARN, a UUID, a logical id of at most 255 characters). Cut them so the answer is
    // still one CloudFormation can parse.
    let cut = |text: &str| truncate_json_string(text, MAX_ECHOED_BYTES);
    let identity = Identity {
        stack_id: cut(&identity.stack_id),
        request_id: cut(&identity.request_id),
        logical_resource_id: cut(&identity.logical_resource_id),
    };
    let physical_id = answer.physical_id_mut();
    *physical_id = cut(physical_id);
    fit_reason(&identity, answer)
}

/// How much of each field copied from the event fits when together they would not.
const MAX_ECHOED_BYTES: usize = 512;

/// The body with `Reason` cut to the room the other fields leave (a SUCCESS has none to cut).
fn fit_reason(identity: &Identity, answer: Answer) -> Vec<u8> {
    let Answer::Failed {
        physical_id,
        reason,
        no_echo,
    } = answer
    else {
        return serialize(identity, &answer);
    };
    let failed = |reason| Answer::Failed {
        physical_id: physical_id.clone(),
        reason,
        no_echo,
    };
    let room = MAX_BODY_BYTES.saturating_sub(serialize(identity, &failed(String::new())).len());
    serialize(identity, &failed(truncate_json_string(&reason, room)))
}

/// The Reason of a FAILED answer whose handler gave none: CloudFormation requires one.
const NO_REASON: &str = "the request failed without a reason";

/// `text` with every control character replaced, so that a `Reason` is plain, printable, valid
/// UTF-8: an escape sequence in a `Reason` breaks `DescribeStackEvents` for everyone who reads the
/// stack (cloudformation-coverage-roadmap #1601). Line breaks and tabs (`\n`, `\r`, `\t`, U+2028,
/// U+2029) become a space; any other C0 or C1 control, DEL and ESC included, becomes a visible
/// `\u{..}` escape, so the text still says what was there.
pub(crate) fn sanitize_reason(text: &str) -> String {
    let is_unsafe = |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}');
    if !text.chars().any(is_unsafe) {
        return text.to_string();
    }
    let mut clean = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\r' | '\t' | '\u{2028}' | '\u{2029}' => clean.push(' '),
            c if c.is_control() => {
                use std::fmt::Write as _;
                let _ = write!(clean, "\\u{{{:x}}}", c as u32);
            }
            c => clean.push(c),
        }
    }
    clean
}

fn serialize(identity: &Identity, answer: &Answer) -> Vec<u8> {
    let mut response = CloudFormationCustomResourceResponse::default();
    match answer {
        Answer::Success { data, no_echo, .. } => {
            response.status = CloudFormationCustomResourceResponseStatus::Success;
            response.no_echo = *no_echo;
            response.data = data.clone();
        }
        Answer::Failed { reason, no_echo, .. } => {
            response.status = CloudFormationCustomResourceResponseStatus::Failed;
            response.reason = Some(reason.clone());
            response.no_echo = *no_echo;
        }
    }
    response.physical_resource_id = answer.physical_id().to_string();
    response.stack_id = identity.stack_id.clone();
    response.request_id = identity.request_id.clone();
    response.logical_resource_id = identity.logical_resource_id.clone();
    serde_json::to_vec(&response).expect("a response of strings always serializes")
}

/// The longest head of `text` whose JSON-escaped form (without quotes), plus the truncation
/// marker, takes at most `room` bytes.
fn truncate_json_string(text: &str, room: usize) -> String {
    let escaped_len = |s: &str| serde_json::to_string(s).map_or(usize::MAX, |j| j.len() - 2);
    if escaped_len(text) <= room {
        return text.to_string();
    }
    let budget = room.saturating_sub(TRUNCATED.len());
    let mut used = 0;
    let mut end = 0;
    let mut buf = [0u8; 4];
    for (index, ch) in text.char_indices() {
        let width = escaped_len(ch.encode_utf8(&mut buf));
        if used + width > budget {
            break;
        }
        used += width;
        end = index + ch.len_utf8();
    }
    format!("{}{TRUNCATED}", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity {
            stack_id: "arn:aws:cloudformation:us-east-1:123456789012:stack/s/1".into(),
            request_id: "r-1".into(),
            logical_resource_id: "Thing".into(),
        }
    }

    fn failed(reason: String) -> Answer {
        Answer::failed(reason, "id".into())
    }

    #[test]
    fn physical_id_limits() {
        assert_eq!(PhysicalId::new(""), Err(PhysicalIdError::Empty));
        assert!(PhysicalId::new("x".repeat(1024)).is_ok());
        assert_eq!(
            PhysicalId::new("x".repeat(1025)),
            Err(PhysicalIdError::TooLong(1025))
        );
    }

    #[test]
    fn long_multibyte_reason_is_cut_on_a_char_boundary_to_exactly_fit() {
        for filler in ["é", "😀", "\"", "\u{1}", "a"] {
            let reason = format!("HEAD {}", filler.repeat(10_000));
            let body = encode(&identity(), failed(reason));
            assert!(body.len() <= MAX_BODY_BYTES, "{filler}: {}", body.len());
            assert!(
                body.len() > MAX_BODY_BYTES - 8,
                "{filler}: wasted room {}",
                body.len()
            );
            let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let reason = parsed["Reason"].as_str().unwrap();
            assert!(reason.starts_with("HEAD ") && reason.ends_with(TRUNCATED));
        }
    }

    #[test]
    fn oversized_data_turns_into_failed() {
        let data = (0..100).map(|i| (format!("Key{i}"), "v".repeat(100))).collect();
        let answer = Answer::success("id".into(), data, false);
        let body = encode(&identity(), answer);
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed["Status"], "FAILED");
        assert!(parsed["Reason"].as_str().unwrap().contains("4096-byte"));
        assert_eq!(parsed["Data"], serde_json::json!({}));
    }

    #[test]
    fn reasons_carry_no_control_characters() {
        let reason = "red \u{1b}[31mALERT\u{1b}[0m\u{7}\u{0}\u{7f}\u{9b}2J\nline\r\ttab\u{2028}é😀";
        let body = encode(&identity(), failed(reason.into()));
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let sent = parsed["Reason"].as_str().unwrap();
        assert_eq!(
            sent,
            "red \\u{1b}[31mALERT\\u{1b}[0m\\u{7}\\u{0}\\u{7f}\\u{9b}2J line  tab é😀"
        );
        assert!(!sent.chars().any(char::is_control), "{sent:?}");
        // The body itself: no raw control byte, and no JSON escape of one either.
        let text = std::str::from_utf8(&body).unwrap();
        assert!(
            !text.contains("\\u001b") && !text.bytes().any(|b| b < 0x20),
            "{text}"
        );
    }

    #[test]
    fn sanitized_reasons_still_fit_and_are_cut_on_a_char_boundary() {
        for filler in ["\u{1b}", "\u{9b}", "é\u{1b}", "\n😀"] {
            let reason = format!("HEAD {}", filler.repeat(5_000));
            let body = encode(&identity(), failed(reason));
            assert!(body.len() <= MAX_BODY_BYTES, "{filler:?}: {}", body.len());
            assert!(
                body.len() > MAX_BODY_BYTES - 8,
                "{filler:?}: wasted room {}",
                body.len()
            );
            let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let reason = parsed["Reason"].as_str().unwrap();
            assert!(
                reason.starts_with("HEAD ") && reason.ends_with(TRUNCATED),
                "{reason}"
            );
            assert!(!reason.chars().any(char::is_control), "{filler:?}");
        }
    }

    #[test]
    fn a_failed_answer_always_has_a_reason() {
        for reason in ["", " \n\t"] {
            let body = encode(&identity(), failed(reason.into()));
            let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(parsed["Reason"], NO_REASON, "{reason:?}");
        }
    }

    #[test]
    fn identity_fields_too_long_to_echo_are_cut_to_fit() {
        let huge = Identity {
            stack_id: "s".repeat(5000),
            request_id: "\u{1}".repeat(3000),
            logical_resource_id: "é".repeat(3000),
        };
        let answer = Answer::failed("why".into(), "p".repeat(1024));
        let body = encode(&huge, answer);
        assert!(body.len() <= MAX_BODY_BYTES, "{}", body.len());
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(parsed["StackId"].as_str().unwrap().starts_with("sss"));
        assert!(!parsed["PhysicalResourceId"].as_str().unwrap().is_empty());
        assert_eq!(parsed["Reason"], "why");
    }

    #[test]
    fn small_answers_are_untouched() {
        let body = encode(&identity(), failed("short".into()));
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed["Reason"], "short");
        assert_eq!(parsed["StackId"], identity().stack_id);
    }
}
