//! Step 4, security groups: the load balancer gets a security group of its own whose only egress
//! is the database port towards the database's security group, and the database's security group
//! admits that port from the load balancer's group only (never from an address range).

use aws_config::SdkConfig;
use aws_sdk_ec2::types::{Filter, IpPermission, IpRange, ResourceType, SecurityGroup, UserIdGroupPair};
use aws_sdk_ec2::Client;
use tracing::info;

use crate::naming::{resource_name, Ownership};
use crate::payload::{Database, SecurityGroups};
use crate::resources::{ec2_tags, security_group_id, tag_pairs};
use crate::{aws, Settings, Step, StepError};

#[derive(Debug, serde::Deserialize)]
pub struct Input {
    pub database: Database,
}

pub struct CreateSecurityGroups {
    ec2: Client,
    settings: Settings,
}

impl Step for CreateSecurityGroups {
    type Input = Input;
    type Output = SecurityGroups;

    fn new(sdk: &SdkConfig, settings: &Settings) -> Result<Self, StepError> {
        Ok(Self { ec2: Client::new(sdk), settings: settings.clone() })
    }

    async fn run(&self, input: Input) -> Result<SecurityGroups, StepError> {
        let db = input.database;
        let ownership = Ownership::new(&self.settings.stack_name, &db.identifier);
        // The load balancer's group is its owner's: the database's, or its VPC's.
        let shared = Ownership::new(&self.settings.stack_name, &self.settings.shared_key(&db.identifier, &db.vpc_id));
        let db_group_id = db.security_group_ids.first().cloned().ok_or_else(|| {
            StepError::InvalidInput(format!("RDS {} has no VPC security group", ownership.database()))
        })?;
        let name = resource_name(&shared.identifier);
        // Created first, found only when the name is taken: a first run, the usual one, reads nothing.
        let (nlb_group_id, egress) = match self.create(&name, &db, &shared).await? {
            // What AWS gives every new group: one rule allowing all outbound IPv4 traffic.
            Group::Created(id) => (id, vec![all_ipv4_traffic()]),
            Group::Found(group) if shared.owns(tag_pairs(group.tags())) => {
                (security_group_id(&group)?.to_owned(), group.ip_permissions_egress().to_vec())
            }
            Group::Found(group) => {
                return Err(StepError::ResourceConflict {
                    kind: "security group",
                    name,
                    identifier: shared.database(),
                    reason: shared.mismatch(tag_pairs(group.tags())),
                })
            }
        };
        self.restrict_egress(&nlb_group_id, &egress, &db_group_id, db.port).await?;
        self.admit_load_balancer(&db_group_id, &nlb_group_id, &db, &ownership).await?;
        Ok(SecurityGroups { nlb_security_group_id: nlb_group_id, db_security_group_id: db_group_id })
    }
}

/// The load balancer's group: made by this run (its rules are AWS's defaults), or found by name.
enum Group {
    Created(String),
    Found(SecurityGroup),
}

impl CreateSecurityGroups {
    async fn find(&self, vpc_id: &str, name: &str) -> Result<Option<SecurityGroup>, StepError> {
        let out = self
            .ec2
            .describe_security_groups()
            .filters(Filter::builder().name("vpc-id").values(vpc_id).build())
            .filters(Filter::builder().name("group-name").values(name).build())
            .send()
            .await
            .map_err(aws::fail("DescribeSecurityGroups"))?;
        Ok(out.security_groups().first().cloned())
    }

    /// The new group; or, when the name is taken (an earlier run made it, or a retried call whose
    /// first answer was lost), the group of that name, for the caller's ownership check.
    async fn create(&self, name: &str, db: &Database, ownership: &Ownership) -> Result<Group, StepError> {
        let created = self
            .ec2
            .create_security_group()
            .group_name(name)
            .description(match ownership.identifier == db.identifier {
                true => format!("TiDB Cloud PrivateLink load balancer for RDS instance {}", db.identifier),
                false => format!("TiDB Cloud PrivateLink load balancer for the databases of VPC {}", db.vpc_id),
            })
            .vpc_id(&db.vpc_id)
            .tag_specifications(ec2_tags(ResourceType::SecurityGroup, ownership, name))
            .send()
            .await;
        let created = match created {
            Err(e) if aws::error_code(&e) == Some("InvalidGroup.Duplicate") => {
                let found = self.find(&db.vpc_id, name).await?;
                let missing = || StepError::InvalidInput(format!("security group {name} exists but is not found"));
                return found.map(Group::Found).ok_or_else(missing);
            }
            other => other.map_err(aws::fail("CreateSecurityGroup"))?,
        };
        let group_id = aws::required(created.group_id(), "CreateSecurityGroup's GroupId")?;
        info!(owner = %ownership.identifier, security_group = group_id, "load balancer security group created");
        Ok(Group::Created(group_id.to_owned()))
    }

