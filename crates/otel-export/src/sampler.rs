//! `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`.

use opentelemetry_sdk::trace::Sampler;

use crate::Error;

pub(crate) const SAMPLER_VAR: &str = "OTEL_TRACES_SAMPLER";
pub(crate) const SAMPLER_ARG_VAR: &str = "OTEL_TRACES_SAMPLER_ARG";

const ACCEPTED: &str = "accepted values: `always_on`, `always_off`, `traceidratio`, \
                        `parentbased_always_on`, `parentbased_always_off`, `parentbased_traceidratio`";

/// A sampler chosen by the environment. Defaults to `parentbased_always_on`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) enum SamplerChoice {
    AlwaysOn,
    AlwaysOff,
    TraceIdRatio(f64),
    #[default]
    ParentBasedAlwaysOn,
    ParentBasedAlwaysOff,
    ParentBasedTraceIdRatio(f64),
}

impl SamplerChoice {
    /// Parses the two variables' values. The argument is read only by the
    /// ratio samplers: a probability in `[0, 1]`, default `1.0`.
    pub(crate) fn from_env(sampler: Option<&str>, arg: Option<&str>) -> Result<Self, Error> {
        let Some(sampler) = sampler else {
            return Ok(SamplerChoice::default());
        };
        let ratio = || parse_ratio(arg);
        Ok(match sampler.trim().to_ascii_lowercase().as_str() {
            "always_on" => SamplerChoice::AlwaysOn,
            "always_off" => SamplerChoice::AlwaysOff,
            "traceidratio" => SamplerChoice::TraceIdRatio(ratio()?),
            "parentbased_always_on" => SamplerChoice::ParentBasedAlwaysOn,
            "parentbased_always_off" => SamplerChoice::ParentBasedAlwaysOff,
            "parentbased_traceidratio" => SamplerChoice::ParentBasedTraceIdRatio(ratio()?),
            other => {
                return Err(Error::env(
                    SAMPLER_VAR,
                    format!("unsupported sampler `{other}`; {ACCEPTED}"),
                ));
            }
        })
    }

    /// The SDK sampler.
    pub(crate) fn to_sampler(self) -> Sampler {
        let parent_based = |root: Sampler| Sampler::ParentBased(Box::new(root));
        match self {
            SamplerChoice::AlwaysOn => Sampler::AlwaysOn,
            SamplerChoice::AlwaysOff => Sampler::AlwaysOff,
            SamplerChoice::TraceIdRatio(ratio) => Sampler::TraceIdRatioBased(ratio),
            SamplerChoice::ParentBasedAlwaysOn => parent_based(Sampler::AlwaysOn),
            SamplerChoice::ParentBasedAlwaysOff => parent_based(Sampler::AlwaysOff),
            SamplerChoice::ParentBasedTraceIdRatio(ratio) => {
                parent_based(Sampler::TraceIdRatioBased(ratio))
            }
        }
    }
}

fn parse_ratio(arg: Option<&str>) -> Result<f64, Error> {
    let Some(arg) = arg else {
        return Ok(1.0);
    };
    match arg.trim().parse::<f64>() {
        Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
        _ => Err(Error::env(
            SAMPLER_ARG_VAR,
            format!(
                "`{arg}` is not a sampling probability; expected a number from 0 to 1, e.g. `0.25`"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_parent_based_always_on() {
        assert_eq!(
            SamplerChoice::from_env(None, None).unwrap(),
            SamplerChoice::ParentBasedAlwaysOn
        );
    }

    #[test]
    fn parses_every_supported_sampler() {
        let cases = [
            ("always_on", SamplerChoice::AlwaysOn),
            ("always_off", SamplerChoice::AlwaysOff),
            ("traceidratio", SamplerChoice::TraceIdRatio(0.5)),
            ("parentbased_always_on", SamplerChoice::ParentBasedAlwaysOn),
            (
                "parentbased_always_off",
                SamplerChoice::ParentBasedAlwaysOff,
            ),
            (
                "parentbased_traceidratio",
                SamplerChoice::ParentBasedTraceIdRatio(0.5),
            ),
        ];
        for (name, expected) in cases {
            assert_eq!(
                SamplerChoice::from_env(Some(name), Some("0.5")).unwrap(),
                expected
            );
        }
    }

    #[test]
    fn ratio_defaults_to_one() {
        assert_eq!(
            SamplerChoice::from_env(Some("traceidratio"), None).unwrap(),
            SamplerChoice::TraceIdRatio(1.0)
        );
    }

    #[test]
    fn bad_values_name_the_right_variable() {
        let message = SamplerChoice::from_env(Some("jaeger_remote"), None)
            .unwrap_err()
            .to_string();
        assert!(message.starts_with(SAMPLER_VAR), "{message}");
        assert!(message.contains("parentbased_traceidratio"), "{message}");

        for arg in ["1.5", "-0.1", "half"] {
            let message = SamplerChoice::from_env(Some("traceidratio"), Some(arg))
                .unwrap_err()
                .to_string();
            assert!(message.starts_with(SAMPLER_ARG_VAR), "{message}");
            assert!(message.contains("0 to 1"), "{message}");
        }
    }
}
