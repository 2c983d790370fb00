//! `per-vpc` sharing against the emulator, step by step as the state machines run them: the
//! databases of one VPC share a load balancer, its security group and the endpoint service, each
//! with its own target group and a listener on a port of its own; a teardown removes only what
//! no other database uses, and the last one everything.

mod common;

use common::*;
use tidb_privatelink::settings::Sharing;
use tidb_privatelink::Settings;

fn per_vpc(network: &Network) -> Settings {
    Settings { sharing: Sharing::PerVpc, listener_ports: (3306, 3399), ..network.settings() }
}

/// The kinds of what `managed_resources` lists, counted: `[("lb", 1), ("listener", 3), ...]`.
fn counts(resources: &[String]) -> Vec<(String, usize)> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for kind in resources.iter().map(|r| r.rsplitn(2, ' ').last().unwrap().to_owned()) {
        let kind = if kind.starts_with("db rule") { "db rule".to_owned() } else { kind };
        match counts.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => counts.push((kind, 1)),
        }
    }
    counts.sort();
    counts
}

fn count(resources: &[String], kind: &str) -> usize {
    counts(resources).into_iter().find(|(k, _)| k == kind).map_or(0, |(_, n)| n)
}

#[tokio::test]
async fn databases_of_a_vpc_share_one_load_balancer_until_the_last_goes() {
    let network = Network::new().await;
    let settings = per_vpc(&network);
    let mut documents = Vec::new();
    for id in ["orders-db", "billing-db", "ledger-db"] {
        let id = network.database(id, "mysql", false).await;
        documents.push((id.clone(), provision(&network, &settings, &id).await.unwrap()));
    }
    let shared = |pointer: &str| documents.iter().map(|(_, d)| str_of(d, pointer).to_owned()).collect::<Vec<_>>();
    for pointer in ["/load_balancer/arn", "/security_groups/nlb_security_group_id", "/endpoint_service/service_id"] {
        let values = shared(pointer);
        assert!(values.iter().all(|v| *v == values[0]), "{pointer} differs: {values:?}");
    }
    // Every database listens on 3306: the first keeps it, the others get the next free ports.
    let ports: Vec<u64> = documents.iter().map(|(_, d)| d["load_balancer"]["port"].as_u64().unwrap()).collect();
    assert_eq!(ports, [3306, 3307, 3308]);
    let resources = managed_resources(&network).await;
    // One rule on the DB security group: the three databases share it and their port.
    assert_eq!(
        counts(&resources),
        [
            ("db rule".into(), 1),
            ("lb".into(), 1),
            ("listener".into(), 3),
            ("service".into(), 1),
            ("sg".into(), 1),
            ("tg".into(), 3)
        ],
        "{resources:#?}"
    );

    // The first two go: their listeners and target groups with them, the shared parts stay.
    for (left, (id, document)) in documents.iter().take(2).enumerate() {
        let removed = deprovision(&network, &settings, id).await.unwrap();
        let resources = managed_resources(&network).await;
        let listeners_left = 3 - left - 1;
        assert_eq!(count(&resources, "listener"), listeners_left, "{removed:#}\n{resources:#?}");
        assert_eq!(count(&resources, "tg"), listeners_left, "{resources:#?}");
        for kind in ["lb", "sg", "service", "db rule"] {
            assert_eq!(count(&resources, kind), 1, "{kind} should stay for the others: {resources:#?}");
        }
        assert!(!resources.iter().any(|r| r.contains(str_of(document, "/target_group/arn"))), "{resources:#?}");
        assert!(!resources.iter().any(|r| r.contains(str_of(document, "/load_balancer/listener_arn"))));
    }
    // A teardown run again changes nothing.
    deprovision(&network, &settings, &documents[0].0).await.unwrap();
    assert_eq!(count(&managed_resources(&network).await, "listener"), 1);

    deprovision(&network, &settings, &documents[2].0).await.unwrap();
    let resources = managed_resources(&network).await;
    assert!(resources.is_empty(), "the last teardown leaves nothing: {resources:#?}");
}

#[tokio::test]
async fn a_freed_port_is_taken_again_and_a_database_keeps_its_port() {
    let network = Network::new().await;
    let settings = per_vpc(&network);
    let mut ids = Vec::new();
    for id in ["first-db", "second-db"] {
        let id = network.database(id, "mysql", false).await;
        provision(&network, &settings, &id).await.unwrap();
        ids.push(id);
    }
    // Provisioning again keeps the database's listener and port.
    let again = provision(&network, &settings, &ids[1]).await.unwrap();
    assert_eq!(again["load_balancer"]["port"], 3307);
    deprovision(&network, &settings, &ids[0]).await.unwrap();
    let third = network.database("third-db", "mysql", false).await;
    let document = provision(&network, &settings, &third).await.unwrap();
    assert_eq!(document["load_balancer"]["port"], 3306, "3306 is free again");
    assert_eq!(count(&managed_resources(&network).await, "listener"), 2);
}

