//! Jurisdictions: ISO 3166-1 alpha-2 country codes and the groups a boundary policy may name.
//! The memberships are data (kept here in one table), not logic spread through the code.

/// Members of the European Union (27, as of 2020-02-01).
pub const EU_MEMBERS: &[&str] = &[
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV",
    "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
];

/// EEA members outside the EU.
pub const EEA_EXTRA: &[&str] = &["IS", "LI", "NO"];

/// The 249 officially assigned ISO 3166-1 alpha-2 codes, sorted (ISO 3166 Maintenance Agency,
/// as of 2024). A policy or site naming anything else is refused rather than guessed at.
pub const COUNTRY_CODES: &[&str] = &[
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
];

/// Whether `code` is an officially assigned ISO 3166-1 alpha-2 country code.
#[must_use]
pub fn is_country_code(code: &str) -> bool {
    COUNTRY_CODES.binary_search(&code).is_ok()
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
        // Well-formed but unassigned codes are unknown, not countries.
        assert!(!is_known_name("XX") && !is_known_name("EL") && !is_known_name("UK"));
        assert!(!is_known_name("fr"));
    }

    #[test]
    fn country_table_is_sorted_unique_and_holds_every_group_member() {
        assert_eq!(COUNTRY_CODES.len(), 249);
        assert!(COUNTRY_CODES.windows(2).all(|w| w[0] < w[1]));
        assert!(
            EU_MEMBERS
                .iter()
                .chain(EEA_EXTRA)
                .all(|c| is_country_code(c))
        );
    }
}
