//! The functions' configuration, read once per cold start from the environment the template sets.

use std::net::SocketAddr;

use crate::StepError;

/// The opt-in tag key when the stack does not set another.
pub const DEFAULT_OPT_IN_TAG_KEY: &str = "tidb-privatelink";

/// Listener ports a shared load balancer allocates from when the stack does not set others.
pub const DEFAULT_LISTENER_PORTS: (u16, u16) = (3306, 3999);

/// Who owns the load balancer, its security group, the endpoint service and TiDB Cloud's
/// connection: each database (`per-database`) or the database's VPC (`per-vpc`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Sharing {
    #[default]
    PerDatabase,
    PerVpc,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// Value of the `managed-by` tag on everything this stack creates.
    pub stack_name: String,
    /// TiDB Cloud's AWS account, allowed into the endpoint service (stack parameter).
    pub tidb_cloud_account_id: Option<String>,
    /// TiDB Cloud's availability zone IDs, e.g. `use1-az1` (stack parameter).
    pub tidb_cloud_az_ids: Vec<String>,
    /// SNS topic that receives endpoint connection notifications.
    pub connection_topic_arn: Option<String>,
    /// SNS topic this stack tells its outcomes to (provisioned, failed, torn down).
    pub notification_topic_arn: Option<String>,
    /// The provisioning workflow, to tell its outcomes from the teardown's.
    pub provision_state_machine_arn: Option<String>,
    /// The tag key that opts an RDS instance in.
    pub opt_in_tag_key: String,
    /// DynamoDB table of the turn leases, one item per instance (`turn`).
    pub turn_table_name: Option<String>,
    /// The TiDB Cloud cluster to link when the opt-in tag's value does not name one.
    pub tidb_cloud_cluster_id: Option<String>,
    /// Secrets Manager secret holding the TiDB Cloud API key pair; without it the TiDB Cloud side
    /// is left to the user.
    pub tidb_cloud_api_key_secret_arn: Option<String>,
    /// Base URL of the TiDB Cloud API (the default unless testing).
    pub tidb_cloud_api_url: Option<String>,
    /// Whether each database gets its own load balancer, or a VPC's databases share one.
    pub sharing: Sharing,
    /// Listener ports of a shared load balancer, first to last: a database takes its own port
    /// when no listener holds it, else the lowest free one here.
    pub listener_ports: (u16, u16),
    /// A DNS server to resolve the database endpoint with, instead of the system resolver.
    /// Unset in AWS; the local stack points it at the emulator's DNS.
    pub dns_resolver: Option<SocketAddr>,
}

