//! The resource every span and data point carries.
//!
//! `service.name`, highest precedence first: [`Builder::service_name`],
//! `OTEL_SERVICE_NAME`, `service.name` in `OTEL_RESOURCE_ATTRIBUTES`,
//! `unknown_service:<executable>` (the specification's order; the SDK's own
//! detector lets `OTEL_RESOURCE_ATTRIBUTES` win, so it is not used).
//!
//! Every process gets an identity of its own, so that N processes exporting
//! the same metrics make N series, never one series with interleaved values:
//!
//! - `service.instance.id`: [`Builder::service_instance_id`], then
//!   `OTEL_RESOURCE_ATTRIBUTES`, then a random (v4) UUID generated once per
//!   process ([`service_instance_id`](crate::service_instance_id)); an empty
//!   id counts as unset (every process would share it);
//! - `host.name`: `OTEL_RESOURCE_ATTRIBUTES`, then the system's host name
//!   (left out when the system gives none);
//! - `process.pid`: `OTEL_RESOURCE_ATTRIBUTES`, then the process id.
//!
//! `telemetry.sdk.*` come from the SDK.
//!
//! [`Builder::service_name`]: crate::Builder::service_name
//! [`Builder::service_instance_id`]: crate::Builder::service_instance_id

use std::sync::OnceLock;

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::resource::TelemetryResourceDetector;

use crate::config::EnvConfig;

const SERVICE_NAME: &str = "service.name";
const SERVICE_INSTANCE_ID: &str = "service.instance.id";
const HOST_NAME: &str = "host.name";
const PROCESS_PID: &str = "process.pid";

/// What the [`Builder`](crate::Builder) sets on the resource.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Given<'a> {
    pub(crate) service_name: Option<&'a str>,
    pub(crate) service_instance_id: Option<&'a str>,
}

/// This process's default `service.instance.id`: a random (v4) UUID,
/// generated at the first call and the same for the rest of the process.
pub fn service_instance_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| uuid::Uuid::new_v4().to_string())
}

/// The attributes the system gives: host name and process id.
fn detected() -> Vec<KeyValue> {
    let mut attributes = vec![KeyValue::new(PROCESS_PID, i64::from(std::process::id()))];
    if let Some(host) = jobsight_core::host::host_name() {
        attributes.push(KeyValue::new(HOST_NAME, host));
    }
    attributes
}

/// The resource from the system, the environment and the builder.
pub(crate) fn build(given: Given<'_>, env: &EnvConfig) -> Resource {
    let from_attributes = env
        .resource_attributes
        .iter()
        .rev()
        .find(|(key, _)| key == SERVICE_NAME)
        .map(|(_, value)| value.clone());
    let service_name = given
        .service_name
        .map(str::to_owned)
        .or_else(|| env.service_name.clone())
        .or(from_attributes)
        .unwrap_or_else(unknown_service);
    // An empty id would be shared by every process: it counts as unset.
    let instance_from_env = env
        .resource_attributes
        .iter()
        .rev()
        .find(|(key, _)| key == SERVICE_INSTANCE_ID)
        .is_some_and(|(_, value)| !value.trim().is_empty());
    let instance_id = given
        .service_instance_id
        .filter(|id| !id.trim().is_empty())
        .map(str::to_owned)
        .or_else(|| (!instance_from_env).then(|| service_instance_id().to_owned()));
    // Each step overrides the one before.
    let mut builder = Resource::builder_empty()
        .with_detector(Box::new(TelemetryResourceDetector))
        .with_attributes(detected())
        .with_attributes(
            env.resource_attributes
                .iter()
                .map(|(key, value)| KeyValue::new(key.clone(), value.clone())),
        )
        .with_service_name(service_name);
    if let Some(id) = instance_id {
        builder = builder.with_attribute(KeyValue::new(SERVICE_INSTANCE_ID, id));
    }
    builder.build()
}

