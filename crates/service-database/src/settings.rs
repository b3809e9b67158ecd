//! The function's own configuration: read from its environment (set by the support stack, out of
//! reach of a stack author who declares the resource) once, at init, and logged there.

use cfn_custom_resource::settings::{self, Switch};

/// What the function's configuration allows. An unset variable takes its documented default; a
/// set but invalid one is kept as given, and every request that needs it fails naming the
/// variable, its value and what is expected ([`Switch`]).
#[derive(Debug, Clone)]
pub struct Settings {
    /// `CFN_ALLOW_ADOPT` (support stack parameter `AllowAdopt`; off when unset): may `Adopt`
    /// take over a role, database or parameter this resource did not make.
    pub adopt: Switch,
}

impl Settings {
    /// Reads the environment and logs the effective settings (there is no secret among them).
    pub fn from_env() -> Self {
        let settings = Self {
            adopt: settings::allow_adopt(),
        };
        tracing::info!(CFN_ALLOW_ADOPT = %settings.adopt, "service-database settings");
        settings::log_problems([settings.adopt.problem()]);
        settings
    }
}
