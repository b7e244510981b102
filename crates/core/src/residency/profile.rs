//! Storage sites' legal profiles and the exposures derived from them.
//!
//! A site's exposures to foreign law are not typed in by hand: they follow from where the
//! site is, where its operator is established and where the operator's ultimate parent is,
//! through [`ExposureRules`] — data (an embedded TOML file, replaceable by the deployment),
//! not code. A site may declare further exposures the rules do not know.

use crate::error::Invalid;
use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use vallum_types::jurisdiction::is_country_code;
use vallum_types::limits::{
    MAX_EXPOSURE_RULES_BYTES, MAX_RESIDENCY_LIST_ENTRIES, MAX_RESIDENCY_NAME_BYTES,
};

/// The exposure rules compiled into Vallum (`exposures.toml` beside this file).
pub const DEFAULT_EXPOSURE_RULES: &str = include_str!("exposures.toml");

/// The exposure-rules format this build reads.
pub const EXPOSURE_RULES_VERSION: u32 = 1;

/// A calendar date (UTC), written `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CivilDate(time::Date);

const DATE_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]");

impl CivilDate {
    /// The date of `ms` since the epoch (UTC).
    #[must_use]
    pub fn from_epoch_ms(ms: i64) -> Self {
        let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        Self(t.date())
    }

    /// Parses exactly `YYYY-MM-DD`, a real date (no month 13, no 30 February).
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let shape_ok = text.len() == 10
            && text.bytes().enumerate().all(|(i, b)| {
                if i == 4 || i == 7 {
                    b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            });
        shape_ok
            .then(|| time::Date::parse(text, DATE_FORMAT).ok())
            .flatten()
            .map(Self)
            .ok_or_else(|| Invalid(format!("not a date (YYYY-MM-DD): {text:?}")))
    }

    /// The next day.
    #[must_use]
    pub fn next_day(self) -> Option<Self> {
        self.0.next_day().map(Self)
    }
}

impl std::fmt::Display for CivilDate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.0.format(DATE_FORMAT).map_err(|_| std::fmt::Error)?;
        f.write_str(&text)
    }
}

impl Serialize for CivilDate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CivilDate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A certification a site holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certification {
    /// The scheme, e.g. `SecNumCloud`, `BSI-C5`, `ISO-27001`, `HDS`, `EUCS`.
    pub scheme: String,
    /// The level within the scheme, e.g. `high` for EUCS (none for schemes without levels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// The last day the certificate is valid.
    pub expires: CivilDate,
}

impl Certification {
    /// The name a policy requires it by: `scheme` or `scheme:level`.
    #[must_use]
    pub fn name(&self) -> String {
        match &self.level {
            Some(level) => format!("{}:{level}", self.scheme),
            None => self.scheme.clone(),
        }
    }

    /// Whether it satisfies `required` (`scheme`, or `scheme:level`), case-insensitively.
    #[must_use]
    pub fn satisfies(&self, required: &str) -> bool {
        match required.split_once(':') {
            Some((scheme, level)) => {
                self.scheme.eq_ignore_ascii_case(scheme)
                    && self
                        .level
                        .as_deref()
                        .is_some_and(|l| l.eq_ignore_ascii_case(level))
            }
            None => self.scheme.eq_ignore_ascii_case(required),
        }
    }
}

/// Whether a site takes new data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SiteState {
    /// Takes new replicas.
    #[default]
    Active,
    /// Being emptied: keeps serving what it holds, takes nothing new.
    Draining,
}

