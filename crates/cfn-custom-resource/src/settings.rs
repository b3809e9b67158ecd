//! The function's own configuration: settings read from the Lambda's environment, which the
//! support stack (or the operator deploying the function) sets and a stack author who declares a
//! custom resource cannot change.
//!
//! # Policy (every Lambda of this workspace)
//!
//! - Every variable is read **once, at init**, into the Lambda's settings (the guard's
//!   [`Timing`], read by [`run`](crate::run); each handler crate's `Settings::from_env()`, called
//!   once in its `main.rs`), and the effective settings are logged once, at INFO (no setting is a
//!   secret).
//! - An **unset or empty** variable takes its documented default.
//! - A **set but invalid** value is never replaced by the default and never ignored: it is kept as
//!   an error ([`Invalid`]), and every request that needs it is answered `FAILED` with a `Reason`
//!   naming the variable, its value, what was expected, and the support-stack parameter that sets
//!   it where there is one ([`Setting::problem`]). Requests that do not need it are served as
//!   usual.
//! - The guard's own timing ([`Timing`]: `CFN_RESPONSE_MARGIN_MS`, `CFN_DELIVERY_SLACK_MS`,
//!   `CFN_DEFAULT_BUDGET_MS`) is needed by every request: with an invalid value the guard still
//!   does its deadline arithmetic with the default, so a response is always sent in time, but
//!   answers every request `FAILED` with that `Reason` instead of running the handler (the
//!   `Delete` of a marker id, which touches nothing, is still answered `SUCCESS`).
//!
//! Variables that belong to Lambda or the AWS SDK keep their owners' contract and are not
//! settings in this sense: `AWS_LAMBDA_LOG_LEVEL`, `RUST_LOG` and `AWS_LAMBDA_LOG_FORMAT`
//! ([`init_tracing`](crate::init_tracing)), `AWS_REGION`, the credentials, `AWS_ENDPOINT_URL` and
//! `AWS_MAX_ATTEMPTS` (`aws_config`), and `SSL_CERT_FILE` (the trust roots, as OpenSSL-based
//! tools read it). They are read where their owners read them, as those owners do.

use std::fmt;
use std::time::Duration;

use crate::HandlerError;

/// A set value that is not what the setting accepts: kept so that the requests needing the
/// setting fail saying so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The value as the environment holds it (lossily decoded if it is not UTF-8).
    pub value: String,
    /// What the setting accepts, for the `Reason` ("a whole number of milliseconds").
    pub expected: &'static str,
}

/// One setting read from one environment variable: the value, or why the value given is not
/// usable. `T` is the setting's type; [`Switch`] is the on/off kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    variable: &'static str,
    parameter: Option<&'static str>,
    default: T,
    /// `None` when unset or empty (the default applies).
    given: Option<Result<T, Invalid>>,
}

impl<T: Clone> Setting<T> {
    /// Reads `variable` from the environment: unset or empty (after trimming) gives `default`;
    /// otherwise `parse` (given the trimmed value) decides, and `None` from it keeps the value as
    /// [`Invalid`] with `expected`. `parameter` is the support-stack parameter that sets the
    /// variable, if there is one (named in Reasons).
    pub fn read(
        variable: &'static str,
        parameter: Option<&'static str>,
        default: T,
        expected: &'static str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Self {
        let raw = std::env::var_os(variable).map(|v| v.to_string_lossy().into_owned());
        Self::from_value(variable, parameter, default, expected, raw.as_deref(), parse)
    }

