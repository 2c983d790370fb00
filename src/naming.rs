//! Names and tags of everything the product creates. AWS is the database: a step finds its
//! earlier work by these deterministic names and tags, so a retried step never duplicates.

use crate::StepError;

/// Tag naming the stack that manages a resource.
pub const MANAGED_BY_TAG: &str = "tidb-privatelink:managed-by";
/// Tag naming the RDS instance a resource serves.
pub const DB_INSTANCE_TAG: &str = "tidb-privatelink:db-instance";
/// Tag naming the RDS DB cluster a resource serves: a cluster and an instance of the same name
/// are told apart by the tag's key.
pub const DB_CLUSTER_TAG: &str = "tidb-privatelink:db-cluster";
/// How the workflows' key names a DB cluster: `cluster:<identifier>`, as in the cluster's ARN
/// (`arn:aws:rds:<region>:<account>:cluster:<identifier>`); an instance's key is its identifier.
pub const CLUSTER_KEY_PREFIX: &str = "cluster:";
/// Tag naming the VPC whose databases share a resource (`per-vpc` sharing): the load balancer,
/// its security group and the endpoint service then belong to the VPC, not to one database.
pub const VPC_TAG: &str = "tidb-privatelink:vpc";
/// How a key names a VPC's shared parts: `vpc:<vpc-id>`.
pub const VPC_KEY_PREFIX: &str = "vpc:";
/// Tag on the RDS database naming the load balancer that serves it (step 9 records it).
pub const LOAD_BALANCER_TAG: &str = "tidb-privatelink:load-balancer";
/// Tag on the RDS database naming its listener's port on the load balancer.
pub const PORT_TAG: &str = "tidb-privatelink:port";
/// Tag on a target group naming the database's security group, which the load balancer's group
/// sends to: a shared group's rule goes once no target group needs it.
pub const DB_SECURITY_GROUP_TAG: &str = "tidb-privatelink:db-security-group";
/// Tag on an endpoint service naming the endpoint TiDB Cloud created for it, once known: the
/// acceptor then accepts that endpoint only.
pub const TIDB_CLOUD_ENDPOINT_TAG: &str = "tidb-privatelink:tidb-cloud-endpoint";
/// Tag on an endpoint service naming the AWS account whose endpoints the acceptor accepts.
pub const TIDB_CLOUD_ACCOUNT_TAG: &str = "tidb-privatelink:tidb-cloud-account";
/// Tag on an endpoint service naming the TiDB Cloud cluster linked to it, for the teardown.
pub const TIDB_CLOUD_CLUSTER_TAG: &str = "tidb-privatelink:tidb-cloud-cluster";
/// Tag on a target group naming the unhealthy target sync-targets last told the notification
/// topic about (`<address> <state> <reason>`), so that it is told once per change, not per run.
pub const TARGET_NOT_HEALTHY_TAG: &str = "tidb-privatelink:target-not-healthy";
/// Every name starts with this, which lets IAM policies scope ELB actions by name.
pub const NAME_PREFIX: &str = "tidbpl-";

/// AWS's limit for target group and load balancer names.
const MAX_NAME_LEN: usize = 32;
const HASH_LEN: usize = 10;

/// Checks an RDS DB instance identifier (1-63 letters, digits or hyphens, starting with a letter,
/// no trailing or doubled hyphen) and returns it lower-cased, as RDS stores it.
pub fn db_instance_identifier(raw: &str) -> Result<String, StepError> {
    let id = raw.trim().to_ascii_lowercase();
    let valid = (1..=63).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !id.ends_with('-')
        && !id.contains("--");
    if valid {
        Ok(id)
    } else {
        Err(StepError::InvalidInput(format!(
            "'{raw}' is not an RDS DB instance identifier (1-63 letters, digits or hyphens, starting with a letter)"
        )))
    }
}

/// The RDS database a workflow serves: an instance, or an Aurora MySQL / Multi-AZ DB cluster.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DatabaseRef {
    Instance(String),
    Cluster(String),
}

impl DatabaseRef {
    /// Reads a workflow key (`orders` for an instance, `cluster:orders` for a cluster), checking
    /// and lower-casing the identifier as RDS stores it.
    pub fn parse(key: &str) -> Result<Self, StepError> {
        match key.trim().strip_prefix(CLUSTER_KEY_PREFIX) {
            Some(cluster) => Ok(Self::Cluster(db_instance_identifier(cluster)?)),
            None => Ok(Self::Instance(db_instance_identifier(key)?)),
        }
    }

