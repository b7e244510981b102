//! Lockbox approvals a key service can check on its own: the statement a tenant's guardian
//! signs (with a key of their own, never the platform's) when approving an operator's access,
//! and what a key service reads back from it. The signatures are C2SP signed-note lines, made
//! and checked with `vallum_ledger::note`.

/// First line of every approval statement (its format version).
pub const STATEMENT_HEADER: &str = "vallum-lockbox-approval 1";

/// What an approval is about: the request, its operator and the key it was filed with, and its
/// scope and duration.
#[derive(Debug, Clone, Copy)]
pub struct ApprovalFacts<'a> {
    /// The request (`lb-…`).
    pub request: &'a str,
    /// The tenant.
    pub tenant: &'a str,
    /// The operator.
    pub operator: &'a str,
    /// The operator's access key that filed the request.
    pub access_key: &'a str,
    /// The bucket.
    pub bucket: &'a str,
    /// The key prefix (empty: the whole bucket).
    pub prefix: &'a str,
    /// Operations (`read`, `list`, `write`, `delete`).
    pub operations: &'a [String],
    /// How long the grant lasts once granted, seconds.
    pub duration_secs: u64,
    /// Break-glass (reviewed afterwards instead of approved before).
    pub break_glass: bool,
}

/// The canonical statement for `f` (signed-note text: lines ending in a newline, no blank
/// line). Values are written as they are; none of them may contain a newline (the request's
/// validation refuses such values).
#[must_use]
pub fn statement(f: &ApprovalFacts<'_>) -> String {
    let clean = |s: &str| s.replace(['\n', '\r'], " ");
    format!(
        "{STATEMENT_HEADER}\nrequest {}\ntenant {}\noperator {}\nkey {}\nscope {}/{} {}\nduration {}\n{}",
        clean(f.request),
        clean(f.tenant),
        clean(f.operator),
        clean(f.access_key),
        clean(f.bucket),
        clean(f.prefix),
        clean(&f.operations.join("+")),
        f.duration_secs,
        if f.break_glass {
            "break-glass review\n"
        } else {
            "approval\n"
        }
    )
}

/// The request a statement is about, if it is a statement.
#[must_use]
pub fn request_of(statement: &str) -> Option<&str> {
    let mut lines = statement.lines();
    if lines.next() != Some(STATEMENT_HEADER) {
        return None;
    }
    lines.next()?.strip_prefix("request ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_names_its_request_and_is_stable() {
        let ops = vec!["read".to_owned(), "list".to_owned()];
        let f = ApprovalFacts {
            request: "lb-0123",
            tenant: "acme",
            operator: "olga",
            access_key: "VAOLGA",
            bucket: "records",
            prefix: "logs/",
            operations: &ops,
            duration_secs: 600,
            break_glass: false,
        };
        let s = statement(&f);
        assert_eq!(
            s,
            "vallum-lockbox-approval 1\nrequest lb-0123\ntenant acme\noperator olga\nkey VAOLGA\nscope records/logs/ read+list\nduration 600\napproval\n"
        );
        assert_eq!(request_of(&s), Some("lb-0123"));
        assert_eq!(request_of("something else\nrequest lb-1\n"), None);
    }
}