/// `unknown_service:<executable name>`, the specification's fallback.
fn unknown_service() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|path| path.file_name()?.to_str().map(str::to_owned))
        .map_or_else(
            || "unknown_service".to_owned(),
            |name| format!("unknown_service:{name}"),
        )
}

#[cfg(test)]
mod tests {
    use opentelemetry::{Key, Value};

    use super::*;
    use crate::test_support::env;

    fn service(resource: &Resource) -> Option<Value> {
        resource.get(&Key::new(SERVICE_NAME))
    }

    fn named(service_name: &str) -> Given<'_> {
        Given {
            service_name: Some(service_name),
            ..Given::default()
        }
    }

    #[test]
    fn service_name_precedence() {
        let attributes = (
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.name=from-attrs,team=jobs",
        );
        let both = env(&[("OTEL_SERVICE_NAME", "from-env"), attributes]);
        assert_eq!(
            service(&build(named("from-code"), &both)),
            Some("from-code".into())
        );
        assert_eq!(
            service(&build(Given::default(), &both)),
            Some("from-env".into())
        );
        let attributes_only = env(&[attributes]);
        let resource = build(Given::default(), &attributes_only);
        assert_eq!(service(&resource), Some("from-attrs".into()));
        assert_eq!(resource.get(&Key::new("team")), Some("jobs".into()));
        assert_eq!(
            resource.get(&Key::new("telemetry.sdk.language")),
            Some("rust".into())
        );
    }

    #[test]
    fn falls_back_to_unknown_service() {
        let name = service(&build(Given::default(), &env(&[])))
            .unwrap()
            .to_string();
        assert!(name.starts_with("unknown_service"), "{name}");
    }

    #[test]
    fn every_process_has_an_instance_id_host_and_pid() {
        let resource = build(Given::default(), &env(&[]));
        let id = resource.get(&Key::new(SERVICE_INSTANCE_ID)).unwrap();
        let id = id.as_str();
        assert_eq!(id, service_instance_id());
        let parsed = uuid::Uuid::parse_str(&id).unwrap();
        assert_eq!(parsed.get_version_num(), 4, "{id}");
        assert_eq!(
            resource.get(&Key::new(PROCESS_PID)),
            Some(Value::I64(i64::from(std::process::id())))
        );
        let host = jobsight_core::host::host_name().unwrap();
        assert_eq!(resource.get(&Key::new(HOST_NAME)), Some(host.into()));
        // The same id for every resource built in this process.
        let again = build(Given::default(), &env(&[]));
        assert_eq!(
            again.get(&Key::new(SERVICE_INSTANCE_ID)).unwrap().as_str(),
            id
        );
    }

    #[test]
    fn identity_precedence() {
        let attributes = (
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.instance.id=pod-7,host.name=node-a,process.pid=1",
        );
        let from_env = build(Given::default(), &env(&[attributes]));
        assert_eq!(
            from_env.get(&Key::new(SERVICE_INSTANCE_ID)),
            Some("pod-7".into())
        );
        assert_eq!(from_env.get(&Key::new(HOST_NAME)), Some("node-a".into()));
        assert_eq!(from_env.get(&Key::new(PROCESS_PID)), Some("1".into()));

        let given = Given {
            service_instance_id: Some("from-code"),
            ..Given::default()
        };
        let from_code = build(given, &env(&[attributes]));
        assert_eq!(
            from_code.get(&Key::new(SERVICE_INSTANCE_ID)),
            Some("from-code".into())
        );

        // Empty: every process would share it, so the UUID stays.
        let blank = Given {
            service_instance_id: Some(" "),
            ..Given::default()
        };
        let empty = env(&[("OTEL_RESOURCE_ATTRIBUTES", "service.instance.id=")]);
        assert_eq!(
            build(blank, &empty).get(&Key::new(SERVICE_INSTANCE_ID)),
            Some(service_instance_id().into())
        );
    }
}
