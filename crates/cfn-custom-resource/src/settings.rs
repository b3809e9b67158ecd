//! The function's own configuration: switches set from the Lambda's environment by the support
//! stack, which a stack author who declares a custom resource cannot change.

use crate::HandlerError;

/// An on/off setting read from an environment variable: `"true"` or `"false"`, off when unset.
/// Any other value is kept as it was given so that a request needing the switch fails naming the
/// variable and its value; requests that do not need it are served as usual.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switch {
    variable: &'static str,
    parameter: &'static str,
    state: Result<bool, String>,
}

impl Switch {
    /// Reads `variable`; `parameter` is the support stack parameter that sets it (for Reasons).
    pub fn from_env(variable: &'static str, parameter: &'static str) -> Self {
        let state = match std::env::var(variable) {
            Err(std::env::VarError::NotPresent) => Ok(false),
            Err(std::env::VarError::NotUnicode(raw)) => Err(raw.to_string_lossy().into_owned()),
            Ok(v) => match v.as_str() {
                "false" => Ok(false),
                "true" => Ok(true),
                _ => Err(v),
            },
        };
        Self {
            variable,
            parameter,
            state,
        }
    }

    /// A switch with a fixed state (tests, callers that configure by hand).
    pub fn fixed(variable: &'static str, parameter: &'static str, on: bool) -> Self {
        Self {
            variable,
            parameter,
            state: Ok(on),
        }
    }

    /// Ok when the switch is on; otherwise the Reason for refusing `property`.
    pub fn require(&self, property: &str) -> Result<(), HandlerError> {
        match self.refusal() {
            None => Ok(()),
            Some(why) => Err(HandlerError::new(format!("{property} is not allowed: {why}"))),
        }
    }

    /// `None` when the switch is on; otherwise why not, naming the variable and the support stack
    /// parameter that sets it (for a Reason that refuses something on the switch's account).
    pub fn refusal(&self) -> Option<String> {
        match &self.state {
            Ok(true) => None,
            Ok(false) => Some(format!(
                "the function's {} setting is off (support stack parameter {})",
                self.variable, self.parameter
            )),
            Err(bad) => Some(format!(
                "the function's {} setting is {bad:?}, expected \"true\" or \"false\" (support stack parameter {})",
                self.variable, self.parameter
            )),
        }
    }
}

/// `CFN_ALLOW_ADOPT`: may a resource take over an existing one it did not create.
pub fn allow_adopt() -> Switch {
    Switch::from_env("CFN_ALLOW_ADOPT", "AllowAdopt")
}

/// `CFN_ALLOW_RETURN_PASSWORD`: may a resource return the password it holds as Data.
pub fn allow_return_password() -> Switch {
    Switch::from_env("CFN_ALLOW_RETURN_PASSWORD", "AllowReturnPassword")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed_adopt(on: bool) -> Switch {
        Switch::fixed("CFN_ALLOW_ADOPT", "AllowAdopt", on)
    }

    #[test]
    fn off_names_the_variable_and_parameter() {
        let reason = fixed_adopt(false)
            .require("Adopt")
            .unwrap_err()
            .message()
            .to_string();
        assert!(
            reason.contains("CFN_ALLOW_ADOPT") && reason.contains("AllowAdopt"),
            "{reason}"
        );
        assert!(fixed_adopt(true).require("Adopt").is_ok());
        let bad = Switch {
            variable: "CFN_ALLOW_ADOPT",
            parameter: "AllowAdopt",
            state: Err("yes".into()),
        };
        let reason = bad.require("Adopt").unwrap_err().message().to_string();
        assert!(reason.contains("\"yes\""), "{reason}");
    }
}
