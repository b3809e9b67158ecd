//! SQL identifiers and string literals for DDL, which takes no bind parameters: validation and
//! quoting are the only defence against injection, so both always apply.
//!
//! The rule for database and role names: 1..=63 bytes (Postgres truncates longer names
//! silently, which would make two names collide), ASCII lower-case letters, digits and `_`, not
//! starting with a digit. Lower case only, because Postgres folds unquoted names to lower case: a
//! name like `Orders` would have to be quoted by every client, tool and `GRANT` the service ever
//! writes. Names Postgres or RDS reserve (`pg_*`, `rds_*`, `rdsadmin`, `public`, `none`,
//! `current_user`, `session_user`, `current_role`, and the cluster's own `postgres`, `template0`,
//! `template1`) are refused. SQL keywords (`select`, `user`, `table`) are valid names: they are
//! always sent quoted and are created exactly as named.

use std::fmt;

/// Postgres's `NAMEDATALEN - 1`.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

const RESERVED: &[&str] = &[
    "public",
    "none",
    "current_user",
    "session_user",
    "current_role",
    "postgres",
    "template0",
    "template1",
    "rdsadmin",
];
const RESERVED_PREFIXES: &[&str] = &["pg_", "rds_"];

/// A validated database or role name. `Display` shows it bare; [`Identifier::quoted`] is the only
/// form that goes into SQL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identifier(String);

impl Identifier {
    /// Validates `name`; the error says what is wrong and what is allowed.
    pub fn new(name: &str) -> Result<Self, String> {
        const ALLOWED: &str = "lower-case ASCII letters, digits and _, starting with a letter or _";
        if name.is_empty() {
            return Err("must not be empty".into());
        }
        if name.len() > MAX_IDENTIFIER_BYTES {
            return Err(format!(
                "is {} bytes long; Postgres names are at most {MAX_IDENTIFIER_BYTES} bytes",
                name.len()
            ));
        }
        let shown = name.escape_debug();
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(format!(
                "\"{shown}\" has upper-case letters; names are lower case, since Postgres folds unquoted names and every client would have to quote a mixed-case one (allowed: {ALLOWED})"
            ));
        }
        let first = name.as_bytes()[0];
        if !(first.is_ascii_lowercase() || first == b'_') {
            return Err(format!(
                "\"{shown}\" must start with a lower-case letter or _ (allowed: {ALLOWED})"
            ));
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
        {
            return Err(format!(
                "\"{shown}\" contains {bad:?}, which is not allowed; allowed: {ALLOWED}"
            ));
        }
        if RESERVED.contains(&name) {
            return Err(format!("\"{name}\" is reserved by Postgres or RDS"));
        }
        if let Some(prefix) = RESERVED_PREFIXES.iter().find(|p| name.starts_with(**p)) {
            return Err(format!(
                "\"{name}\" starts with {prefix}, which Postgres or RDS reserve"
            ));
        }
        Ok(Self(name.to_string()))
    }

    /// The name as written (unquoted).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as a quoted SQL identifier.
    pub fn quoted(&self) -> String {
        quote_identifier(&self.0)
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Any text as a quoted SQL identifier: wrapped in `"`, every `"` doubled.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Text as a standard SQL string literal: wrapped in `'`, every `'` doubled, backslashes kept as
/// they are. Correct only with `standard_conforming_strings = on`, which every session of this
/// crate sets before it sends a literal. `None` for text holding NUL, which Postgres cannot store.
pub fn quote_literal(text: &str) -> Option<String> {
    if text.contains('\0') {
        return None;
    }
    Some(format!("'{}'", text.replace('\'', "''")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hostile or awkward names: each is refused with a reason, or accepted and then sent only in
    /// its quoted form.
    const HOSTILE: &[(&str, bool)] = &[
        ("", false),
        ("orders\"; DROP ROLE admin; --", false),
        ("x\"", false),
        ("\"", false),
        ("\"\"", false),
        ("o'brien", false),
        ("'; DROP DATABASE postgres; --", false),
        ("a;b", false),
        ("orders--", false),
        ("--", false),
        ("/* c */", false),
        ("a b", false),
        (" orders", false),
        ("orders\n", false),
        ("orders\0", false),
        ("tab\tname", false),
        ("back\\slash", false),
        ("dollar$", false),
        ("$1", false),
        ("orders.public", false),
        ("ünïcödé", false),
        ("заказы", false),
        ("名前", false),
        ("emoji😀", false),
        ("Orders", false),
        ("MixedCase", false),
        ("ORDERS", false),
        ("1orders", false),
        ("9", false),
        ("-orders", false),
        ("pg_orders", false),
        ("rds_superuser", false),
        ("rdsadmin", false),
        ("public", false),
        ("none", false),
        ("current_user", false),
        ("session_user", false),
        ("current_role", false),
        ("postgres", false),
        ("template0", false),
        ("template1", false),
        ("a%", false),
        ("a(b)", false),
        ("a,b", false),
        ("select", true),
        ("user", true),
        ("table", true),
        ("drop", true),
        ("_", true),
        ("_orders", true),
        ("orders_2", true),
        ("o", true),
    ];

    #[test]
    fn hostile_names_are_refused_or_quoted() {
        assert!(HOSTILE.len() >= 30);
        for (name, valid) in HOSTILE {
            match Identifier::new(name) {
                Ok(id) => {
                    assert!(valid, "{name:?} was accepted");
                    assert_eq!(id.quoted(), format!("\"{name}\""));
                }
                Err(reason) => {
                    assert!(!valid, "{name:?} was refused: {reason}");
                    assert!(!reason.is_empty());
                }
            }
        }
    }

    #[test]
    fn length_limit_is_in_bytes() {
        assert!(Identifier::new(&"a".repeat(63)).is_ok());
        let e = Identifier::new(&"a".repeat(64)).unwrap_err();
        assert!(e.contains("64 bytes"), "{e}");
        assert!(Identifier::new(&"é".repeat(32)).is_err());
    }

    #[test]
    fn reasons_say_what_is_allowed() {
        let e = Identifier::new("Orders").unwrap_err();
        assert!(e.contains("lower case"), "{e}");
        let e = Identifier::new("a;b").unwrap_err();
        assert!(e.contains("';'") && e.contains("allowed"), "{e}");
        let e = Identifier::new("pg_x").unwrap_err();
        assert!(e.contains("reserve"), "{e}");
    }

    #[test]
    fn quoting_doubles_the_quote_character() {
        assert_eq!(quote_identifier("a\"b"), "\"a\"\"b\"");
        assert_eq!(
            quote_identifier("x\"; DROP ROLE a; --"),
            "\"x\"\"; DROP ROLE a; --\""
        );
        assert_eq!(quote_literal("it's").unwrap(), "'it''s'");
        assert_eq!(quote_literal("a\\'b").unwrap(), "'a\\''b'");
        assert_eq!(
            quote_literal("'; DROP TABLE x; --").unwrap(),
            "'''; DROP TABLE x; --'"
        );
        assert_eq!(quote_literal("a\0b"), None);
    }
}