#[tokio::test]
async fn a_full_port_range_is_a_named_error() {
    let network = Network::new().await;
    let settings = Settings { listener_ports: (3306, 3306), ..per_vpc(&network) };
    let first = network.database("first-db", "mysql", false).await;
    provision(&network, &settings, &first).await.unwrap();
    let second = network.database("second-db", "mysql", false).await;
    let error = provision(&network, &settings, &second).await.unwrap_err();
    assert_eq!(error.name(), "InvalidInput", "{error}");
    assert!(error.to_string().contains("ListenerPortRange"), "{error}");
}

/// The groups the load balancer's security group sends to, and those admitting it.
async fn rules_of(network: &Network, nlb_group: &str, db_groups: &[&str]) -> (Vec<String>, Vec<String>) {
    let ec2 = aws_sdk_ec2::Client::new(&network.sdk);
    let described = ec2.describe_security_groups().group_ids(nlb_group).send().await.unwrap();
    let egress = described.security_groups()[0].ip_permissions_egress().iter();
    let towards: Vec<String> =
        egress.flat_map(|p| p.user_id_group_pairs()).filter_map(|g| g.group_id()).map(str::to_owned).collect();
    let mut admitting = Vec::new();
    for group in db_groups {
        let described = ec2.describe_security_groups().group_ids(*group).send().await.unwrap();
        let pairs = described.security_groups()[0].ip_permissions().iter().flat_map(|p| p.user_id_group_pairs());
        if pairs.filter_map(|g| g.group_id()).any(|g| g == nlb_group) {
            admitting.push(group.to_string());
        }
    }
    (towards, admitting)
}

#[tokio::test]
async fn a_database_that_goes_takes_the_rules_no_other_needs() {
    let network = Network::new().await;
    let settings = per_vpc(&network);
    let ec2 = aws_sdk_ec2::Client::new(&network.sdk);
    let reports_group = ec2
        .create_security_group()
        .group_name("reports-db")
        .description("database")
        .vpc_id(&network.vpc_id)
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_owned();
    let orders = network.database("orders-db", "mysql", false).await;
    let reports = network.database("reports-db", "mysql", false).await;
    aws_sdk_rds::Client::new(&network.sdk)
        .modify_db_instance()
        .db_instance_identifier(&reports)
        .vpc_security_group_ids(&reports_group)
        .apply_immediately(true)
        .send()
        .await
        .unwrap();
    let document = provision(&network, &settings, &orders).await.unwrap();
    provision(&network, &settings, &reports).await.unwrap();
    let nlb_group = str_of(&document, "/security_groups/nlb_security_group_id").to_owned();
    let groups = [network.db_security_group_id.as_str(), reports_group.as_str()];
    let (mut towards, admitting) = rules_of(&network, &nlb_group, &groups).await;
    towards.sort();
    let mut both = groups.map(str::to_owned).to_vec();
    both.sort();
    assert_eq!((towards, admitting.len()), (both, 2));

    deprovision(&network, &settings, &reports).await.unwrap();
    let after = rules_of(&network, &nlb_group, &groups).await;
    let orders_only = vec![network.db_security_group_id.clone()];
    assert_eq!(after, (orders_only.clone(), orders_only), "the reports database's rules go, the orders one's stay");
}

#[tokio::test]
async fn a_database_linked_on_its_own_load_balancer_is_refused_until_deprovisioned() {
    let network = Network::new().await;
    let id = network.database("orders-db", "mysql", false).await;
    let own = provision(&network, &network.settings(), &id).await.unwrap();
    // What the state machine's RecordOnDatabase tags the instance with.
    let rds = aws_sdk_rds::Client::new(&network.sdk);
    let tag = aws_sdk_rds::types::Tag::builder().key("tidb-privatelink:load-balancer");
    rds.add_tags_to_resource()
        .resource_name(str_of(&own, "/database/arn"))
        .tags(tag.value(str_of(&own, "/load_balancer/name")).build())
        .send()
        .await
        .unwrap();
    let before = managed_resources(&network).await;

    let settings = per_vpc(&network);
    let error = provision(&network, &settings, &id).await.unwrap_err();
    assert_eq!(error.name(), "ResourceConflict", "{error}");
    assert!(error.to_string().contains("deprovision the database"), "{error}");
    assert_eq!(managed_resources(&network).await, before, "nothing is created");

    // The per-vpc teardown removes the database's own link too.
    deprovision(&network, &settings, &id).await.unwrap();
    let after = managed_resources(&network).await;
    assert!(after.is_empty(), "{after:#?}");
}