/// A storage site's legal profile: where it is, who runs it and who owns them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteProfile {
    /// Site id (opaque, stable).
    pub id: String,
    /// ISO 3166-1 alpha-2 country where the site's disks are (empty: undeclared, which every
    /// boundary policy rejects).
    #[serde(default)]
    pub jurisdiction: String,
    /// Facility or region label, e.g. `Paris-2` (informative).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub facility: String,
    /// The company operating the site (empty: undeclared; all undeclared operators count as
    /// one for independence).
    #[serde(default)]
    pub operator: String,
    /// Country where the operator is established (defaults to the site's jurisdiction).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub operator_country: String,
    /// The operator's ultimate parent company (defaults to the operator itself).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub parent: String,
    /// Country where the ultimate parent is established (defaults to the operator's).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub parent_country: String,
    /// Exposures the rules do not derive but the operator declares.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub declared_exposures: Vec<String>,
    /// Certifications held.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certifications: Vec<Certification>,
    /// Relative share of new data (rendezvous weight, ≥ 1).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Capacity in bytes, informative (none: not declared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_bytes: Option<u64>,
    /// Whether it takes new data.
    #[serde(default)]
    pub state: SiteState,
}

fn default_weight() -> u32 {
    1
}

/// Whether `id` is usable as a site id, policy name or exposure id: 1 to
/// [`MAX_RESIDENCY_NAME_BYTES`] of `a-z`, `0-9`, `-`, `_`, `.`, starting with a letter or digit.
#[must_use]
pub fn is_residency_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_RESIDENCY_NAME_BYTES
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

fn check_country(what: &str, code: &str) -> Result<(), Invalid> {
    if is_country_code(code) {
        Ok(())
    } else {
        Err(Invalid(format!(
            "{what} {code:?} is not an ISO 3166-1 alpha-2 country code"
        )))
    }
}

impl SiteProfile {
    /// A profile with only the required facts; the rest defaulted.
    #[must_use]
    pub fn new(id: &str, jurisdiction: &str, operator: &str) -> Self {
        Self {
            id: id.to_owned(),
            jurisdiction: jurisdiction.to_owned(),
            facility: String::new(),
            operator: operator.to_owned(),
            operator_country: String::new(),
            parent: String::new(),
            parent_country: String::new(),
            declared_exposures: Vec::new(),
            certifications: Vec::new(),
            weight: 1,
            capacity_bytes: None,
            state: SiteState::Active,
        }
    }

    /// Country of the operator (the site's own if not given).
    #[must_use]
    pub fn operator_country(&self) -> &str {
        if self.operator_country.is_empty() {
            &self.jurisdiction
        } else {
            &self.operator_country
        }
    }

    /// The ultimate parent company (the operator if not given).
    #[must_use]
    pub fn parent(&self) -> &str {
        if self.parent.is_empty() {
            &self.operator
        } else {
            &self.parent
        }
    }

    /// Country of the ultimate parent (the operator's if not given).
    #[must_use]
    pub fn parent_country(&self) -> &str {
        if self.parent_country.is_empty() {
            self.operator_country()
        } else {
            &self.parent_country
        }
    }

    /// The parent as an identity for counting legally independent operators: case and
    /// surrounding blanks do not make two companies.
    #[must_use]
    pub fn parent_identity(&self) -> String {
        self.parent().trim().to_lowercase()
    }

    /// Checks every field; the message names the first bad one.
    pub fn validate(&self) -> Result<(), Invalid> {
        if !is_residency_id(&self.id) {
            return Err(Invalid(format!(
                "site id {:?} must be 1-{MAX_RESIDENCY_NAME_BYTES} characters of a-z, 0-9, '-', '_', '.'",
                self.id
            )));
        }
        if !self.jurisdiction.is_empty() {
            check_country("site jurisdiction", &self.jurisdiction)?;
        }
        for (what, name) in [("operator", &self.operator), ("parent", &self.parent)] {
            if name.len() > MAX_RESIDENCY_NAME_BYTES || name.chars().any(char::is_control) {
                return Err(Invalid(format!(
                    "{what} name {name:?} is too long or not printable"
                )));
            }
        }
        if !self.operator_country.is_empty() {
            check_country("operator country", &self.operator_country)?;
        }
        if !self.parent_country.is_empty() {
            check_country("parent country", &self.parent_country)?;
        }
        if self.declared_exposures.len() > MAX_RESIDENCY_LIST_ENTRIES
            || self.certifications.len() > MAX_RESIDENCY_LIST_ENTRIES
        {
            return Err(Invalid(format!(
                "site {}: at most {MAX_RESIDENCY_LIST_ENTRIES} exposures and certifications",
                self.id
            )));
        }
        if let Some(x) = self.declared_exposures.iter().find(|x| !is_residency_id(x)) {
            return Err(Invalid(format!("exposure id {x:?} is not a valid id")));
        }
        for c in &self.certifications {
            if c.scheme.is_empty()
                || c.scheme.len() > MAX_RESIDENCY_NAME_BYTES
                || c.scheme.contains(':')
                || c.level
                    .as_deref()
                    .is_some_and(|l| l.is_empty() || l.contains(':'))
            {
                return Err(Invalid(format!(
                    "certification {:?} is not well formed",
                    c.name()
                )));
            }
        }
        if self.weight == 0 {
            return Err(Invalid(format!(
                "site {}: weight must be at least 1",
                self.id
            )));
        }
        Ok(())
    }