    /// The database an RDS ARN names (`...:db:<id>` or `...:cluster:<id>`), if it names one.
    pub fn from_arn(arn: &str) -> Option<Self> {
        match arn.split(':').collect::<Vec<_>>().as_slice() {
            ["arn", _, "rds", _, _, "db", id] => Some(Self::Instance(id.to_ascii_lowercase())),
            ["arn", _, "rds", _, _, "cluster", id] => Some(Self::Cluster(id.to_ascii_lowercase())),
            _ => None,
        }
    }

    /// The key the workflows carry, and names and tags derive from.
    pub fn key(&self) -> String {
        match self {
            Self::Instance(id) => id.clone(),
            Self::Cluster(id) => format!("{CLUSTER_KEY_PREFIX}{id}"),
        }
    }

    pub fn identifier(&self) -> &str {
        match self {
            Self::Instance(id) | Self::Cluster(id) => id,
        }
    }

    /// The ownership tag naming this database: key and value.
    pub fn tag(&self) -> (&'static str, &str) {
        match self {
            Self::Instance(id) => (DB_INSTANCE_TAG, id),
            Self::Cluster(id) => (DB_CLUSTER_TAG, id),
        }
    }
}

/// As messages name it: `instance 'orders'`, `DB cluster 'orders'`.
impl std::fmt::Display for DatabaseRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Instance(id) => write!(f, "instance '{id}'"),
            Self::Cluster(id) => write!(f, "DB cluster '{id}'"),
        }
    }
}

/// The partition (`aws`, `aws-cn`, `aws-us-gov`) an ARN lives in.
pub fn partition_of(arn: &str) -> Result<&str, StepError> {
    match arn.split(':').collect::<Vec<_>>().as_slice() {
        ["arn", partition, ..] if !partition.is_empty() => Ok(partition),
        _ => Err(StepError::InvalidInput(format!("'{arn}' is not an ARN"))),
    }
}

/// The principal that stands for a whole account, in the given partition.
pub fn account_root(partition: &str, account_id: &str) -> String {
    format!("arn:{partition}:iam::{account_id}:root")
}

/// The name shared by the target group, load balancer and security group of one database:
/// `tidbpl-<readable prefix>-<hash of the whole key>`, at most 32 characters of `[a-z0-9-]`. The
/// hash keeps identifiers that share a long prefix apart, and a cluster (key `cluster:<id>`)
/// apart from an instance named `cluster-<id>`.
pub fn resource_name(key: &str) -> String {
    let room = MAX_NAME_LEN - NAME_PREFIX.len() - 1 - HASH_LEN;
    let readable: String = key.chars().map(|c| if c == ':' { '-' } else { c }).take(room).collect();
    format!("{NAME_PREFIX}{}-{}", readable.trim_end_matches('-'), short_hash(key))
}

/// The key naming a VPC's shared parts (`per-vpc` sharing): its turn, its load balancers'
/// security group, and its first load balancer and endpoint service.
pub fn vpc_key(vpc_id: &str) -> String {
    vpc_load_balancer_key(vpc_id, 1)
}

/// How many load balancers the databases of one VPC may share: 50 listeners each (AWS's fixed
/// quota), so 500 databases per VPC.
pub const MAX_LOAD_BALANCERS_PER_VPC: u32 = 10;

/// The key of a VPC's `n`-th load balancer and its endpoint service (from 1): `vpc:<id>`, then
/// `vpc:<id>/<n>`, made once the ones before it hold 50 listeners each.
pub fn vpc_load_balancer_key(vpc_id: &str, n: u32) -> String {
    match n {
        1 => format!("{VPC_KEY_PREFIX}{vpc_id}"),
        n => format!("{VPC_KEY_PREFIX}{vpc_id}/{n}"),
    }
}

/// The VPC a [`VPC_TAG`] value names: `vpc-...` for its first load balancer, `vpc-.../<n>` after.
pub fn vpc_of_tag(value: &str) -> &str {
    value.split_once('/').map_or(value, |(vpc_id, _)| vpc_id)
}

/// A short, stable digest of `input` (10 hex digits), for names and idempotency tokens.
pub fn short_hash(input: &str) -> String {
    format!("{:016x}", fnv1a(input.as_bytes()))[..HASH_LEN].to_owned()
}

/// FNV-1a: tiny, stable across Rust versions and platforms (unlike `DefaultHasher`).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3))
}