    /// A new group allows all egress; the load balancer only needs the database port.
    async fn restrict_egress(
        &self,
        group_id: &str,
        egress: &[IpPermission],
        db_group_id: &str,
        port: u16,
    ) -> Result<(), StepError> {
        // A duplicate, or a rule not found, is what the SDK's retry of a change meets when the
        // first try was applied but its answer lost: the work is done.
        if !egress.iter().any(|p| admits(p, port, db_group_id)) {
            let authorized = self
                .ec2
                .authorize_security_group_egress()
                .group_id(group_id)
                .ip_permissions(tcp_from_group(port, db_group_id, "to the RDS instance"))
                .send()
                .await;
            aws::unless_code(authorized, "InvalidPermission.Duplicate", "AuthorizeSecurityGroupEgress")?;
        }
        let open = |p: &IpPermission| {
            p.ip_protocol() == Some("-1") && p.ip_ranges().iter().any(|r| r.cidr_ip() == Some(ANYWHERE))
        };
        if egress.iter().any(open) {
            let revoked = self
                .ec2
                .revoke_security_group_egress()
                .group_id(group_id)
                .ip_permissions(all_ipv4_traffic())
                .send()
                .await;
            aws::unless_code(revoked, "InvalidPermission.NotFound", "RevokeSecurityGroupEgress")?;
            info!(security_group = group_id, "load balancer egress limited to the database port");
        }
        Ok(())
    }

    /// The database's group admits the port from the load balancer's group. Only this step adds
    /// rules naming that group, so AWS's duplicate answer means the rule is there: a read first
    /// would cost a call on every run to save one on a repeated run.
    async fn admit_load_balancer(
        &self,
        db_group_id: &str,
        nlb_group_id: &str,
        db: &Database,
        ownership: &Ownership,
    ) -> Result<(), StepError> {
        let rule_name = format!("{}-ingress", resource_name(&db.identifier));
        let result = self
            .ec2
            .authorize_security_group_ingress()
            .group_id(db_group_id)
            .ip_permissions(tcp_from_group(db.port, nlb_group_id, "TiDB Cloud PrivateLink load balancer"))
            .tag_specifications(ec2_tags(ResourceType::SecurityGroupRule, ownership, &rule_name))
            .send()
            .await;
        if aws::unless_code(result, "InvalidPermission.Duplicate", "AuthorizeSecurityGroupIngress")?.is_some() {
            info!(db_instance = %db.identifier, db_security_group = db_group_id, from = nlb_group_id, port = db.port, "database security group admits the load balancer");
        }
        Ok(())
    }
}

const ANYWHERE: &str = "0.0.0.0/0";

/// Every protocol to every IPv4 address.
fn all_ipv4_traffic() -> IpPermission {
    IpPermission::builder().ip_protocol("-1").ip_ranges(IpRange::builder().cidr_ip(ANYWHERE).build()).build()
}

fn tcp_from_group(port: u16, group_id: &str, description: &str) -> IpPermission {
    IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(i32::from(port))
        .to_port(i32::from(port))
        .user_id_group_pairs(UserIdGroupPair::builder().group_id(group_id).description(description).build())
        .build()
}

/// Whether a rule admits TCP `port` to or from security group `group_id`.
fn admits(permission: &IpPermission, port: u16, group_id: &str) -> bool {
    let port = i32::from(port);
    permission.ip_protocol() == Some("tcp")
        && permission.from_port().is_some_and(|from| from <= port)
        && permission.to_port().is_some_and(|to| to >= port)
        && permission.user_id_group_pairs().iter().any(|pair| pair.group_id() == Some(group_id))
}
