//! Lockbox events posted to a tenant's guardian webhook: JSON over plain HTTP, in the
//! background, so a slow or dead webhook never holds up the request that caused the event.
//! The transparency log, not the webhook, is the record.

use std::time::Duration;

/// Time limit of one webhook post.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// Posts events with `ureq` on a blocking thread.
#[derive(Debug, Default)]
pub struct WebhookNotifier;

impl vallum_core::iam::Notifier for WebhookNotifier {
    fn notify(&self, url: &str, event: serde_json::Value) {
        let url = url.to_owned();
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        handle.spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(WEBHOOK_TIMEOUT))
                .http_status_as_error(false)
                .build()
                .into();
            let body = event.to_string();
            match agent
                .post(&url)
                .header("content-type", "application/json")
                .send(body.as_bytes())
            {
                Ok(resp) if resp.status().is_success() => {
                    tracing::debug!(%url, "guardian webhook notified");
                }
                Ok(resp) => {
                    tracing::warn!(%url, status = resp.status().as_u16(), "guardian webhook refused the event");
                }
                Err(err) => tracing::warn!(%url, %err, "guardian webhook unreachable"),
            }
        });
    }
}
