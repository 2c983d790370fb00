//! The provisioning steps against the emulator: each step, each named error, idempotency, and the
//! six steps chained in the order `statemachine/provision.asl.json` runs them, with everything
//! they create read back through the AWS API.

mod common;

use aws_sdk_ec2::types::Filter;
use aws_sdk_elasticloadbalancingv2::types::Tag as ElbTag;
use common::*;
use serde_json::{json, Value};
use tidb_privatelink::naming::{
    resource_name, DB_CLUSTER_TAG, DB_INSTANCE_TAG, MANAGED_BY_TAG, TIDB_CLOUD_ACCOUNT_TAG,
};
use tidb_privatelink::steps::endpoint_service::CreateEndpointService;
use tidb_privatelink::steps::health_check::CheckTargetHealth;
use tidb_privatelink::steps::inspect_database::InspectDatabase;
use tidb_privatelink::steps::load_balancer::CreateLoadBalancer;
use tidb_privatelink::steps::plan_zones::PlanZones;
use tidb_privatelink::steps::security_groups::CreateSecurityGroups;
use tidb_privatelink::steps::target_group::CreateTargetGroup;
use tidb_privatelink::StepError;

#[test]
fn the_state_machine_runs_the_steps_in_runbook_order() {
    let got: Vec<(String, String)> = provision_tasks();
    let expected = [
        ("InspectDatabaseFunctionArn", "database"),
        ("PlanZonesFunctionArn", "zones"),
        ("TargetGroupFunctionArn", "target_group"),
        ("SecurityGroupsFunctionArn", "security_groups"),
        ("LoadBalancerFunctionArn", "load_balancer"),
        ("TargetHealthFunctionArn", "target_health"),
        ("EndpointServiceFunctionArn", "endpoint_service"),
        ("ConnectTiDBCloudFunctionArn", "tidb_cloud"),
    ];
    let expected: Vec<(String, String)> = expected.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn provisions_an_endpoint_service_for_a_mysql_instance() {
    let network = Network::new().await;
    let id = network.database("orders-db", "mysql", false).await;
    let document = provision(&network, &network.settings(), &id).await.unwrap();
    let ec2 = aws_sdk_ec2::Client::new(&network.sdk);
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&network.sdk);

    // Step 1: the address is the instance's network interface, inside the VPC.
    let db_ip = network.database_interface_ip().await;
    assert_eq!(str_of(&document, "/database/ip_address"), db_ip);
    assert!(db_ip.starts_with("10.42."), "{db_ip}");
    assert_eq!(document["database"]["port"], 3306);

    // Step 2: the two zones both sides share, by AZ ID (us-east-1b and 1c), and the DB subnet
    // group's third zone (us-east-1a), where the database can fail over to.
    let zones: Vec<(&str, &str, bool, bool)> = document["zones"]["subnets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["availability_zone_id"].as_str().unwrap(),
                s["availability_zone"].as_str().unwrap(),
                s["shared_with_tidb_cloud"].as_bool().unwrap(),
                s["database_zone"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        zones,
        [
            ("use1-az1", "us-east-1b", true, true),
            ("use1-az2", "us-east-1c", true, true),
            ("use1-az6", "us-east-1a", false, true)
        ]
    );
    let planned_subnets: Vec<String> = document["zones"]["subnets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["subnet_id"].as_str().unwrap().to_owned())
        .collect();

    // Step 3: the target group, read back.
    let tg_arn = str_of(&document, "/target_group/arn");
    let tgs = elb.describe_target_groups().target_group_arns(tg_arn).send().await.unwrap();
    let tg = &tgs.target_groups()[0];
    assert_eq!(tg.target_group_name(), Some(resource_name(&id).as_str()));
    assert_eq!(tg.protocol().map(|p| p.as_str()), Some("TCP"));
    assert_eq!(tg.port(), Some(3306));
    assert_eq!(tg.target_type().map(|t| t.as_str()), Some("ip"));
    assert_eq!(tg.vpc_id(), Some(network.vpc_id.as_str()));
    assert_eq!(tg.health_check_protocol().map(|p| p.as_str()), Some("TCP"));
    let targets = elb.describe_target_health().target_group_arn(tg_arn).send().await.unwrap();
    let target_ips: Vec<&str> = targets.target_health_descriptions().iter().filter_map(|d| d.target()?.id()).collect();
    assert_eq!(target_ips, [db_ip.as_str()]);
    let attributes = elb.describe_target_group_attributes().target_group_arn(tg_arn).send().await.unwrap();
    let attribute = |key: &str| {
        attributes.attributes().iter().find(|a| a.key() == Some(key)).and_then(|a| a.value()).map(str::to_owned)
    };
    assert_eq!(attribute("deregistration_delay.timeout_seconds").as_deref(), Some("0"));
    assert_eq!(attribute("deregistration_delay.connection_termination.enabled").as_deref(), Some("true"));
    assert_owned_elb(&elb, tg_arn, &id).await;

    // Step 4: the load balancer's group reaches only the database port of the DB's group, and the
    // DB's group admits that port from the load balancer's group only.
    let nlb_sg = str_of(&document, "/security_groups/nlb_security_group_id");
    let groups =
        ec2.describe_security_groups().group_ids(nlb_sg).group_ids(&network.db_security_group_id).send().await.unwrap();
    let nlb_group = groups.security_groups().iter().find(|g| g.group_id() == Some(nlb_sg)).unwrap();
    let db_group =
        groups.security_groups().iter().find(|g| g.group_id() == Some(network.db_security_group_id.as_str())).unwrap();
    let egress: Vec<_> = nlb_group
        .ip_permissions_egress()
        .iter()
        .map(|p| {
            (
                p.ip_protocol().unwrap(),
                p.from_port(),
                p.user_id_group_pairs().iter().filter_map(|g| g.group_id()).collect::<Vec<_>>(),
                p.ip_ranges().len(),
            )
        })
        .collect();
    assert_eq!(egress, [("tcp", Some(3306), vec![network.db_security_group_id.as_str()], 0)]);
    assert!(
        nlb_group.ip_permissions().is_empty(),
        "the load balancer's group needs no inbound rule: {:?}",
        nlb_group.ip_permissions()
    );
    let ingress: Vec<_> = db_group
        .ip_permissions()
        .iter()
        .map(|p| {
            (
                p.ip_protocol().unwrap(),
                p.from_port(),
                p.to_port(),
                p.user_id_group_pairs().iter().filter_map(|g| g.group_id()).collect::<Vec<_>>(),
                p.ip_ranges().len(),
            )
        })
        .collect();
    assert_eq!(ingress, [("tcp", Some(3306), Some(3306), vec![nlb_sg], 0)]);
    let nlb_tags: Vec<(&str, &str)> = nlb_group.tags().iter().map(|t| (t.key().unwrap(), t.value().unwrap())).collect();
    assert!(
        nlb_tags.contains(&(MANAGED_BY_TAG, STACK)) && nlb_tags.contains(&(DB_INSTANCE_TAG, id.as_str())),
        "{nlb_tags:?}"
    );

    // Step 5: an internal NLB in the planned subnets with that group, cross-zone on, PrivateLink
    // traffic exempt from inbound rules, and a TCP listener to the target group.
    let lb_arn = str_of(&document, "/load_balancer/arn");
    assert!(lb_arn.contains(":loadbalancer/net/"), "{lb_arn}");
    let lbs = elb.describe_load_balancers().load_balancer_arns(lb_arn).send().await.unwrap();
    let lb = &lbs.load_balancers()[0];
    assert_eq!(lb.r#type().map(|t| t.as_str()), Some("network"));
    assert_eq!(lb.scheme().map(|s| s.as_str()), Some("internal"));
    assert_eq!(lb.security_groups(), [nlb_sg.to_owned()]);
    assert_eq!(lb.enforce_security_group_inbound_rules_on_private_link_traffic(), Some("off"));
    let mut lb_subnets: Vec<String> =
        lb.availability_zones().iter().filter_map(|z| z.subnet_id()).map(str::to_owned).collect();
    lb_subnets.sort();
    let mut expected_subnets = planned_subnets.clone();
    expected_subnets.sort();
    assert_eq!(lb_subnets, expected_subnets);
    let lb_attributes = elb.describe_load_balancer_attributes().load_balancer_arn(lb_arn).send().await.unwrap();
    assert!(lb_attributes
        .attributes()
        .iter()
        .any(|a| a.key() == Some("load_balancing.cross_zone.enabled") && a.value() == Some("true")));
    let listeners = elb.describe_listeners().load_balancer_arn(lb_arn).send().await.unwrap();
    let listener: Vec<_> = listeners
        .listeners()
        .iter()
        .map(|l| {
            (
                l.port(),
                l.protocol().map(|p| p.as_str().to_owned()),
                l.default_actions()[0].target_group_arn().map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(listener, [(Some(3306), Some("TCP".to_owned()), Some(tg_arn.to_owned()))]);
    assert_owned_elb(&elb, lb_arn, &id).await;

    // Step 5, continued: provisioning went on once the load balancer reported the target healthy.
    assert_eq!(document["target_health"]["state"], "healthy");
    assert_eq!(str_of(&document, "/target_health/target"), format!("{db_ip}:3306"));
    let now = elb.describe_target_health().target_group_arn(tg_arn).send().await.unwrap();
    let now =
        now.target_health_descriptions()[0].target_health().and_then(|h| h.state()).map(|s| s.as_str().to_owned());
    assert_eq!(now.as_deref(), Some("healthy"));

    // Step 6: the endpoint service, read back with its permissions and notification.
    let service_id = str_of(&document, "/endpoint_service/service_id");
    let service_name = str_of(&document, "/endpoint_service/service_name");
    assert_eq!(service_name, format!("com.amazonaws.vpce.{REGION}.{service_id}"));
    let services = ec2.describe_vpc_endpoint_service_configurations().service_ids(service_id).send().await.unwrap();
    let service = &services.service_configurations()[0];
    assert_eq!(service.acceptance_required(), Some(true));
    assert_eq!(service.network_load_balancer_arns(), [lb_arn.to_owned()]);
    let service_tags: Vec<(&str, &str)> =
        service.tags().iter().map(|t| (t.key().unwrap(), t.value().unwrap())).collect();
    assert!(service_tags.contains(&(MANAGED_BY_TAG, STACK)) && service_tags.contains(&(DB_INSTANCE_TAG, id.as_str())));
    // Tagged when created, for the acceptor: whose endpoints to accept.
    assert!(service_tags.contains(&(TIDB_CLOUD_ACCOUNT_TAG, TIDB_CLOUD_ACCOUNT)), "{service_tags:?}");
    let permissions = ec2.describe_vpc_endpoint_service_permissions().service_id(service_id).send().await.unwrap();
    let principals: Vec<&str> = permissions.allowed_principals().iter().filter_map(|p| p.principal()).collect();
    assert_eq!(principals, [format!("arn:aws:iam::{TIDB_CLOUD_ACCOUNT}:root")]);
    let notifications = ec2
        .describe_vpc_endpoint_connection_notifications()
        .filters(Filter::builder().name("service-id").values(service_id).build())
        .send()
        .await
        .unwrap();
    let notification = &notifications.connection_notification_set()[0];
    assert_eq!(notifications.connection_notification_set().len(), 1);
    assert_eq!(notification.connection_notification_arn(), Some(network.topic_arn.as_str()));
    assert_eq!(
        notification.connection_notification_id(),
        Some(str_of(&document, "/endpoint_service/connection_notification_id"))
    );
    let mut events = notification.connection_events().to_vec();
    events.sort();
    assert_eq!(events, ["Accept", "Connect", "Delete", "Reject"]);
}

async fn assert_owned_elb(elb: &aws_sdk_elasticloadbalancingv2::Client, arn: &str, identifier: &str) {
    let described = elb.describe_tags().resource_arns(arn).send().await.unwrap();
    let tags: Vec<(&str, &str)> = described.tag_descriptions()[0]
        .tags()
        .iter()
        .map(|t: &ElbTag| (t.key().unwrap(), t.value().unwrap()))
        .collect();
    assert!(
        tags.contains(&(MANAGED_BY_TAG, STACK)) && tags.contains(&(DB_INSTANCE_TAG, identifier)),
        "{arn}: {tags:?}"
    );
}

#[tokio::test]
async fn running_the_workflow_again_creates_nothing_new() {
    let network = Network::new().await;
    let id = network.database("orders-db", "mysql", false).await;
    let first = provision(&network, &network.settings(), &id).await.unwrap();
    let created = managed_resources(&network).await;
    // sg, tg, lb, listener, service, and one rule on the DB's group.
    assert_eq!(created.len(), 6, "{created:#?}");
    let second = provision(&network, &network.settings(), &id).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(managed_resources(&network).await, created);
}

#[tokio::test]
async fn each_step_can_run_twice_in_a_row() {
    let network = Network::new().await;
    let id = network.database("orders-db", "mysql", false).await;
    let settings = network.settings();
    let document = provision(&network, &settings, &id).await.unwrap();
    let created = managed_resources(&network).await;
    let mut again = document.clone();
    let sdk = &network.sdk;
    for _ in 0..2 {
        run_step::<CreateTargetGroup>(&settings, sdk, &mut again, "target_group").await.unwrap();
        run_step::<CreateSecurityGroups>(&settings, sdk, &mut again, "security_groups").await.unwrap();
        run_step::<CreateLoadBalancer>(&settings, sdk, &mut again, "load_balancer").await.unwrap();
        run_step::<CreateEndpointService>(&settings, sdk, &mut again, "endpoint_service").await.unwrap();
    }
    assert_eq!(again, document);
    assert_eq!(managed_resources(&network).await, created);
}

async fn inspect(network: &Network, identifier: &str) -> Result<Value, StepError> {
    let mut document = json!({"db_instance_identifier": identifier});
    run_step::<InspectDatabase>(&network.settings(), &network.sdk, &mut document, "database").await
}

fn assert_named(result: Result<Value, StepError>, name: &str, message_part: &str) {
    let error = result.expect_err("the step should fail");
    assert_eq!(error.name(), name, "{error}");
    assert!(error.to_string().contains(message_part), "'{error}' should mention '{message_part}'");
}

#[tokio::test]
async fn inspect_names_each_unusable_database() {
    let network = Network::new().await;
    assert_named(inspect(&network, "no-such-db").await, "DatabaseNotFound", "'no-such-db'");
    assert_named(inspect(&network, "bad_identifier").await, "InvalidInput", "bad_identifier");

    let pg = network.database("billing-pg", "postgres", false).await;
    assert_named(inspect(&network, &pg).await, "UnsupportedEngine", "postgres");

    let public = network.database("public-db", "mysql", true).await;
    assert_named(inspect(&network, &public).await, "DatabaseAddressOutsideVpc", "publicly accessible");

    let stopped = network.database("stopped-db", "mariadb", false).await;
    aws_sdk_rds::Client::new(&network.sdk).stop_db_instance().db_instance_identifier(&stopped).send().await.unwrap();
    assert_named(inspect(&network, &stopped).await, "DatabaseNotAvailable", "'stopped'");

    // None of these failures created anything.
    assert!(managed_resources(&network).await.is_empty());
}

#[tokio::test]
async fn inspect_names_an_endpoint_that_does_not_resolve() {
    let network = Network::new().await;
    let id = network.database("orders-db", "mysql", false).await;
    let mut settings = network.settings();
    // A name server that answers nothing: nothing listens on this UDP port.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    settings.dns_resolver = Some(silent.local_addr().unwrap());
    drop(silent);
    let mut document = json!({"db_instance_identifier": id});
    let result = run_step::<InspectDatabase>(&settings, &network.sdk, &mut document, "database").await;
    assert_named(result, "DatabaseEndpointUnresolved", &id);
}

#[tokio::test]
async fn no_shared_zone_fails_naming_both_sides_and_creates_nothing() {
    let network = Network::new().await;
    let id = network.database("orders-db", "mysql", false).await;
    let mut settings = network.settings();
    settings.tidb_cloud_az_ids = vec!["use1-az4".into(), "use1-az5".into()];
    let result = provision(&network, &settings, &id).await.map(|_| Value::Null);
    assert_named(
        result,
        "NoCommonAvailabilityZone",
        "[use1-az1, use1-az2, use1-az6], TiDB Cloud uses [use1-az4, use1-az5]",
    );
    assert!(managed_resources(&network).await.is_empty());
}

#[tokio::test]
async fn long_identifiers_get_distinct_valid_names() {
    let network = Network::new().await;
    let shared = format!("warehouse-{}", "x".repeat(30));
    let a = network.database(&format!("{shared}-a"), "mysql", false).await;
    let b = network.database(&format!("{shared}-b"), "mysql", false).await;
    let longest = network.database(&format!("l{}", "9".repeat(62)), "mysql", false).await;
    let mut names = Vec::new();
    for id in [&a, &b, &longest] {
        let document = provision(&network, &network.settings(), id).await.unwrap();
        names.push(str_of(&document, "/target_group/name").to_owned());
        names.push(str_of(&document, "/load_balancer/name").to_owned());
    }
    assert_ne!(names[0], names[2]);
    assert!(names.iter().all(|n| n.len() <= 32), "{names:?}");
    let services =
        aws_sdk_ec2::Client::new(&network.sdk).describe_vpc_endpoint_service_configurations().send().await.unwrap();
    assert_eq!(services.service_configurations().len(), 3);
}

#[tokio::test]
async fn a_same_named_security_group_of_someone_else_is_a_conflict() {
    let network = Network::new().await;
    let id = network.database("orders-db", "mysql", false).await;
    let ec2 = aws_sdk_ec2::Client::new(&network.sdk);
    let create = ec2.create_security_group().group_name(resource_name(&id)).vpc_id(&network.vpc_id);
    create.description("someone else's").send().await.unwrap();
    // The step creates first; AWS's duplicate answer makes it read the group, which is not ours.
    let result = provision(&network, &network.settings(), &id).await.map(|_| Value::Null);
    assert_named(result, "ResourceConflict", "security group");
}

#[tokio::test]
async fn a_same_named_target_group_of_someone_else_is_a_conflict() {
    let network = Network::new().await;
    let id = network.database("orders-db", "mysql", false).await;
    aws_sdk_elasticloadbalancingv2::Client::new(&network.sdk)
        .create_target_group()
        .name(resource_name(&id))
        .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Tcp)
        .port(3306)
        .vpc_id(&network.vpc_id)
        .target_type(aws_sdk_elasticloadbalancingv2::types::TargetTypeEnum::Ip)
        .send()
        .await
        .unwrap();
    let result = provision(&network, &network.settings(), &id).await.map(|_| Value::Null);
    assert_named(result, "ResourceConflict", "not this stack's");
}

#[tokio::test]
async fn principals_added_by_hand_are_removed() {
    let network = Network::new().await;
    let id = network.database("orders-db", "mysql", false).await;
    let document = provision(&network, &network.settings(), &id).await.unwrap();
    let ec2 = aws_sdk_ec2::Client::new(&network.sdk);
    let service_id = str_of(&document, "/endpoint_service/service_id");
    ec2.modify_vpc_endpoint_service_permissions()
        .service_id(service_id)
        .add_allowed_principals("arn:aws:iam::111122223333:root")
        .send()
        .await
        .unwrap();
    provision(&network, &network.settings(), &id).await.unwrap();
    let permissions = ec2.describe_vpc_endpoint_service_permissions().service_id(service_id).send().await.unwrap();
    let principals: Vec<&str> = permissions.allowed_principals().iter().filter_map(|p| p.principal()).collect();
    assert_eq!(principals, [format!("arn:aws:iam::{TIDB_CLOUD_ACCOUNT}:root")]);
}

#[tokio::test]
async fn a_rerun_for_another_tidb_cloud_account_retags_and_repermits_the_service() {
    let network = Network::new().await;
    let id = network.database("orders-db", "mysql", false).await;
    let settings = network.settings();
    let mut document = provision(&network, &settings, &id).await.unwrap();
    let other = "999988887777";
    document["zones"]["tidb_cloud_account_id"] = json!(other);
    run_step::<CreateEndpointService>(&settings, &network.sdk, &mut document, "endpoint_service").await.unwrap();
    let ec2 = aws_sdk_ec2::Client::new(&network.sdk);
    let service_id = str_of(&document, "/endpoint_service/service_id");
    let services = ec2.describe_vpc_endpoint_service_configurations().service_ids(service_id).send().await.unwrap();
    let tags = services.service_configurations()[0].tags();
    let account = tags.iter().find(|t| t.key() == Some(TIDB_CLOUD_ACCOUNT_TAG)).and_then(|t| t.value());
    assert_eq!(account, Some(other));
    let permissions = ec2.describe_vpc_endpoint_service_permissions().service_id(service_id).send().await.unwrap();
    let principals: Vec<&str> = permissions.allowed_principals().iter().filter_map(|p| p.principal()).collect();
    assert_eq!(principals, [format!("arn:aws:iam::{other}:root")]);
}

/// The zones (by name) the load balancer of the provisioned `document` is enabled in.
async fn load_balancer_zones(network: &Network, document: &Value) -> Vec<String> {
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&network.sdk);
    let lbs =
        elb.describe_load_balancers().load_balancer_arns(str_of(document, "/load_balancer/arn")).send().await.unwrap();
    let mut zones: Vec<String> =
        lbs.load_balancers()[0].availability_zones().iter().filter_map(|z| z.zone_name()).map(str::to_owned).collect();
    zones.sort();
    zones
}

#[tokio::test]
async fn a_database_outside_tidb_clouds_zones_is_covered_by_the_load_balancer() {
    // us-east-1a is use1-az6, which TiDB Cloud does not use: the load balancer must still be
    // enabled there, or it never routes to the database.
    let network = Network::new().await;
    let id = network.database_in_zone("orders-db", "us-east-1a").await;
    let document = provision(&network, &network.settings(), &id).await.unwrap();
    assert_eq!(load_balancer_zones(&network, &document).await, ["us-east-1a", "us-east-1b", "us-east-1c"]);
    let health = aws_sdk_elasticloadbalancingv2::Client::new(&network.sdk)
        .describe_target_health()
        .target_group_arn(str_of(&document, "/target_group/arn"))
        .send()
        .await
        .unwrap();
    let states: Vec<(&str, Option<&str>)> = health
        .target_health_descriptions()
        .iter()
        .map(|d| (d.target().unwrap().id().unwrap(), d.target_health().and_then(|h| h.state()).map(|s| s.as_str())))
        .collect();
    assert_eq!(states, [(str_of(&document, "/database/ip_address"), Some("healthy"))]);
}

#[tokio::test]
async fn a_rerun_adds_the_zones_an_existing_load_balancer_lacks() {
    let network = Network::new().await;
    let id = network.database("orders-db", "mysql", false).await;
    let first = provision(&network, &network.settings(), &id).await.unwrap();
    assert_eq!(load_balancer_zones(&network, &first).await, ["us-east-1a", "us-east-1b", "us-east-1c"]);
    // TiDB Cloud's endpoint is connected: from now on no zone may be removed.
    let tidb_cloud = account(TIDB_CLOUD_ACCOUNT).await;
    request_connection(&tidb_cloud, str_of(&first, "/endpoint_service/service_name")).await;

    // The VPC gets a subnet in us-east-1d (use1-az4), a zone TiDB Cloud also uses.
    aws_sdk_ec2::Client::new(&network.sdk)
        .create_subnet()
        .vpc_id(&network.vpc_id)
        .cidr_block("10.42.4.0/24")
        .availability_zone("us-east-1d")
        .send()
        .await
        .unwrap();
    let second = provision(&network, &network.settings(), &id).await.unwrap();
    assert_eq!(load_balancer_zones(&network, &second).await, ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d"]);
    assert_eq!(str_of(&second, "/load_balancer/arn"), str_of(&first, "/load_balancer/arn"));
    assert_eq!(second["target_health"]["state"], "healthy");
    // And a third run changes nothing.
    let third = provision(&network, &network.settings(), &id).await.unwrap();
    assert_eq!(third, second);
}

#[tokio::test]
async fn a_target_the_health_checks_cannot_reach_fails_naming_the_reason_and_what_to_check() {
    let network = Network::new().await;
    let id = network.database("orders-db", "mysql", false).await;
    let settings = network.settings();
    let sdk = &network.sdk;
    let mut document = json!({"db_instance_identifier": id});
    run_step::<InspectDatabase>(&settings, sdk, &mut document, "database").await.unwrap();
    run_step::<PlanZones>(&settings, sdk, &mut document, "zones").await.unwrap();
    run_step::<CreateTargetGroup>(&settings, sdk, &mut document, "target_group").await.unwrap();
    run_step::<CreateSecurityGroups>(&settings, sdk, &mut document, "security_groups").await.unwrap();
    // Someone strips the load balancer's only egress rule: its health checks cannot leave.
    let nlb_sg = str_of(&document, "/security_groups/nlb_security_group_id").to_owned();
    let ec2 = aws_sdk_ec2::Client::new(sdk);
    let group = ec2.describe_security_groups().group_ids(&nlb_sg).send().await.unwrap();
    let egress = group.security_groups()[0].ip_permissions_egress().to_vec();
    ec2.revoke_security_group_egress().group_id(&nlb_sg).set_ip_permissions(Some(egress)).send().await.unwrap();
    run_step::<CreateLoadBalancer>(&settings, sdk, &mut document, "load_balancer").await.unwrap();

    let mut states = Vec::new();
    let error = loop {
        match run_step::<CheckTargetHealth>(&settings, sdk, &mut document, "target_health").await {
            Ok(health) => states.push(health["state"].as_str().unwrap().to_owned()),
            Err(error) => break error,
        }
        assert!(states.len() < 5, "{states:?}");
    };
    // A new target is `initial` first; one failing poll is forgiven, the second is not.
    assert_eq!(states, ["initial", "unhealthy"]);
    assert_eq!(error.name(), "TargetNotHealthy", "{error}");
    let message = error.to_string();
    for part in
        ["'unhealthy'", "Target.FailedHealthChecks", "Health checks failed", nlb_sg.as_str(), "outbound TCP 3306"]
    {
        assert!(message.contains(part), "'{message}' should mention '{part}'");
    }
}

#[tokio::test]
async fn provisions_an_aurora_cluster_at_its_writer_apart_from_a_same_named_instance() {
    let network = Network::new().await;
    let settings = network.settings();
    let key = network.aurora_cluster("orders").await;
    let writer_ip = network.interface_ip_in_zone("us-east-1b").await;
    let cluster = provision(&network, &settings, &key).await.unwrap();
    // Run again: nothing new.
    let created = managed_resources(&network).await;
    assert_eq!(provision(&network, &settings, &key).await.unwrap()["target_group"], cluster["target_group"]);
    assert_eq!(managed_resources(&network).await, created);
    // An instance of the same name is another database, with its own resources.
    let instance = network.database_in_zone("orders", "us-east-1c").await;
    let single = provision(&network, &settings, &instance).await.unwrap();

    // The target is the writer endpoint's address; the rule is on the cluster's security group.
    assert_eq!(str_of(&cluster, "/database/ip_address"), writer_ip);
    assert!(str_of(&cluster, "/database/endpoint_address").starts_with("orders.cluster-"));
    assert!(str_of(&cluster, "/database/arn").ends_with(":cluster:orders"));
    assert_eq!(str_of(&cluster, "/security_groups/db_security_group_id"), network.db_security_group_id);
    let database_zones: Vec<&str> = cluster["zones"]["subnets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["database_zone"] == true)
        .map(|s| s["availability_zone"].as_str().unwrap())
        .collect();
    assert_eq!(database_zones.len(), 3, "every zone of the cluster's DB subnet group: {database_zones:?}");

    let tg = str_of(&cluster, "/target_group/arn");
    assert_ne!(tg, str_of(&single, "/target_group/arn"));
    assert_eq!(str_of(&cluster, "/target_group/name"), resource_name(&key));
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&network.sdk);
    let tags = elb.describe_tags().resource_arns(tg).send().await.unwrap();
    let tags: Vec<(&str, &str)> =
        tags.tag_descriptions()[0].tags().iter().map(|t| (t.key().unwrap(), t.value().unwrap())).collect();
    assert!(tags.contains(&(DB_CLUSTER_TAG, "orders")) && !tags.iter().any(|(k, _)| *k == DB_INSTANCE_TAG), "{tags:?}");
    assert_eq!(str_of(&cluster, "/target_health/state"), "healthy");

    // Tearing the cluster down leaves the instance's path, and then the instance's leaves nothing.
    let with_both = managed_resources(&network).await;
    deprovision(&network, &settings, &key).await.unwrap();
    let left = managed_resources(&network).await;
    assert!(left.len() < with_both.len() && left.iter().any(|r| r.contains(str_of(&single, "/target_group/arn"))));
    deprovision(&network, &settings, &instance).await.unwrap();
    assert!(managed_resources(&network).await.is_empty());
}

#[tokio::test]
async fn a_member_instance_of_a_cluster_is_refused_naming_the_cluster() {
    let network = Network::new().await;
    network.aurora_cluster("orders").await;
    assert_named(inspect(&network, "orders-2").await, "DatabaseIsClusterMember", "tag the cluster instead");
    assert_named(inspect(&network, "cluster:no-such").await, "DatabaseNotFound", "DB cluster 'no-such'");
    network.create_cluster("empty", "aurora-mysql").send().await.unwrap();
    assert_named(inspect(&network, "cluster:empty").await, "DatabaseNotAvailable", "without a writer instance");
    assert!(managed_resources(&network).await.is_empty());
}

#[tokio::test]
async fn a_multi_az_db_cluster_is_inspected_at_its_writer() {
    let network = Network::new().await;
    network
        .create_cluster("orders-maz", "mysql")
        .db_cluster_instance_class("db.m6gd.large")
        .storage_type("io1")
        .iops(1000)
        .allocated_storage(100)
        .send()
        .await
        .unwrap();
    // RDS creates the writer (instance-1) and two readable standbys, one per zone.
    let database = inspect(&network, "cluster:orders-maz").await.unwrap();
    assert_eq!(str_of(&database, "/identifier"), "cluster:orders-maz");
    assert_eq!(str_of(&database, "/engine"), "mysql");
    assert_eq!(str_of(&database, "/ip_address"), network.interface_ip_in_zone("us-east-1a").await);
    assert_eq!(database["subnet_ids"].as_array().unwrap().len(), 3);
    assert_named(inspect(&network, "orders-maz-instance-2").await, "DatabaseIsClusterMember", "'orders-maz'");
}
