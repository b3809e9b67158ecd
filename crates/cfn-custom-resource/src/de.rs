//! Deserializers for property values that CloudFormation sends as strings.
//!
//! CloudFormation turns every property value into a string (`"5"`, `"true"`), while a sample
//! event or a test may use JSON numbers and booleans. Each function here accepts both forms:
//!
//! ```
//! #[derive(serde::Deserialize)]
//! #[serde(rename_all = "PascalCase")]
//! struct Properties {
//!     #[serde(default = "default_length", deserialize_with = "cfn_custom_resource::de::number")]
//!     length: u32,
//!     #[serde(default, deserialize_with = "cfn_custom_resource::de::boolean")]
//!     return_password: bool,
//!     #[serde(default, deserialize_with = "cfn_custom_resource::de::optional_number")]
//!     count: Option<u16>,
//! }
//! fn default_length() -> u32 { 32 }
//!
//! let p: Properties = serde_json::from_str(r#"{"Length": "40", "ReturnPassword": "true"}"#).unwrap();
//! assert_eq!((p.length, p.return_password, p.count), (40, true, None));
//! let p: Properties = serde_json::from_str(r#"{"Length": 12, "Count": "3"}"#).unwrap();
//! assert_eq!((p.length, p.return_password, p.count), (12, false, Some(3)));
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};

/// An integer given as a JSON number or a string holding one.
pub fn number<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
{
    deserializer.deserialize_any(NumberVisitor(PhantomData))
}

/// Like [`number`], for an optional property (use with `#[serde(default)]`).
pub fn optional_number<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
{
    number(deserializer).map(Some)
}

/// A boolean given as a JSON boolean or as the string `"true"` / `"false"` (any case).
pub fn boolean<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    deserializer.deserialize_any(BoolVisitor)
}

struct NumberVisitor<T>(PhantomData<T>);

impl<T: FromStr> NumberVisitor<T> {
    fn parse<E: de::Error>(text: &str) -> Result<T, E> {
        text.trim().parse::<T>().map_err(|_| {
            E::custom(format_args!(
                "expected a whole number in range for {}, got {text:?}",
                short_type_name::<T>()
            ))
        })
    }
}

impl<T: FromStr> Visitor<'_> for NumberVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a whole number, as a number or a string")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        Self::parse(&v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        Self::parse(&v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        Self::parse(&v.to_string())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        Self::parse(v)
    }
}

struct BoolVisitor;

impl Visitor<'_> for BoolVisitor {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a boolean, as true/false or \"true\"/\"false\"")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        Ok(v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        match v.trim() {
            t if t.eq_ignore_ascii_case("true") => Ok(true),
            f if f.eq_ignore_ascii_case("false") => Ok(false),
            _ => Err(E::custom(format_args!(
                "expected \"true\" or \"false\", got {v:?}"
            ))),
        }
    }
}

fn short_type_name<T>() -> &'static str {
    let name = std::any::type_name::<T>();
    name.rsplit("::").next().unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    struct P {
        #[serde(deserialize_with = "super::number")]
        n: u8,
        #[serde(default, deserialize_with = "super::boolean")]
        b: bool,
    }

    #[test]
    fn accepts_strings_and_native_values() {
        let p: P = serde_json::from_str(r#"{"n": "5", "b": "TRUE"}"#).unwrap();
        assert_eq!((p.n, p.b), (5, true));
        let p: P = serde_json::from_str(r#"{"n": 7, "b": false}"#).unwrap();
        assert_eq!((p.n, p.b), (7, false));
    }

    #[test]
    fn rejects_with_the_offending_value() {
        let e = serde_json::from_str::<P>(r#"{"n": "abc"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("expected a whole number") && e.contains("\"abc\""),
            "{e}"
        );
        let e = serde_json::from_str::<P>(r#"{"n": "300"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("u8") && e.contains("\"300\""), "{e}");
        let e = serde_json::from_str::<P>(r#"{"n": 1, "b": "yes"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"yes\""), "{e}");
        let e = serde_json::from_str::<P>(r#"{"n": [1]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("a whole number"), "{e}");
    }
}
