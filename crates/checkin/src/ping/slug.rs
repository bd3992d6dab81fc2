//! Monitor names in the form each ping service addresses them by.
//!
//! healthchecks.io and Sentry both derive a monitor's slug from its name
//! the way Django's `slugify` does: lowercase; keep ASCII letters, digits,
//! `_`, `-` and whitespace, drop every other character; each run of
//! whitespace and `-` becomes one `-`; `-` and `_` are trimmed from both
//! ends. healthchecks.io then accepts only slugs of `a-z0-9_-` (an
//! uppercase letter is answered 400, any other character 404); Sentry keeps
//! the first 50 characters.
//!
//! jobsight applies the same rule, so `NightlyReport` is pinged as
//! `nightlyreport` and `Nightly Report` as `nightly-report` — the slug
//! either service shows for a check of that name. Names the rule cannot
//! turn into a slug are refused: an empty result (`"!!"`), characters
//! outside printable ASCII (the services fold accents with Unicode
//! normalisation, which jobsight does not guess), and for Sentry a slug
//! over 50 characters (cut by the service, so two long names could meet).

/// Sentry's longest monitor slug.
pub const SENTRY_SLUG_MAX: usize = 50;

/// `name` slugified (see the module docs), or why it cannot be.
pub fn slugify(name: &str) -> Result<String, String> {
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_graphic() || *c == ' ')) {
        return Err(format!(
            "monitor name `{}` has the character {c:?}; slugs are made of \
             ASCII letters, digits, `_` and `-` (spaces become `-`): give the \
             policy an ASCII monitor name",
            name.escape_debug()
        ));
    }
    let mut slug = String::with_capacity(name.len());
    let mut dash = false;
    for c in name.chars() {
        match c {
            'a'..='z' | '0'..='9' | '_' => {
                if dash {
                    slug.push('-');
                    dash = false;
                }
                slug.push(c);
            }
            'A'..='Z' => {
                if dash {
                    slug.push('-');
                    dash = false;
                }
                slug.push(c.to_ascii_lowercase());
            }
            ' ' | '-' => dash = true,
            _ => {}
        }
    }
    if dash {
        slug.push('-');
    }
    let slug = slug.trim_matches(['-', '_']).to_owned();
    if slug.is_empty() {
        return Err(format!(
            "monitor name `{name}` has no letter or digit to make a slug of"
        ));
    }
    Ok(slug)
}

/// The healthchecks.io slug of `name`: [`slugify`], which only ever yields
/// `a-z0-9_-`.
pub fn healthchecks_slug(name: &str) -> Result<String, String> {
    slugify(name)
}

/// The Sentry monitor slug of `name`: [`slugify`], at most
/// [`SENTRY_SLUG_MAX`] characters.
pub fn sentry_slug(name: &str) -> Result<String, String> {
    let slug = slugify(name)?;
    if slug.len() > SENTRY_SLUG_MAX {
        return Err(format!(
            "its Sentry slug `{slug}` has {} characters and Sentry keeps \
             {SENTRY_SLUG_MAX}: give the policy a shorter monitor name",
            slug.len()
        ));
    }
    Ok(slug)
}

/// A check UUID as healthchecks.io accepts it: 36 characters, hex digits in
/// lowercase, dashes at 8, 13, 18 and 23.
pub fn normalize_uuid(uuid: &str) -> Result<String, String> {
    let lower = uuid.trim().to_ascii_lowercase();
    let ok = lower.len() == 36
        && lower.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    if ok {
        Ok(lower)
    } else {
        Err(format!(
            "`{uuid}` is not a check UUID (expected 8-4-4-4-12 hex digits)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// healthchecks.io's slug pattern: one or more of `a-z0-9_-`.
    fn healthchecks_accepts(slug: &str) -> bool {
        !slug.is_empty()
            && slug
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    }

    #[test]
    fn names_become_the_services_slugs() {
        for (name, slug) in [
            ("NightlyReport", "nightlyreport"),
            ("String", "string"),
            ("Nightly Report", "nightly-report"),
            ("  nightly -- report  ", "nightly-report"),
            ("send_digest", "send_digest"),
            ("my_crate::jobs::Send", "my_cratejobssend"),
            ("report.v2", "reportv2"),
            ("a~b:c", "abc"),
            ("-_edge_-", "edge"),
            ("q 1", "q-1"),
        ] {
            let got = healthchecks_slug(name).unwrap();
            assert_eq!(got, slug, "{name}");
            assert!(healthchecks_accepts(&got), "{got}");
            assert_eq!(sentry_slug(name).unwrap(), slug);
        }
    }

    #[test]
    fn names_without_a_slug_are_refused() {
        for name in ["", "!!", "---", "__", "café", "tab\there", "日本"] {
            let err = healthchecks_slug(name).unwrap_err();
            assert!(err.contains("monitor name"), "{err}");
        }
        let long = "x".repeat(51);
        assert!(healthchecks_slug(&long).is_ok());
        assert!(sentry_slug(&long).unwrap_err().contains("50"));
        assert!(sentry_slug(&"x".repeat(50)).is_ok());
    }

    #[test]
    fn uuids_are_lowercased_and_checked() {
        assert_eq!(
            normalize_uuid("5BF66975-D4C7-4BF5-BCC8-B8D8A82EA278").unwrap(),
            "5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278"
        );
        for bad in [
            "",
            "5bf66975d4c74bf5bcc8b8d8a82ea278",
            "5bf66975-d4c7-4bf5-bcc8-b8d8a82ea27g",
        ] {
            assert!(normalize_uuid(bad).is_err(), "{bad}");
        }
    }
}