    /// [`Setting::read`] of a value given by the caller instead of the environment (`None`:
    /// unset).
    pub fn from_value(
        variable: &'static str,
        parameter: Option<&'static str>,
        default: T,
        expected: &'static str,
        raw: Option<&str>,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Self {
        let given = raw.map(str::trim).filter(|v| !v.is_empty()).map(|v| {
            parse(v).ok_or_else(|| Invalid {
                value: v.to_string(),
                expected,
            })
        });
        Self {
            variable,
            parameter,
            default,
            given,
        }
    }

    /// A setting with a fixed valid value (tests, callers that configure by hand).
    pub fn valid(variable: &'static str, parameter: Option<&'static str>, value: T) -> Self {
        Self {
            variable,
            parameter,
            default: value.clone(),
            given: Some(Ok(value)),
        }
    }

    /// The value in effect, or the [`Invalid`] value given.
    pub fn value(&self) -> Result<&T, &Invalid> {
        match &self.given {
            None => Ok(&self.default),
            Some(Ok(value)) => Ok(value),
            Some(Err(invalid)) => Err(invalid),
        }
    }

    /// The value in effect, or a [`HandlerError`] whose message is [`Setting::problem`], for a
    /// request that needs the setting.
    pub fn get(&self) -> Result<&T, HandlerError> {
        self.value()
            .map_err(|_| HandlerError::new(self.problem().unwrap_or_default()))
    }

    /// The value, or the default when the value given is invalid. Only for what must go on
    /// whatever the configuration (the guard's deadline arithmetic); anything else uses
    /// [`Setting::get`].
    pub fn value_or_default(&self) -> &T {
        self.value().unwrap_or(&self.default)
    }

    /// `None` when the value is usable; otherwise the `Reason` text: the variable, its value,
    /// what was expected and the support-stack parameter that sets it.
    pub fn problem(&self) -> Option<String> {
        let invalid = self.value().err()?;
        Some(format!(
            "the function's {} setting is {:?}, expected {}{}",
            self.variable,
            invalid.value,
            invalid.expected,
            self.set_by()
        ))
    }

    /// `" (support stack parameter P)"`, or nothing when no parameter sets the variable.
    fn set_by(&self) -> String {
        self.parameter
            .map(|p| format!(" (support stack parameter {p})"))
            .unwrap_or_default()
    }
}

/// For the one log line of effective settings: `3s`, `3s (default)` or `invalid "abc"`.
impl<T: fmt::Debug> fmt::Display for Setting<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.given {
            None => write!(f, "{:?} (default)", self.default),
            Some(Ok(value)) => write!(f, "{value:?}"),
            Some(Err(invalid)) => write!(f, "invalid {:?}", invalid.value),
        }
    }
}

/// Logs each setting problem (from [`Setting::problem`]) once, at ERROR, saying what it costs:
/// the requests that need the setting are answered `FAILED` until it is fixed. Each handler
/// crate's `Settings::from_env()` calls it after logging its effective settings.
pub fn log_problems(problems: impl IntoIterator<Item = Option<String>>) {
    for problem in problems.into_iter().flatten() {
        tracing::error!("{problem}: the requests that need it are answered FAILED until it is fixed");
    }
}

/// An on/off setting: `"true"` or `"false"`, off when unset or empty. Any other value is kept as
/// it was given, so that a request needing the switch fails naming the variable and its value;
/// requests that do not need it are served as usual.
pub type Switch = Setting<bool>;

impl Setting<bool> {
    /// Reads the switch `variable`; `parameter` is the support stack parameter that sets it (for
    /// Reasons).
    pub fn from_env(variable: &'static str, parameter: &'static str) -> Self {
        Self::read(
            variable,
            Some(parameter),
            false,
            "\"true\" or \"false\"",
            parse_bool,
        )
    }

    /// A switch with a fixed state (tests, callers that configure by hand).
    pub fn fixed(variable: &'static str, parameter: &'static str, on: bool) -> Self {
        Self::valid(variable, Some(parameter), on)
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
        match self.value() {
            Ok(true) => None,
            Ok(false) => Some(format!(
                "the function's {} setting is off{}",
                self.variable,
                self.set_by()
            )),
            Err(_) => self.problem(),
        }
    }
}

