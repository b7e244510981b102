//! Jurisdictions: ISO 3166-1 alpha-2 country codes and the groups a boundary policy may name.
//! The memberships are data (kept here in one table), not logic spread through the code.

/// Members of the European Union (27, as of 2020-02-01).
pub const EU_MEMBERS: &[&str] = &[
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV",
    "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
];

/// EEA members outside the EU.
pub const EEA_EXTRA: &[&str] = &["IS", "LI", "NO"];

/// Whether `code` is a syntactically valid ISO 3166-1 alpha-2 code (two upper-case letters).
#[must_use]
pub fn is_country_code(code: &str) -> bool {
    code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase())
}

/// Whether `country` belongs to `name`: the same country code, or a member of the group
/// `EU` or `EEA`.
#[must_use]
pub fn within(country: &str, name: &str) -> bool {
    match name {
        "EU" => EU_MEMBERS.contains(&country),
        "EEA" => EU_MEMBERS.contains(&country) || EEA_EXTRA.contains(&country),
        _ => is_country_code(country) && country == name,
    }
}

/// Whether `name` is something a policy may allow: a country code or a known group.
#[must_use]
pub fn is_known_name(name: &str) -> bool {
    matches!(name, "EU" | "EEA") || is_country_code(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_and_countries() {
        assert_eq!(EU_MEMBERS.len(), 27);
        assert!(within("FR", "EU") && within("FR", "EEA") && within("FR", "FR"));
        assert!(within("NO", "EEA") && !within("NO", "EU"));
        assert!(!within("US", "EU") && !within("GB", "EEA") && !within("", "EU"));
        assert!(!within("", ""));
        assert!(is_known_name("EU") && is_known_name("DE") && !is_known_name("Europe"));
    }
}
