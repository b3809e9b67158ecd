//! The service's roles: a `NOLOGIN` owner (`RoleName`) that owns the database, and two login
//! roles, `<RoleName>_a` and `<RoleName>_b`, that act as it. A rotation sets a new password on
//! the login role not in use and makes it current, so the credential the running tasks hold keeps
//! working until the rotation after.
//!
//! Which login role a password is for is recorded with the password, in the description of the
//! SSM parameter version that holds it ([`description`]): a rollback that restores a version
//! restores its login role too, and the latest version names the current one (`Data.Username`).
//!
//! A resource made before the login roles (its owner role logs in itself, and the parameter's
//! description names the owner) keeps working as it is. Its first rotation moves it to the pair:
//! the new password goes to `<RoleName>_a`, and the owner keeps its login and password, as the
//! previous credential, until the rotation after, which takes its `LOGIN` away. From then on it is
//! a resource like one made today.

use crate::error::Error;
use crate::ident::Identifier;

/// The suffixes of the two login roles.
const SUFFIXES: [&str; 2] = ["_a", "_b"];

/// The longest `RoleName` that leaves room for the login roles' suffix.
pub const MAX_ROLE_NAME_BYTES: usize = crate::ident::MAX_IDENTIFIER_BYTES - 2;

/// The owner role and its two login roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logins {
    /// `RoleName`: the `NOLOGIN` role that owns the database.
    pub owner: Identifier,
    /// `<RoleName>_a`, the login role of a new resource.
    pub a: Identifier,
    /// `<RoleName>_b`, made by the first rotation.
    pub b: Identifier,
}

impl Logins {
    /// The roles of owner `owner` (`RoleName`); the owner must leave room for the suffixes.
    pub fn of(owner: &Identifier) -> Result<Self, Error> {
        let [a, b] = SUFFIXES.map(|suffix| Identifier::new(&format!("{owner}{suffix}")));
        match (a, b) {
            (Ok(a), Ok(b)) => Ok(Self {
                owner: owner.clone(),
                a,
                b,
            }),
            _ => Err(no_room(owner)),
        }
    }

    /// The three roles, owner first.
    pub fn all(&self) -> [&Identifier; 3] {
        [&self.owner, &self.a, &self.b]
    }

    /// The login role a new password goes to when `current` holds the latest one: the other of
    /// the pair (`_a` after the owner of a resource made before the pair).
    pub fn other(&self, current: &Identifier) -> &Identifier {
        if *current == self.a { &self.b } else { &self.a }
    }

    /// The login role a parameter version's description names, if it is one of these three.
    pub fn named_in(&self, description: Option<&str>) -> Option<&Identifier> {
        let login = description?.strip_prefix(PREFIX)?.split_once(FOR_DATABASE)?.0;
        self.all().into_iter().find(|role| role.as_str() == login)
    }
}

/// The Reason for an owner role whose name leaves no room for the login roles' suffix.
pub(crate) fn no_room(owner: &Identifier) -> Error {
    Error::Property {
        name: "RoleName",
        reason: format!(
            "is {} bytes long; the service's login roles are RoleName with _a and _b appended, \
             so RoleName (or DatabaseName, its default) is at most {MAX_ROLE_NAME_BYTES} bytes",
            owner.as_str().len()
        ),
    }
}

const PREFIX: &str = "Password of Postgres role ";
const FOR_DATABASE: &str = " for database ";
const SUFFIX: &str = " (Custom::ServiceDatabase)";

/// The description of a password parameter version: the login role the password is for and the
/// physical id it serves (so the Delete of a replaced resource can tell the parameter has moved
/// on).
pub fn description(login: &Identifier, physical_id: &str) -> String {
    format!("{PREFIX}{login}{FOR_DATABASE}{physical_id}{SUFFIX}")
}

/// Whether a description (any login role's) says the parameter serves `physical_id`.
pub fn serves(description: Option<&str>, physical_id: &str) -> bool {
    description
        .and_then(|d| d.strip_prefix(PREFIX))
        .and_then(|d| d.strip_suffix(SUFFIX))
        .and_then(|d| d.split_once(FOR_DATABASE))
        .is_some_and(|(_, id)| id == physical_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logins(owner: &str) -> Logins {
        Logins::of(&Identifier::new(owner).unwrap()).unwrap()
    }

    #[test]
    fn the_pair_alternates_and_the_owner_hands_over_to_a() {
        let l = logins("orders");
        assert_eq!((l.a.as_str(), l.b.as_str()), ("orders_a", "orders_b"));
        assert_eq!(l.other(&l.a), &l.b);
        assert_eq!(l.other(&l.b), &l.a);
        assert_eq!(l.other(&l.owner), &l.a);
    }

    #[test]
    fn descriptions_name_the_login_and_the_physical_id() {
        let l = logins("orders");
        let d = description(&l.b, "h:5432/orders");
        assert_eq!(
            d,
            "Password of Postgres role orders_b for database h:5432/orders (Custom::ServiceDatabase)"
        );
        assert_eq!(l.named_in(Some(&d)), Some(&l.b));
        assert!(serves(Some(&d), "h:5432/orders"));
        assert!(!serves(Some(&d), "h:5432/other"));
        // Written before the pair: the owner logs in.
        let legacy = description(&l.owner, "h:5432/orders");
        assert_eq!(l.named_in(Some(&legacy)), Some(&l.owner));
        assert!(serves(Some(&legacy), "h:5432/orders"));
        // Another role's, or not ours at all.
        assert_eq!(l.named_in(Some(&description(&logins("billing").a, "x"))), None);
        assert_eq!(l.named_in(Some("hand-made")), None);
        assert_eq!(l.named_in(None), None);
        assert!(!serves(None, "h:5432/orders"));
    }

    #[test]
    fn role_names_leave_room_for_the_suffix() {
        let at_most = "r".repeat(MAX_ROLE_NAME_BYTES);
        assert!(Logins::of(&Identifier::new(&at_most).unwrap()).is_ok());
        let too_long = Identifier::new(&"r".repeat(MAX_ROLE_NAME_BYTES + 1)).unwrap();
        let error = Logins::of(&too_long).unwrap_err().to_string();
        assert!(
            error.contains("RoleName") && error.contains("61 bytes"),
            "{error}"
        );
    }
}
