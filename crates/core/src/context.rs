//! The request context: who acts, under which lockbox grant, with which customer-provided keys,
//! for which request. It is a value every acting domain call takes as an argument (no ambient
//! state): the server builds one per request once it has authenticated the caller, and each
//! background job builds its own (`system:<job>`).

use vallum_crypto::customer::CustomerKey;
use vallum_crypto::keys::Justification;

/// Why keys are used for the customer's own requests.
pub const CUSTOMER_REQUEST: &str = "customer-request";

/// Who acts, why, and with which customer-provided keys.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// Who: `key:<access key>`, `anonymous`, `system:<job>`, `operator:<name>`, …; what the
    /// transparency log records as the actor.
    pub actor: String,
    /// The request id the client sees (`x-amz-request-id`), when there is a request.
    pub request_id: Option<String>,
    /// The lockbox grant the actor works under, if any: the justification of key use.
    pub grant: Option<String>,
    /// The guardians' signed approvals of that grant, if they signed: passed to key services.
    pub approvals: Option<String>,
    /// SSE-C keys the request carries (never stored).
    pub customer_keys: CustomerKeys,
}

/// The customer-provided keys of a request (never stored).
#[derive(Debug, Clone, Default)]
pub struct CustomerKeys {
    /// `x-amz-server-side-encryption-customer-*`: the target object's key.
    pub target: Option<CustomerKey>,
    /// `x-amz-copy-source-server-side-encryption-customer-*`: the copy source's key.
    pub source: Option<CustomerKey>,
}

impl RequestContext {
    /// A request by `actor` (no grant, no customer keys).
    #[must_use]
    pub fn new(actor: impl Into<String>, request_id: Option<String>) -> Self {
        Self {
            actor: actor.into(),
            request_id,
            grant: None,
            approvals: None,
            customer_keys: CustomerKeys::default(),
        }
    }

    /// A request by no authenticated principal.
    #[must_use]
    pub fn anonymous(request_id: Option<String>) -> Self {
        Self::new("anonymous", request_id)
    }

    /// Background work by `job`: the actor is `system:<job>`.
    #[must_use]
    pub fn system(job: &str) -> Self {
        Self::new(format!("system:{job}"), None)
    }

    /// The same context working under the lockbox grant `grant`, signed by `approvals`.
    #[must_use]
    pub fn with_grant(mut self, grant: Option<String>, approvals: Option<String>) -> Self {
        self.grant = grant;
        self.approvals = approvals;
        self
    }

    /// The same context carrying the customer-provided keys `keys`.
    #[must_use]
    pub fn with_customer_keys(mut self, keys: CustomerKeys) -> Self {
        self.customer_keys = keys;
        self
    }

    /// Why keys are used: the customer's own request, or (for an operator) the lockbox grant
    /// the request works under, which key providers require of operators.
    #[must_use]
    pub fn justification(&self) -> Justification {
        Justification {
            actor: self.actor.clone(),
            reason: self
                .grant
                .as_ref()
                .map_or_else(|| CUSTOMER_REQUEST.into(), |g| format!("lockbox:{g}")),
            approvals: self.approvals.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_is_the_justification_of_key_use() {
        let plain = RequestContext::new("key:AKIA1", Some("req-1".into()));
        let j = plain.justification();
        assert_eq!(
            (j.actor.as_str(), j.reason.as_str()),
            ("key:AKIA1", "customer-request")
        );
        assert_eq!(j.approvals, None);
        let granted = RequestContext::new("operator:ann", None)
            .with_grant(Some("g-7".into()), Some("signed".into()));
        let j = granted.justification();
        assert_eq!(j.reason, "lockbox:g-7");
        assert_eq!(j.approvals.as_deref(), Some("signed"));
        assert_eq!(RequestContext::system("gc").actor, "system:gc");
        assert_eq!(RequestContext::anonymous(None).actor, "anonymous");
    }
}