/// The tags that mark a resource as this stack's work for one RDS database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    pub stack_name: String,
    /// The database's workflow key (see [`DatabaseRef::key`]).
    pub identifier: String,
}

impl Ownership {
    pub fn new(stack_name: &str, key: &str) -> Self {
        Self { stack_name: stack_name.to_owned(), identifier: key.to_owned() }
    }

    /// Key/value pairs to put on every created resource: the stack, and the instance, cluster or
    /// VPC.
    pub fn tags(&self) -> [(&'static str, &str); 2] {
        let owner = if let Some(cluster) = self.identifier.strip_prefix(CLUSTER_KEY_PREFIX) {
            (DB_CLUSTER_TAG, cluster)
        } else if let Some(vpc) = self.identifier.strip_prefix(VPC_KEY_PREFIX) {
            (VPC_TAG, vpc)
        } else {
            (DB_INSTANCE_TAG, self.identifier.as_str())
        };
        [(MANAGED_BY_TAG, self.stack_name.as_str()), owner]
    }

    /// The owner, as messages name it: a database, or the VPC whose databases share the parts.
    pub fn database(&self) -> String {
        if let Some(vpc) = self.identifier.strip_prefix(VPC_KEY_PREFIX) {
            return format!("the databases of VPC {vpc}");
        }
        match self.identifier.strip_prefix(CLUSTER_KEY_PREFIX) {
            Some(cluster) => DatabaseRef::Cluster(cluster.to_owned()),
            None => DatabaseRef::Instance(self.identifier.clone()),
        }
        .to_string()
    }

    /// Whether a resource's tags say it is ours.
    pub fn owns<'a>(&self, tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> bool {
        let mut found = 0;
        for (key, value) in tags {
            if self.tags().contains(&(key, value)) {
                found += 1;
            }
        }
        found == self.tags().len()
    }