/// `"true"` or `"false"`, exactly.
fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// A duration given in whole milliseconds.
pub fn millis(
    variable: &'static str,
    parameter: Option<&'static str>,
    default: Duration,
) -> Setting<Duration> {
    Setting::read(
        variable,
        parameter,
        default,
        "a whole number of milliseconds",
        parse_millis,
    )
}

fn parse_millis(value: &str) -> Option<Duration> {
    value.parse::<u64>().ok().map(Duration::from_millis)
}

/// A duration given in whole seconds.
pub fn seconds(
    variable: &'static str,
    parameter: Option<&'static str>,
    default: Duration,
) -> Setting<Duration> {
    Setting::read(variable, parameter, default, "a whole number of seconds", |v| {
        v.parse::<u64>().ok().map(Duration::from_secs)
    })
}

/// `CFN_ALLOW_ADOPT`: may a resource take over an existing one it did not create.
pub fn allow_adopt() -> Switch {
    Switch::from_env("CFN_ALLOW_ADOPT", "AllowAdopt")
}

/// `CFN_ALLOW_RETURN_PASSWORD`: may a resource return the password it holds as Data.
pub fn allow_return_password() -> Switch {
    Switch::from_env("CFN_ALLOW_RETURN_PASSWORD", "AllowReturnPassword")
}

/// The guard's timing settings, needed by every request (see the module doc for what an invalid
/// one does). [`Timing::config`] is what the guard computes deadlines with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    /// `CFN_RESPONSE_MARGIN_MS`: see [`Config::deadline_margin`](crate::Config::deadline_margin).
    pub deadline_margin: Setting<Duration>,
    /// `CFN_DELIVERY_SLACK_MS`: see [`Config::delivery_slack`](crate::Config::delivery_slack).
    pub delivery_slack: Setting<Duration>,
    /// `CFN_DEFAULT_BUDGET_MS`: see [`Config::default_budget`](crate::Config::default_budget).
    pub default_budget: Setting<Duration>,
}

impl Timing {
    /// Reads `CFN_RESPONSE_MARGIN_MS`, `CFN_DELIVERY_SLACK_MS` and `CFN_DEFAULT_BUDGET_MS`
    /// (defaults: [`Config::default`](crate::Config::default)) and logs the effective values.
    pub fn from_env() -> Self {
        let default = crate::Config::default();
        let timing = Self {
            deadline_margin: millis("CFN_RESPONSE_MARGIN_MS", None, default.deadline_margin),
            delivery_slack: millis("CFN_DELIVERY_SLACK_MS", None, default.delivery_slack),
            default_budget: millis("CFN_DEFAULT_BUDGET_MS", None, default.default_budget),
        };
        timing.log();
        timing
    }

    /// Timing with these values, all valid.
    pub fn of(config: &crate::Config) -> Self {
        Self {
            deadline_margin: Setting::valid("CFN_RESPONSE_MARGIN_MS", None, config.deadline_margin),
            delivery_slack: Setting::valid("CFN_DELIVERY_SLACK_MS", None, config.delivery_slack),
            default_budget: Setting::valid("CFN_DEFAULT_BUDGET_MS", None, config.default_budget),
        }
    }

    /// The values the guard computes deadlines with: each setting's value, or its default where
    /// the value given is invalid.
    pub fn config(&self) -> crate::Config {
        crate::Config {
            deadline_margin: *self.deadline_margin.value_or_default(),
            delivery_slack: *self.delivery_slack.value_or_default(),
            default_budget: *self.default_budget.value_or_default(),
        }
    }

    /// `None` when every timing setting is usable; otherwise the problems, joined with `"; "`.
    pub fn problem(&self) -> Option<String> {
        let problems: Vec<String> = [&self.deadline_margin, &self.delivery_slack, &self.default_budget]
            .into_iter()
            .filter_map(Setting::problem)
            .collect();
        (!problems.is_empty()).then(|| problems.join("; "))
    }

