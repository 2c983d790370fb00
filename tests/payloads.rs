//! The payloads between states, against a realistic workflow document: every step's input reads
//! from the whole document, and every result serializes back to exactly what the document holds.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tidb_privatelink::payload::*;
use tidb_privatelink::steps::{
    endpoint_service, health_check, load_balancer, plan_zones, security_groups, target_group,
};

fn document() -> Value {
    serde_json::from_str(include_str!("fixtures/provision-document.json")).unwrap()
}

fn round_trip<T: Serialize + DeserializeOwned>(key: &str) {
    let document = document();
    let part: T = serde_json::from_value(document[key].clone()).unwrap_or_else(|e| panic!("{key}: {e}"));
    assert_eq!(serde_json::to_value(&part).unwrap(), document[key], "{key}");
}

#[test]
fn every_result_round_trips() {
    round_trip::<Database>("database");
    round_trip::<ZonePlan>("zones");
    round_trip::<TargetGroup>("target_group");
    round_trip::<SecurityGroups>("security_groups");
    round_trip::<LoadBalancer>("load_balancer");
    round_trip::<TargetHealth>("target_health");
    round_trip::<EndpointService>("endpoint_service");
}

#[test]
fn every_step_input_reads_from_the_whole_document() {
    let document = document();
    let request: DbInstanceRequest = serde_json::from_value(document.clone()).unwrap();
    assert_eq!(request.db_instance_identifier, "orders-db");
    let zones: plan_zones::Input = serde_json::from_value(document.clone()).unwrap();
    assert_eq!(zones.database.ip_address.to_string(), "10.42.2.57");
    let _: target_group::Input = serde_json::from_value(document.clone()).unwrap();
    let _: security_groups::Input = serde_json::from_value(document.clone()).unwrap();
    let lb: load_balancer::Input = serde_json::from_value(document.clone()).unwrap();
    assert_eq!(lb.zones.subnets.len(), 3);
    let health: health_check::Input = serde_json::from_value(document.clone()).unwrap();
    assert_eq!(health.target_health.map(|h| h.state).as_deref(), Some("healthy"));
    let service: endpoint_service::Input = serde_json::from_value(document).unwrap();
    assert_eq!(service.zones.tidb_cloud_account_id, "380838443567");
}

#[test]
fn a_missing_part_is_an_error_not_a_default() {
    let mut document = document();
    document.as_object_mut().unwrap().remove("target_group");
    let error = serde_json::from_value::<load_balancer::Input>(document).unwrap_err();
    assert!(error.to_string().contains("target_group"), "{error}");
}

#[test]
fn an_address_that_is_not_ipv4_is_rejected() {
    let mut database = document()["database"].clone();
    database["ip_address"] = Value::from("orders-db.internal");
    assert!(serde_json::from_value::<Database>(database).is_err());
}
