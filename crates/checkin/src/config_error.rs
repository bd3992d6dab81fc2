//! Naming the setting at fault in a check-in configuration: serde reports
//! what is wrong but not where (beyond a line and column).

use jobsight_core::checkin::CheckinError;
use serde_json::{Map, Value};

use crate::Error;
use crate::config::PolicyEntry;

/// The first setting of `value` that does not deserialize, with serde's
/// reason; `None` when no single setting is at fault.
pub(crate) fn locate(value: &Value) -> Option<Error> {
    let setting = |setting: String, reason: String| Some(Error::Setting { setting, reason });
    let Some(top) = value.as_object() else {
        return setting(
            "(top level)".to_owned(),
            "expected an object with a `policies` list".to_owned(),
        );
    };
    if let Some(other) = top.keys().find(|k| k.as_str() != "policies") {
        return setting(
            other.clone(),
            format!("unknown setting `{other}`; expected `policies`"),
        );
    }
    let policies = top.get("policies")?;
    let Some(entries) = policies.as_array() else {
        return setting(
            "policies".to_owned(),
            "expected a list of policy objects".to_owned(),
        );
    };
    for (i, entry) in entries.iter().enumerate() {
        let Some(fields) = entry.as_object() else {
            return setting(
                format!("policies[{i}]"),
                "expected an object such as `{\"job\": \"NightlyReport\", \"interval\": \"1d\"}`"
                    .to_owned(),
            );
        };
        for (key, field) in fields {
            let single = Value::Object(Map::from_iter([(key.clone(), field.clone())]));
            if let Err(error) = serde_json::from_value::<PolicyEntry>(single) {
                return setting(format!("policies[{i}].{key}"), error.to_string());
            }
        }
    }
    None
}

/// The error of policy `index` that is inconsistent or does not parse.
pub(crate) fn policy(index: usize, error: Error) -> Error {
    let (field, reason) = match error {
        Error::InvalidPolicy(reason) => ("", reason),
        Error::Policy(error @ CheckinError::Cron { .. }) => (".cron", error.to_string()),
        Error::Policy(error @ CheckinError::TimeZone { .. }) => (".timezone", error.to_string()),
        other => ("", other.to_string()),
    };
    Error::Setting {
        setting: format!("policies[{index}]{field}"),
        reason,
    }
}