    fn log(&self) {
        let invalid = self.problem();
        tracing::info!(
            CFN_RESPONSE_MARGIN_MS = %self.deadline_margin,
            CFN_DELIVERY_SLACK_MS = %self.delivery_slack,
            CFN_DEFAULT_BUDGET_MS = %self.default_budget,
            "guard settings"
        );
        if let Some(invalid) = invalid {
            tracing::error!(
                "{invalid}: every request is answered FAILED (deadlines use the defaults) until it is fixed"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed_adopt(on: bool) -> Switch {
        Switch::fixed("CFN_ALLOW_ADOPT", "AllowAdopt", on)
    }

    fn adopt_given(raw: Option<&str>) -> Switch {
        Setting::from_value(
            "CFN_ALLOW_ADOPT",
            Some("AllowAdopt"),
            false,
            "\"true\" or \"false\"",
            raw,
            parse_bool,
        )
    }

    fn margin_given(raw: Option<&str>) -> Setting<Duration> {
        Setting::from_value(
            "CFN_RESPONSE_MARGIN_MS",
            None,
            Duration::from_millis(3000),
            "a whole number of milliseconds",
            raw,
            parse_millis,
        )
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
        let bad = adopt_given(Some("yes"));
        let reason = bad.require("Adopt").unwrap_err().message().to_string();
        assert!(reason.contains("\"yes\""), "{reason}");
    }

    #[test]
    fn unset_or_empty_takes_the_default() {
        for raw in [None, Some(""), Some("  ")] {
            assert_eq!(adopt_given(raw).value(), Ok(&false), "{raw:?}");
            assert_eq!(
                adopt_given(raw).refusal().map(|r| r.contains("is off")),
                Some(true)
            );
            assert_eq!(margin_given(raw).value(), Ok(&Duration::from_millis(3000)));
            assert_eq!(margin_given(raw).problem(), None);
        }
        assert_eq!(adopt_given(Some("true")).refusal(), None);
        assert_eq!(
            margin_given(Some(" 1500 ")).value(),
            Ok(&Duration::from_millis(1500))
        );
    }

    #[test]
    fn an_invalid_value_is_kept_and_named_never_defaulted() {
        let bad = margin_given(Some("3s"));
        let problem = bad.problem().unwrap();
        assert_eq!(
            problem,
            "the function's CFN_RESPONSE_MARGIN_MS setting is \"3s\", expected a whole number of milliseconds"
        );
        assert_eq!(bad.get().unwrap_err().message(), problem);
        assert_eq!(
            bad.value(),
            Err(&Invalid {
                value: "3s".into(),
                expected: "a whole number of milliseconds"
            })
        );
        // Only the guard's arithmetic goes on with the default.
        assert_eq!(bad.value_or_default(), &Duration::from_millis(3000));
        let switch = adopt_given(Some("TRUE")).refusal().unwrap();
        assert_eq!(
            switch,
            "the function's CFN_ALLOW_ADOPT setting is \"TRUE\", expected \"true\" or \"false\" \
             (support stack parameter AllowAdopt)"
        );
    }

    #[test]
    fn display_shows_default_value_or_invalid() {
        assert_eq!(margin_given(None).to_string(), "3s (default)");
        assert_eq!(margin_given(Some("1500")).to_string(), "1.5s");
        assert_eq!(margin_given(Some("x")).to_string(), "invalid \"x\"");
        assert_eq!(fixed_adopt(true).to_string(), "true");
    }

    #[test]
    fn timing_computes_with_defaults_but_reports_every_invalid_value() {
        let default = crate::Config::default();
        let timing = Timing {
            deadline_margin: margin_given(Some("soon")),
            ..Timing::of(&default)
        };
        let config = timing.config();
        assert_eq!(config.deadline_margin, default.deadline_margin);
        let problem = timing.problem().unwrap();
        assert!(
            problem.contains("CFN_RESPONSE_MARGIN_MS") && problem.contains("\"soon\""),
            "{problem}"
        );
        assert_eq!(Timing::of(&default).problem(), None);
    }
}
