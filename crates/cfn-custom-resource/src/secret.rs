use std::fmt;

use serde::{Deserialize, Deserializer};

/// A value that must never reach a log line, a `Reason` or an error message.
///
/// `Debug` and `Display` print `<redacted>`; the value is read only through [`Secret::expose`].
/// Deserializing one never echoes the input in its error.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a value.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The value itself: use it, never format it.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps the value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Secret<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer)
            .map(Secret)
            .map_err(|_| serde::de::Error::custom("invalid value (not shown: the property is secret)"))
    }
}

/// The pre-signed `ResponseURL`. Whoever holds it can forge the resource's result, so its query
/// string (the signature) is never shown: `Display` and `Debug` print the scheme, host and path.
#[derive(Clone)]
pub struct ResponseUrl(reqwest::Url);

impl ResponseUrl {
    /// Parses the URL; the error never repeats the input.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let url = reqwest::Url::parse(raw).map_err(|e| format!("ResponseURL is not a URL ({e})"))?;
        match url.scheme() {
            "https" | "http" => Ok(Self(url)),
            other => Err(format!("ResponseURL has scheme {other:?}; expected https")),
        }
    }

    pub(crate) fn url(&self) -> &reqwest::Url {
        &self.0
    }
}

impl fmt::Display for ResponseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = &self.0;
        write!(f, "{}://{}", url.scheme(), url.host_str().unwrap_or(""))?;
        if let Some(port) = url.port() {
            write!(f, ":{port}")?;
        }
        f.write_str(url.path())?;
        if url.query().is_some() {
            f.write_str("?<redacted>")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ResponseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResponseUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_formats_its_value() {
        let secret = Secret::new("hunter2".to_string());
        assert_eq!(format!("{secret} {secret:?}"), "<redacted> <redacted>");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn secret_deserialize_error_does_not_echo_input() {
        let err = serde_json::from_str::<Secret<u32>>("\"hunter2\"").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn response_url_hides_its_signature() {
        let url = ResponseUrl::parse(
            "https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/arn%3Aaws/123?X-Amz-Signature=abcdef&X-Amz-Credential=AKIA",
        )
        .unwrap();
        let shown = format!("{url} {url:?}");
        assert!(!shown.contains("abcdef") && !shown.contains("AKIA"), "{shown}");
        assert!(shown.contains("?<redacted>"), "{shown}");
    }

    #[test]
    fn response_url_parse_error_does_not_echo_input() {
        let err = ResponseUrl::parse("not a url?X-Amz-Signature=abcdef").unwrap_err();
        assert!(!err.contains("abcdef"), "{err}");
    }
}
