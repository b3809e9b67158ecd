//! Who may ask for what: `Adopt` and `ReturnPassword` only where the function's own settings
//! (`CFN_ALLOW_ADOPT`, `CFN_ALLOW_RETURN_PASSWORD`) allow them. The bodies live next to their
//! Lambda's other tests (they use those files' fixtures).

use libtest_mimic::Trial;

use crate::{admin_secret, service_database};

pub(crate) fn trials() -> Vec<Trial> {
    trials![
        authz;
        admin_secret::second_stack_adopt_and_return_password_refused,
        admin_secret::own_update_with_adopt_is_served_when_off,
        service_database::second_stack_adopt_refused,
        admin_secret::unusable_keys_refused,
        service_database::aws_managed_key_arn_refused,
    ]
}
