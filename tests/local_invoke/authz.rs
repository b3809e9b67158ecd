//! Who may ask for what: `Adopt` and `ReturnPassword` only where the function's own settings
//! (`CFN_ALLOW_ADOPT`, `CFN_ALLOW_RETURN_PASSWORD`) allow them. The bodies live next to their
//! Lambda's other tests (they use those files' fixtures).

use libtest_mimic::Trial;

use crate::{admin_secret, service_database, trial};

pub fn trials() -> Vec<Trial> {
    vec![
        trial(
            "authz::admin_secret_second_stack_adopt_and_return_password_refused",
            admin_secret::second_stack_adopt_and_return_password_refused,
        ),
        trial(
            "authz::admin_secret_own_update_with_adopt_is_served_when_off",
            admin_secret::own_update_with_adopt_is_served_when_off,
        ),
        trial(
            "authz::service_database_second_stack_adopt_refused",
            service_database::second_stack_adopt_refused,
        ),
        trial(
            "authz::admin_secret_unusable_keys_refused",
            admin_secret::unusable_keys_refused,
        ),
        trial(
            "authz::service_database_aws_managed_key_arn_refused",
            service_database::aws_managed_key_arn_refused,
        ),
    ]
}
