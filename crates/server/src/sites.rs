//! The deployment's sites at run time: the configured ones (`[site]`, `[[sites]]`) with the
//! changes recorded in the metadata store — sites added through the admin API, drained or
//! removed — opened once and put in force on the object service. Every gateway reloads the
//! records periodically, so a change made through one reaches all.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use vallum_core::blob::BlobStore;
use vallum_core::meta::SiteRecord;
use vallum_core::records::TypedRecords;
use vallum_core::residency::SiteState;
use vallum_core::service::ObjectService;

use crate::config::{Config, SiteConfig};
use crate::server::ServerError;

/// Recorded state of a site taking new replicas.
pub const STATE_ACTIVE: &str = "active";
/// Recorded state of a site whose data the repair moves elsewhere.
pub const STATE_DRAINING: &str = "draining";
/// Recorded state of a site taken out of the deployment.
pub const STATE_REMOVED: &str = "removed";

/// The sites of a running deployment.
pub struct SiteManager {
    config: Config,
    data_dir: PathBuf,
    opened: tokio::sync::Mutex<HashMap<String, Arc<dyn BlobStore>>>,
    applied: tokio::sync::Mutex<Option<Vec<SiteRecord>>>,
}

/// A site in force: its configuration and recorded state.
#[derive(Debug, Clone)]
pub struct EffectiveSite {
    /// Its configuration (from the file, or from the record of a site added at run time).
    pub config: SiteConfig,
    /// Whether it was added at run time.
    pub added: bool,
    /// `active` or `draining`.
    pub state: String,
}

impl SiteManager {
    /// The manager of `config`'s sites.
    #[must_use]
    pub fn new(config: Config, data_dir: PathBuf) -> Self {
        Self {
            config,
            data_dir,
            opened: tokio::sync::Mutex::default(),
            applied: tokio::sync::Mutex::default(),
        }
    }

    /// The primary site's id.
    #[must_use]
    pub fn primary(&self) -> &str {
        &self.config.site.id
    }

    /// The sites in force under `records`: configured ones not removed, then those added at
    /// run time, each with its recorded state.
    pub fn effective(&self, records: &[SiteRecord]) -> Result<Vec<EffectiveSite>, ServerError> {
        let state_of = |id: &str| records.iter().find(|r| r.id == id);
        let mut out = Vec::new();
        for site in self.config.all_sites() {
            let state = state_of(&site.id).map_or(STATE_ACTIVE, |r| r.state.as_str());
            if state == STATE_REMOVED && site.id != self.config.site.id {
                tracing::info!(site = %site.id, "site removed at run time; ignoring its configuration");
                continue;
            }
            out.push(EffectiveSite {
                config: site,
                added: false,
                state: state.to_owned(),
            });
        }
        for r in records {
            let Some(def) = &r.definition else { continue };
            if r.state == STATE_REMOVED || out.iter().any(|s| s.config.id == r.id) {
                continue;
            }
            let config: SiteConfig = serde_json::from_str(def).map_err(|e| {
                ServerError::Site(format!("the recorded definition of site {}: {e}", r.id))
            })?;
            out.push(EffectiveSite {
                config,
                added: true,
                state: r.state.clone(),
            });
        }
        Ok(out)
    }

    /// Opens (once) every site in force under `records` and puts them in force on `service`.
    pub async fn apply(
        &self,
        service: &ObjectService,
        records: Vec<SiteRecord>,
    ) -> Result<(), ServerError> {
        let (residency, stores) = self.build(&records).await?;
        service.set_sites(residency, stores, &self.config.site.id)?;
        self.applied(records).await;
        Ok(())
    }

    /// Notes `records` as the ones in force.
    pub async fn applied(&self, records: Vec<SiteRecord>) {
        *self.applied.lock().await = Some(records);
    }

    /// The residency facts and the opened stores (once per site) of the sites in force under
    /// `records`.
    #[allow(clippy::type_complexity)]
    pub async fn build(
        &self,
        records: &[SiteRecord],
    ) -> Result<
        (
            vallum_core::residency::Residency,
            Vec<(String, Arc<dyn BlobStore>)>,
        ),
        ServerError,
    > {
        let sites = self.effective(records)?;
        let mut profiles = Vec::with_capacity(sites.len());
        let mut stores = Vec::with_capacity(sites.len());
        let mut opened = self.opened.lock().await;
        for s in &sites {
            let store = match opened.get(&s.config.id) {
                Some(store) => Arc::clone(store),
                None => {
                    let primary = s.config.id == self.config.site.id;
                    let store =
                        crate::server::open_store(&s.config, &self.data_dir, primary).await?;
                    opened.insert(s.config.id.clone(), Arc::clone(&store));
                    store
                }
            };
            let mut profile = s.config.profile();
            if s.state == STATE_DRAINING {
                profile.state = SiteState::Draining;
            }
            profiles.push(profile);
            stores.push((s.config.id.clone(), store));
        }
        drop(opened);
        Ok((self.config.residency_of(profiles)?, stores))
    }

    /// Reloads the records and puts any change in force; true when something changed.
    pub async fn refresh(&self, service: &ObjectService) -> Result<bool, ServerError> {
        let records = service
            .meta()
            .load_all::<SiteRecord>()
            .await
            .map_err(|e| ServerError::Site(e.to_string()))?;
        if self.applied.lock().await.as_ref() == Some(&records) {
            return Ok(false);
        }
        self.apply(service, records).await?;
        Ok(true)
    }

    /// Opens `site` (probing a remote one) without putting it in force: an added site must
    /// answer before it is recorded.
    pub async fn probe(&self, site: &SiteConfig) -> Result<(), ServerError> {
        let store = crate::server::connect_store(site, &self.data_dir, false).await?;
        crate::server::probe_store(&*store).await.map_err(|e| {
            ServerError::Site(format!(
                "site {} does not answer as a blob store should: {e}",
                site.id
            ))
        })
    }

    /// The configuration every gateway was started with.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }
}