impl Settings {
    pub fn from_env() -> Result<Self, StepError> {
        Self::from_lookup(|key| std::env::var(key).ok().filter(|v| !v.trim().is_empty()))
    }

    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, StepError> {
        let stack_name = var("STACK_NAME").ok_or_else(|| StepError::Misconfigured("STACK_NAME is not set".into()))?;
        let tidb_cloud_account_id = var("TIDB_CLOUD_ACCOUNT_ID").map(|id| account_id(&id)).transpose()?;
        let tidb_cloud_az_ids = var("TIDB_CLOUD_AZ_IDS")
            .map(|ids| ids.split(',').map(str::trim).filter(|id| !id.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default();
        let dns_resolver = var("DNS_RESOLVER")
            .map(|addr| {
                addr.parse()
                    .map_err(|_| StepError::Misconfigured(format!("DNS_RESOLVER '{addr}' is not an ip:port address")))
            })
            .transpose()?;
        let sharing = match var("LOAD_BALANCER_SHARING").as_deref().map(str::trim) {
            None | Some("per-database") => Sharing::PerDatabase,
            Some("per-vpc") => Sharing::PerVpc,
            Some(other) => {
                return Err(StepError::Misconfigured(format!(
                    "LOAD_BALANCER_SHARING '{other}' is neither 'per-database' nor 'per-vpc'"
                )))
            }
        };
        let listener_ports = var("LISTENER_PORT_RANGE").map_or(Ok(DEFAULT_LISTENER_PORTS), |r| port_range(&r))?;
        Ok(Self {
            sharing,
            listener_ports,
            tidb_cloud_cluster_id: var("TIDB_CLOUD_CLUSTER_ID"),
            tidb_cloud_api_key_secret_arn: var("TIDB_CLOUD_API_KEY_SECRET_ARN"),
            tidb_cloud_api_url: var("TIDB_CLOUD_API_URL"),
            opt_in_tag_key: var("OPT_IN_TAG_KEY").unwrap_or_else(|| DEFAULT_OPT_IN_TAG_KEY.to_owned()),
            turn_table_name: var("TURN_TABLE_NAME"),
            stack_name,
            tidb_cloud_account_id,
            tidb_cloud_az_ids,
            connection_topic_arn: var("CONNECTION_TOPIC_ARN"),
            notification_topic_arn: var("NOTIFICATION_TOPIC_ARN"),
            provision_state_machine_arn: var("PROVISION_STATE_MACHINE_ARN"),
            dns_resolver,
        })
    }

    pub fn tidb_cloud_account_id(&self) -> Result<&str, StepError> {
        self.tidb_cloud_account_id.as_deref().ok_or_else(|| {
            StepError::Misconfigured("TiDB Cloud's account ID (TIDB_CLOUD_ACCOUNT_ID) is not set".into())
        })
    }

    pub fn turn_table_name(&self) -> Result<&str, StepError> {
        self.turn_table_name
            .as_deref()
            .ok_or_else(|| StepError::Misconfigured("the turn table (TURN_TABLE_NAME) is not set".into()))
    }

    /// The TiDB Cloud client, when the stack has an API key; built once per cold start, it reads
    /// the key on first use.
    pub fn tidb_cloud(&self, sdk: &aws_config::SdkConfig) -> Result<Option<crate::tidb_cloud::TiDBCloud>, StepError> {
        let Some(secret) = &self.tidb_cloud_api_key_secret_arn else { return Ok(None) };
        let mut options = crate::tidb_cloud::ClientOptions::default();
        if let Some(url) = &self.tidb_cloud_api_url {
            options.base_url = url.clone();
        }
        crate::tidb_cloud::TiDBCloud::with_secret(sdk, secret, options).map(Some)
    }

    /// The TiDB Cloud cluster an instance opts into: its opt-in tag's value, unless that is a
    /// plain switch (`true`, `enabled`), then the stack's cluster, if any.
    pub fn cluster_for_tag(&self, tag_value: Option<&str>) -> Option<String> {
        match tag_value.map(str::trim) {
            Some(value) if !value.is_empty() && !["true", "enabled"].contains(&value.to_ascii_lowercase().as_str()) => {
                Some(value.to_owned())
            }
            _ => self.tidb_cloud_cluster_id.clone(),
        }
    }

    /// The key owning and naming the load balancer, its security group, the endpoint service and
    /// TiDB Cloud's connection for database `key` in `vpc_id`.
    pub fn shared_key(&self, key: &str, vpc_id: &str) -> String {
        match self.sharing {
            Sharing::PerDatabase => key.to_owned(),
            Sharing::PerVpc => crate::naming::vpc_key(vpc_id),
        }
    }

    pub fn connection_topic_arn(&self) -> Result<&str, StepError> {
        self.connection_topic_arn
            .as_deref()
            .ok_or_else(|| StepError::Misconfigured("the connection topic (CONNECTION_TOPIC_ARN) is not set".into()))
    }
}

/// A listener port range, `first-last`.
fn port_range(raw: &str) -> Result<(u16, u16), StepError> {
    let bad = || StepError::Misconfigured(format!("LISTENER_PORT_RANGE '{raw}' is not a port range like 3306-3999"));
    let (first, last) = raw.trim().split_once('-').ok_or_else(bad)?;
    let port = |p: &str| p.trim().parse::<u16>().ok().filter(|p| *p > 0);
    match (port(first), port(last)) {
        (Some(first), Some(last)) if first <= last => Ok((first, last)),
        _ => Err(bad()),
    }
}

/// An AWS account ID: exactly 12 digits.
pub fn account_id(raw: &str) -> Result<String, StepError> {
    let id = raw.trim();
    if id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit()) {
        Ok(id.to_owned())
    } else {
        Err(StepError::Misconfigured(format!("'{id}' is not a 12-digit AWS account ID")))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, StepError> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_lookup(|key| vars.get(key).cloned())
    }

    #[test]
    fn reads_the_template_environment() {
        let s = settings(&[
            ("STACK_NAME", "tidb-privatelink"),
            ("TIDB_CLOUD_ACCOUNT_ID", "380838443567"),
            ("TIDB_CLOUD_AZ_IDS", "use1-az1, use1-az4,,"),
            ("DNS_RESOLVER", "127.0.0.1:5353"),
        ])
        .unwrap();
        assert_eq!(s.tidb_cloud_az_ids, ["use1-az1", "use1-az4"]);
        assert_eq!(s.tidb_cloud_account_id().unwrap(), "380838443567");
        assert_eq!(s.dns_resolver.unwrap().port(), 5353);
        assert_eq!(s.connection_topic_arn().unwrap_err().name(), "Misconfigured");
        assert_eq!((s.sharing, s.listener_ports), (Sharing::PerDatabase, DEFAULT_LISTENER_PORTS));
        let shared = settings(&[
            ("STACK_NAME", "s"),
            ("LOAD_BALANCER_SHARING", "per-vpc"),
            ("LISTENER_PORT_RANGE", "5000-5049"),
        ]);
        assert_eq!(shared.map(|s| (s.sharing, s.listener_ports)).unwrap(), (Sharing::PerVpc, (5000, 5049)));
    }

    #[test]
    fn the_tag_value_names_the_cluster_unless_it_is_a_switch() {
        let s = settings(&[("STACK_NAME", "s"), ("TIDB_CLOUD_CLUSTER_ID", "111")]).unwrap();
        assert_eq!(s.cluster_for_tag(Some("10140100115280519574")).as_deref(), Some("10140100115280519574"));
        assert_eq!(s.cluster_for_tag(Some("True")).as_deref(), Some("111"));
        assert_eq!(s.cluster_for_tag(Some("enabled")).as_deref(), Some("111"));
        assert_eq!(s.cluster_for_tag(None).as_deref(), Some("111"));
        let without = settings(&[("STACK_NAME", "s")]).unwrap();
        assert_eq!(without.cluster_for_tag(Some("true")), None);
    }

    #[test]
    fn rejects_bad_values_by_name() {
        assert_eq!(settings(&[]).unwrap_err().name(), "Misconfigured");
        let bad_account = settings(&[("STACK_NAME", "s"), ("TIDB_CLOUD_ACCOUNT_ID", "12345")]).unwrap_err();
        assert!(bad_account.to_string().contains("12-digit"), "{bad_account}");
        let bad_sharing = settings(&[("STACK_NAME", "s"), ("LOAD_BALANCER_SHARING", "per-account")]).unwrap_err();
        assert_eq!(bad_sharing.name(), "Misconfigured");
        for bad in ["4000", "4000-3999", "0-10", "a-b", "3306-70000"] {
            let err = settings(&[("STACK_NAME", "s"), ("LISTENER_PORT_RANGE", bad)]).unwrap_err();
            assert_eq!(err.name(), "Misconfigured", "{bad}");
        }
        let bad_dns = settings(&[("STACK_NAME", "s"), ("DNS_RESOLVER", "localhost")]).unwrap_err();
        assert_eq!(bad_dns.name(), "Misconfigured");
    }
}