    /// Human-readable reason a resource is not ours, for [`StepError::ResourceConflict`].
    pub fn mismatch<'a>(&self, tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
        let tags: Vec<(&str, &str)> = tags.into_iter().collect();
        let value = |key: &str| tags.iter().find(|(k, _)| *k == key).map(|(_, v)| *v).unwrap_or("<none>");
        let [_, (database_tag, _)] = self.tags();
        format!(
            "it is not this stack's (tag {MANAGED_BY_TAG} is '{}', {database_tag} is '{}'); rename or delete it, then run the workflow again",
            value(MANAGED_BY_TAG),
            value(database_tag)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_principals_follow_the_partition_of_the_database() {
        let partition = partition_of("arn:aws-cn:rds:cn-north-1:123456789012:db:orders").unwrap();
        assert_eq!(account_root(partition, "380838443567"), "arn:aws-cn:iam::380838443567:root");
        assert_eq!(partition_of("arn:aws:rds:us-east-1:1:db:x").unwrap(), "aws");
        assert_eq!(partition_of("").unwrap_err().name(), "InvalidInput");
    }

    fn is_valid_aws_name(name: &str) -> bool {
        name.len() <= 32
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !name.starts_with('-')
            && !name.ends_with('-')
    }

    #[test]
    fn names_are_readable_and_within_aws_limits() {
        let name = resource_name("orders-db");
        assert!(name.starts_with("tidbpl-orders-db-"), "{name}");
        assert!(is_valid_aws_name(&name), "{name}");
    }

    #[test]
    fn a_63_character_identifier_fits() {
        let id = format!("a{}", "b".repeat(62));
        let name = resource_name(&db_instance_identifier(&id).unwrap());
        assert_eq!(name.len(), 32);
        assert!(is_valid_aws_name(&name), "{name}");
    }

    #[test]
    fn identifiers_sharing_their_first_40_characters_get_different_names() {
        let shared = format!("prod-{}", "x".repeat(35));
        let a = resource_name(&format!("{shared}-replica-a"));
        let b = resource_name(&format!("{shared}-replica-b"));
        assert_ne!(a, b);
        assert!(is_valid_aws_name(&a) && is_valid_aws_name(&b), "{a} {b}");
    }

    #[test]
    fn a_hyphen_at_the_cut_is_dropped() {
        // The readable part is 14 characters; the 14th here is a hyphen.
        let name = resource_name("abcdefghijklm-nopq");
        assert!(name.starts_with("tidbpl-abcdefghijklm-"), "{name}");
        assert!(!name.contains("--"), "{name}");
        assert!(is_valid_aws_name(&name), "{name}");
    }

    #[test]
    fn names_are_stable_across_runs() {
        // A changed hash would orphan every resource already created: pin it.
        assert_eq!(resource_name("orders-db"), "tidbpl-orders-db-950697f645");
        assert_eq!(fnv1a(b"a"), 0xaf63dc4c8601ec8c);
    }

    #[test]
    fn identifiers_are_validated_and_lower_cased() {
        assert_eq!(db_instance_identifier("Orders-DB").unwrap(), "orders-db");
        for bad in ["", "1db", "db-", "db--x", "db_x", &"a".repeat(64), "db x"] {
            let err = db_instance_identifier(bad).unwrap_err();
            assert_eq!(err.name(), "InvalidInput", "{bad}");
        }
    }

    #[test]
    fn an_instance_and_a_cluster_of_the_same_name_never_share_names_or_tags() {
        let instance = DatabaseRef::parse("orders").unwrap();
        let cluster = DatabaseRef::parse("cluster:Orders").unwrap();
        assert_eq!((instance.key(), cluster.key()), ("orders".to_owned(), "cluster:orders".to_owned()));
        assert_ne!(resource_name(&cluster.key()), resource_name(&instance.key()));
        // Nor with an instance whose identifier reads like the cluster's key.
        assert_ne!(resource_name(&cluster.key()), resource_name("cluster-orders"));
        assert!(is_valid_aws_name(&resource_name(&cluster.key())));
        let (a, b) = (Ownership::new("stack", &instance.key()), Ownership::new("stack", &cluster.key()));
        assert_eq!(b.tags(), [(MANAGED_BY_TAG, "stack"), (DB_CLUSTER_TAG, "orders")]);
        assert!(!a.owns(b.tags()) && !b.owns(a.tags()));
        assert_eq!(b.database(), "DB cluster 'orders'");
        assert_eq!(cluster.tag(), (DB_CLUSTER_TAG, "orders"));
        assert_eq!(DatabaseRef::parse("cluster:").unwrap_err().name(), "InvalidInput");
    }

    #[test]
    fn a_vpc_owns_its_shared_parts_by_its_own_tag() {
        let vpc = Ownership::new("stack", &vpc_key("vpc-0abc"));
        assert_eq!(vpc.tags(), [(MANAGED_BY_TAG, "stack"), (VPC_TAG, "vpc-0abc")]);
        assert!(!vpc.owns(Ownership::new("stack", "vpc-0abc").tags()));
        assert_eq!(vpc.database(), "the databases of VPC vpc-0abc");
        // No RDS identifier reads like a VPC key (they have no colon), so names never collide.
        assert_ne!(resource_name(&vpc_key("vpc-0abc")), resource_name("vpc-vpc-0abc"));
        assert!(is_valid_aws_name(&resource_name(&vpc_key("vpc-0123456789abcdef0"))));
        let second = Ownership::new("stack", &vpc_load_balancer_key("vpc-0abc", 2));
        assert_eq!(second.tags(), [(MANAGED_BY_TAG, "stack"), (VPC_TAG, "vpc-0abc/2")]);
        assert_eq!([vpc_of_tag(vpc.tags()[1].1), vpc_of_tag(second.tags()[1].1)], ["vpc-0abc"; 2]);
        assert!(!vpc.owns(second.tags()) && !second.owns(vpc.tags()));
        assert_ne!(resource_name(&second.identifier), resource_name(&vpc.identifier));
    }

    #[test]
    fn arns_name_instances_and_clusters() {
        assert_eq!(
            DatabaseRef::from_arn("arn:aws:rds:us-east-1:1:cluster:Orders"),
            Some(DatabaseRef::Cluster("orders".into()))
        );
        assert_eq!(
            DatabaseRef::from_arn("arn:aws:rds:us-east-1:1:db:orders"),
            Some(DatabaseRef::Instance("orders".into()))
        );
        assert_eq!(DatabaseRef::from_arn("arn:aws:rds:us-east-1:1:snapshot:orders"), None);
    }

    #[test]
    fn ownership_needs_both_tags_to_match() {
        let ours = Ownership::new("stack", "db1");
        assert!(ours.owns([(MANAGED_BY_TAG, "stack"), (DB_INSTANCE_TAG, "db1"), ("Name", "x")]));
        assert!(!ours.owns([(MANAGED_BY_TAG, "stack"), (DB_INSTANCE_TAG, "db2")]));
        assert!(!ours.owns([(MANAGED_BY_TAG, "stack")]));
        assert!(ours.mismatch([(MANAGED_BY_TAG, "other")]).contains("'other'"));
    }
}