#[tokio::test]
async fn the_51st_database_of_a_vpc_gets_a_second_load_balancer_which_goes_with_it() {
    let network = Network::new().await;
    let settings = per_vpc(&network);
    let mut first = Vec::new();
    for n in 0..50 {
        let id = network.database(&format!("db-{n}"), "mysql", false).await;
        first.push(provision(&network, &settings, &id).await.unwrap());
    }
    let last = network.database("db-50", "mysql", false).await;
    let document = provision(&network, &settings, &last).await.unwrap();
    // AWS allows 50 listeners per NLB: the 51st database opens the VPC's second NLB and service.
    let arns = |pointer: &str| (str_of(&first[0], pointer).to_owned(), str_of(&document, pointer).to_owned());
    for pointer in ["/load_balancer/arn", "/endpoint_service/service_id"] {
        let (first_one, second_one) = arns(pointer);
        assert_ne!(first_one, second_one, "{pointer}");
    }
    assert_eq!(arns("/security_groups/nlb_security_group_id").0, arns("/security_groups/nlb_security_group_id").1);
    assert_eq!(document["load_balancer"]["port"], 3306, "a new NLB: the database's own port is free");
    let resources = managed_resources(&network).await;
    assert_eq!((count(&resources, "lb"), count(&resources, "service"), count(&resources, "listener")), (2, 2, 51));

    deprovision(&network, &settings, &last).await.unwrap();
    let resources = managed_resources(&network).await;
    assert_eq!(
        (count(&resources, "lb"), count(&resources, "service"), count(&resources, "listener"), count(&resources, "sg")),
        (1, 1, 50, 1),
        "{resources:#?}"
    );
    assert!(!resources.iter().any(|r| r.contains(str_of(&document, "/load_balancer/arn"))));
}

/// The zones the load balancer is enabled in, by name.
async fn zones_of(network: &Network, load_balancer_arn: &str) -> Vec<String> {
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&network.sdk);
    let described = elb.describe_load_balancers().load_balancer_arns(load_balancer_arn).send().await.unwrap();
    let mut zones: Vec<String> = described.load_balancers()[0]
        .availability_zones()
        .iter()
        .filter_map(|z| z.zone_name().map(str::to_owned))
        .collect();
    zones.sort();
    zones
}

#[tokio::test]
async fn a_database_in_a_new_zone_adds_it_to_the_shared_load_balancer() {
    let network = Network::new().await;
    let settings = per_vpc(&network);
    // TiDB Cloud shares us-east-1b and 1c (use1-az1, az2); this database's subnet group too.
    let rds = aws_sdk_rds::Client::new(&network.sdk);
    let b_and_c: Vec<String> = network.subnets[1..].iter().map(|(id, _, _)| id.clone()).collect();
    rds.create_db_subnet_group()
        .db_subnet_group_name("b-and-c")
        .db_subnet_group_description("two zones")
        .set_subnet_ids(Some(b_and_c))
        .send()
        .await
        .unwrap();
    rds.create_db_instance()
        .db_instance_identifier("orders-db")
        .engine("mysql")
        .engine_version("8.0.35")
        .db_instance_class("db.t3.micro")
        .allocated_storage(20)
        .master_username("admin")
        .master_user_password("not-a-real-secret-1")
        .db_subnet_group_name("b-and-c")
        .vpc_security_group_ids(&network.db_security_group_id)
        .availability_zone("us-east-1b")
        .send()
        .await
        .unwrap();
    let first = provision(&network, &settings, "orders-db").await.unwrap();
    let arn = str_of(&first, "/load_balancer/arn").to_owned();
    assert_eq!(zones_of(&network, &arn).await, ["us-east-1b", "us-east-1c"]);
    // A database whose subnet group also spans us-east-1a (where it may fail over) adds that zone.
    let id = network.database_in_zone("billing-db", "us-east-1a").await;
    let second = provision(&network, &settings, &id).await.unwrap();
    assert_eq!(str_of(&second, "/load_balancer/arn"), arn);
    assert_eq!(zones_of(&network, &arn).await, ["us-east-1a", "us-east-1b", "us-east-1c"]);
    // Zones never go: billing-db's teardown leaves all three.
    deprovision(&network, &settings, &id).await.unwrap();
    assert_eq!(zones_of(&network, &arn).await, ["us-east-1a", "us-east-1b", "us-east-1c"]);
}