    /// Whether a certification satisfying `required` is valid on `today`.
    #[must_use]
    pub fn holds(&self, required: &str, today: CivilDate) -> bool {
        self.certifications
            .iter()
            .any(|c| c.expires >= today && c.satisfies(required))
    }

    /// The certification satisfying `required` that is valid on `today`, or why none is.
    pub fn certified(&self, required: &str, today: CivilDate) -> Result<&Certification, Invalid> {
        let mut lapsed = None;
        for c in self.certifications.iter().filter(|c| c.satisfies(required)) {
            if c.expires >= today {
                return Ok(c);
            }
            lapsed = Some(c);
        }
        Err(match lapsed {
            Some(c) => format!("certification {} expired on {}", c.name(), c.expires).into(),
            None => format!("no {required} certification").into(),
        })
    }
}

/// Which of a site's facts brings a rule in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// The site is located in the country.
    Site,
    /// The operator is established there.
    Operator,
    /// The operator's ultimate parent is established there.
    Parent,
}

/// One exposure rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExposureRule {
    /// The id policies name.
    pub id: String,
    /// The legal basis.
    pub law: String,
    /// What it means for data.
    #[serde(default)]
    pub summary: String,
    /// Countries it applies to.
    pub countries: Vec<String>,
    /// Which facts bring it in.
    pub via: Vec<Via>,
}

/// An exposure a site has, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exposure {
    /// The exposure id.
    pub id: String,
    /// Why the site has it, e.g. `operator parent Acme Corp in US (US CLOUD Act …)`.
    pub basis: String,
}

/// The set of exposure rules in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExposureRules {
    /// Format version ([`EXPOSURE_RULES_VERSION`]).
    pub version: u32,
    /// The rules.
    #[serde(default, rename = "exposure")]
    pub rules: Vec<ExposureRule>,
}

impl ExposureRules {
    /// The rules compiled into Vallum.
    #[must_use]
    pub fn builtin() -> Self {
        Self::parse(DEFAULT_EXPOSURE_RULES).expect("the built-in exposure rules are valid")
    }

    /// Parses and validates a rules file (TOML).
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        if text.len() > MAX_EXPOSURE_RULES_BYTES {
            return Err(Invalid(format!(
                "exposure rules larger than {MAX_EXPOSURE_RULES_BYTES} bytes"
            )));
        }
        let rules: Self = toml::from_str(text).map_err(|e| format!("exposure rules: {e}"))?;
        rules.validate()?;
        Ok(rules)
    }

    fn validate(&self) -> Result<(), Invalid> {
        if self.version != EXPOSURE_RULES_VERSION {
            return Err(Invalid(format!(
                "exposure rules version {} is not supported (this build reads {EXPOSURE_RULES_VERSION})",
                self.version
            )));
        }
        let mut seen = BTreeSet::new();
        for r in &self.rules {
            if !is_residency_id(&r.id) {
                return Err(Invalid(format!("exposure id {:?} is not a valid id", r.id)));
            }
            if !seen.insert(r.id.as_str()) {
                return Err(Invalid(format!("exposure {} is defined twice", r.id)));
            }
            if r.law.trim().is_empty() || r.countries.is_empty() || r.via.is_empty() {
                return Err(Invalid(format!(
                    "exposure {}: law, countries and via must be given",
                    r.id
                )));
            }
            for c in &r.countries {
                check_country(&format!("exposure {}: country", r.id), c)?;
            }
        }
        Ok(())
    }

    /// The rule named `id`.
    #[must_use]
    pub fn rule(&self, id: &str) -> Option<&ExposureRule> {
        self.rules.iter().find(|r| r.id == id)
    }

    /// Every exposure of `site`: derived by the rules, then declared; sorted by id, each
    /// once, with the first reason found.
    #[must_use]
    pub fn exposures(&self, site: &SiteProfile) -> Vec<Exposure> {
        let facts = [
            (
                Via::Site,
                site.jurisdiction.as_str(),
                "site located".to_owned(),
            ),
            (
                Via::Operator,
                site.operator_country(),
                format!("operator {}", site.operator),
            ),
            (
                Via::Parent,
                site.parent_country(),
                format!("operator parent {}", site.parent()),
            ),
        ];
        let mut out: Vec<Exposure> = Vec::new();
        for rule in &self.rules {
            let hit = facts.iter().find(|(via, country, _)| {
                rule.via.contains(via) && rule.countries.iter().any(|c| c == country)
            });
            if let Some((_, country, who)) = hit {
                out.push(Exposure {
                    id: rule.id.clone(),
                    basis: format!("{who} in {country} ({})", rule.law),
                });
            }
        }
        for id in &site.declared_exposures {
            if !out.iter().any(|x| &x.id == id) {
                out.push(Exposure {
                    id: id.clone(),
                    basis: "declared by the operator".into(),
                });
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> CivilDate {
        CivilDate::parse(s).unwrap()
    }

    #[test]
    fn dates_parse_print_and_order() {
        // 2000-03-01T00:00:00Z is 951868800 s after the epoch.
        assert_eq!(
            CivilDate::from_epoch_ms(951_868_800_000),
            date("2000-03-01")
        );
        assert_eq!(
            CivilDate::from_epoch_ms(951_868_800_000 - 1),
            date("2000-02-29")
        );
        assert_eq!(CivilDate::from_epoch_ms(0).to_string(), "1970-01-01");
        assert_eq!(date("2024-02-29").to_string(), "2024-02-29");
        for bad in [
            "2023-02-29",
            "2026-13-01",
            "2026-00-10",
            "26-01-01",
            "2026-1-01",
            "2026-01-32",
            "+026-01-01",
            "2026-01-01 ",
            "2026/01/01",
        ] {
            assert!(CivilDate::parse(bad).is_err(), "{bad}");
        }
        // Every day of four centuries round-trips through its text, in order.
        let mut day = date("1900-01-01");
        let end = date("2300-01-01");
        while day < end {
            assert_eq!(date(&day.to_string()), day);
            let next = day.next_day().unwrap();
            assert!(next > day);
            day = next;
        }
        assert_eq!(
            serde_json::to_string(&date("2027-06-30")).unwrap(),
            "\"2027-06-30\""
        );
        assert!(serde_json::from_str::<CivilDate>("\"2027-06-31\"").is_err());
    }

    #[test]
    fn builtin_rules_parse_and_derive_exposures_from_location_operator_and_parent() {
        let rules = ExposureRules::builtin();
        assert!(rules.rule("us-cloud-act").is_some());
        // A French site run by a French subsidiary of a US company.
        let mut site = SiteProfile::new("paris-1", "FR", "Cloud France SAS");
        site.parent = "Hyperscale Inc".into();
        site.parent_country = "US".into();
        let x = rules.exposures(&site);
        let ids: Vec<&str> = x.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["us-cloud-act", "us-fisa-702"]);
        assert!(
            x[0].basis
                .starts_with("operator parent Hyperscale Inc in US (US CLOUD Act")
        );
        // The same site owned in France has none.
        site.parent_country = "FR".into();
        assert!(rules.exposures(&site).is_empty());
        // A US-located site of a French operator is exposed by its location; declared
        // exposures are added once.
        let mut us = SiteProfile::new("virginia", "US", "Stockage SA");
        us.operator_country = "FR".into();
        us.declared_exposures = vec!["us-cloud-act".into(), "local-court-order".into()];
        let x = rules.exposures(&us);
        assert_eq!(x.len(), 3);
        assert_eq!(x[2].id, "us-fisa-702");
        assert!(x[1].basis.starts_with("site located in US"));
        assert_eq!(x[0].basis, "declared by the operator");
    }

    #[test]
    fn rules_files_are_validated() {
        let ok = "version = 1\n[[exposure]]\nid = \"x-law\"\nlaw = \"Act\"\ncountries = [\"DE\"]\nvia = [\"parent\"]\n";
        let rules = ExposureRules::parse(ok).unwrap();
        // Located in DE, operator and parent in AT: only the parent brings the rule in.
        let mut site = SiteProfile::new("s", "DE", "op");
        site.operator_country = "AT".into();
        assert_eq!(rules.exposures(&site).len(), 0);
        site.parent_country = "DE".into();
        assert_eq!(rules.exposures(&site).len(), 1);
        for (bad, why) in [
            (ok.replace("version = 1", "version = 2"), "version 2"),
            (ok.replace("\"DE\"", "\"XX\""), "\"XX\""),
            (ok.replace("x-law", "X Law"), "not a valid id"),
            (ok.replace("[\"parent\"]", "[\"moon\"]"), "unknown variant"),
            (format!("{ok}{}", &ok[12..]), "defined twice"),
            (ok.replace("law = \"Act\"\n", ""), "missing field"),
            (format!("{ok}colour = 1\n"), "unknown field"),
        ] {
            let err = ExposureRules::parse(&bad).unwrap_err();
            assert!(err.contains(why), "{err} (wanted {why})");
        }
    }

    #[test]
    fn profiles_are_validated_and_certifications_checked_by_date() {
        let mut site = SiteProfile::new("gra-1", "FR", "OVH");
        site.certifications = vec![
            Certification {
                scheme: "SecNumCloud".into(),
                level: None,
                expires: date("2026-06-30"),
            },
            Certification {
                scheme: "EUCS".into(),
                level: Some("high".into()),
                expires: date("2027-01-31"),
            },
        ];
        site.validate().unwrap();
        let today = date("2026-12-01");
        assert!(site.certified("eucs:HIGH", today).is_ok());
        assert!(site.certified("EUCS", today).is_ok());
        assert_eq!(
            site.certified("EUCS:substantial", today).unwrap_err(),
            "no EUCS:substantial certification"
        );
        assert_eq!(
            site.certified("SecNumCloud", today).unwrap_err(),
            "certification SecNumCloud expired on 2026-06-30"
        );
        assert!(site.certified("SecNumCloud", date("2026-06-30")).is_ok());

        type Breaker = fn(&mut SiteProfile);
        let cases: [(Breaker, &str); 6] = [
            (|s| s.id = "Paris 1".into(), "site id"),
            (|s| s.jurisdiction = "XX".into(), "\"XX\" is not an ISO"),
            (|s| s.parent_country = "Europe".into(), "parent country"),
            (|s| s.operator = "a\u{7}b".into(), "not printable"),
            (|s| s.weight = 0, "weight"),
            (
                |s| s.declared_exposures = vec!["US law".into()],
                "exposure id",
            ),
        ];
        for (break_it, why) in cases {
            let mut s = site.clone();
            break_it(&mut s);
            let err = s.validate().unwrap_err();
            assert!(err.contains(why), "{err} (wanted {why})");
        }
    }
}
