//! One workflow at a time per instance, against the emulator's DynamoDB and Step Functions
//! (executions started here stay RUNNING until stopped): an execution waits while another holds
//! the instance's turn, takes it over from a holder that ended without releasing it or whose lease
//! expired, a rollback does not wait for the provisioning that started it, and an event-started
//! execution acts only if the instance's current tags still ask for it.

mod common;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use common::*;
use serde_json::{json, Value};
use tidb_privatelink::settings::Sharing;
use tidb_privatelink::turn::{AwaitTurn, Decision, Turn, TurnRequest, Workflow};
use tidb_privatelink::Settings;
use tidb_privatelink::Step;

struct Workflows {
    sfn: aws_sdk_sfn::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    provision: String,
    deprovision: String,
    table: String,
}

/// The stack's two state machines, by their template names (their executions never finish here),
/// and its turn table as template.yaml declares it.
async fn workflows(sdk: &SdkConfig) -> Workflows {
    let sfn = aws_sdk_sfn::Client::new(sdk);
    let definition = json!({"StartAt": "Hold", "States": {"Hold": {"Type": "Wait", "Seconds": 3600, "End": true}}});
    let mut arns = Vec::new();
    for workflow in ["provision", "deprovision"] {
        let created = sfn
            .create_state_machine()
            .name(format!("{STACK}-{workflow}"))
            .definition(definition.to_string())
            .role_arn("arn:aws:iam::123456789012:role/states")
            .send()
            .await
            .unwrap();
        arns.push(created.state_machine_arn().to_owned());
    }
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let key = "db_instance_identifier";
    let created = dynamodb
        .create_table()
        .table_name(format!("{STACK}-TurnTable"))
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder().attribute_name(key).attribute_type(ScalarAttributeType::S).build().unwrap(),
        )
        .key_schema(KeySchemaElement::builder().attribute_name(key).key_type(KeyType::Hash).build().unwrap())
        .send()
        .await
        .unwrap();
    let table = created.table_description().unwrap().table_name().unwrap().to_owned();
    Workflows { sfn, dynamodb, deprovision: arns.pop().unwrap(), provision: arns.pop().unwrap(), table }
}

impl Workflows {
    async fn start(&self, state_machine: &str, name: &str, input: Value) -> String {
        let started = self
            .sfn
            .start_execution()
            .state_machine_arn(state_machine)
            .name(name)
            .input(input.to_string())
            .send()
            .await
            .unwrap();
        started.execution_arn().to_owned()
    }

    fn settings(&self, network: &Network) -> Settings {
        Settings { turn_table_name: Some(self.table.clone()), ..network.settings() }
    }

    /// What the state machines' ReleaseTurn state does on every way out; whether it released.
    async fn release(&self, id: &str, execution: &str) -> bool {
        self.dynamodb
            .delete_item()
            .table_name(&self.table)
            .key("db_instance_identifier", AttributeValue::S(id.into()))
            .condition_expression("holder = :me")
            .expression_attribute_values(":me", AttributeValue::S(execution.into()))
            .send()
            .await
            .is_ok()
    }

    async fn holder(&self, id: &str) -> Option<String> {
        let item = self
            .dynamodb
            .get_item()
            .table_name(&self.table)
            .key("db_instance_identifier", AttributeValue::S(id.into()))
            .consistent_read(true)
            .send()
            .await
            .unwrap();
        item.item().and_then(|i| i.get("holder")).map(|h| h.as_s().unwrap().clone())
    }
}

/// A fresh account with one instance, `orders-db`, and the stack's workflows and turn table.
async fn setup() -> (Network, String, Workflows, Settings) {
    let network = Network::new().await;
    let id = network.database("orders-db", "mysql", false).await;
    let flows = workflows(&network.sdk).await;
    let settings = flows.settings(&network);
    (network, id, flows, settings)
}

async fn turn(network: &Network, settings: &Settings, request: TurnRequest) -> Decision {
    answer(network, settings, request).await.decision
}

async fn answer(network: &Network, settings: &Settings, request: TurnRequest) -> Turn {
    AwaitTurn::new(&network.sdk, settings).unwrap().run(request).await.unwrap()
}

fn request(id: &str, workflow: Workflow, execution_id: &str, triggered_by_event: bool) -> TurnRequest {
    TurnRequest {
        db_instance_identifier: id.into(),
        workflow,
        execution_id: execution_id.into(),
        triggered_by_event,
        parent_execution_id: None,
        vpc_id: None,
    }
}

fn tag_event(id: &str) -> Value {
    json!({"detail": {"requestParameters": {"resourceName": format!("arn:aws:rds:us-east-1:123456789012:db:{id}"), "tags": [{"key": "tidb-privatelink", "value": "true"}]}}})
}

#[tokio::test]
async fn an_execution_waits_while_another_holds_the_instances_turn() {
    let (network, id, flows, settings) = setup().await;

    let first = flows.start(&flows.provision, "a-first", tag_event(&id)).await;
    let second = flows.start(&flows.deprovision, "b-second", json!({"db_instance_identifier": id})).await;
    let third = flows.start(&flows.provision, "c-third", json!({"db_instance_identifier": id})).await;
    let other = flows.start(&flows.provision, "d-other", json!({"db_instance_identifier": "billing-db"})).await;

    assert_eq!(turn(&network, &settings, request(&id, Workflow::Provision, &first, false)).await, Decision::Go);
    assert_eq!(flows.holder(&id).await.as_deref(), Some(first.as_str()));
    assert_eq!(turn(&network, &settings, request(&id, Workflow::Deprovision, &second, false)).await, Decision::Wait);
    // The holder asking again (a workflow waiting for its instance) keeps its turn.
    assert_eq!(turn(&network, &settings, request(&id, Workflow::Provision, &first, false)).await, Decision::Go);
    // Another instance's workflows do not wait for this one's.
    assert_eq!(
        turn(&network, &settings, request("billing-db", Workflow::Provision, &other, false)).await,
        Decision::Go
    );

    // Released (the holder's ReleaseTurn state), the turn goes to the next one that asks, and
    // only to it.
    assert!(flows.release(&id, &first).await);
    assert_eq!(turn(&network, &settings, request(&id, Workflow::Deprovision, &second, false)).await, Decision::Go);
    assert_eq!(turn(&network, &settings, request(&id, Workflow::Provision, &third, false)).await, Decision::Wait);

    // A holder stopped before it could release: the next one takes its turn over.
    flows.sfn.stop_execution().execution_arn(&second).send().await.unwrap();
    assert_eq!(turn(&network, &settings, request(&id, Workflow::Provision, &third, false)).await, Decision::Go);
    assert_eq!(flows.holder(&id).await.as_deref(), Some(third.as_str()));
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_and_a_fresh_one_is_not() {
    let (network, id, flows, settings) = setup().await;
    let holder = flows.start(&flows.provision, "a-holder", json!({"db_instance_identifier": id})).await;
    let next = flows.start(&flows.deprovision, "b-next", json!({"db_instance_identifier": id})).await;
    assert_eq!(turn(&network, &settings, request(&id, Workflow::Provision, &holder, false)).await, Decision::Go);
    assert_eq!(turn(&network, &settings, request(&id, Workflow::Deprovision, &next, false)).await, Decision::Wait);

    // The same lease, past its expiry (a holder still RUNNING after the state machines'
    // TimeoutSeconds cannot exist in AWS; here the execution never ends by itself).
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    flows
        .dynamodb
        .update_item()
        .table_name(&flows.table)
        .key("db_instance_identifier", AttributeValue::S(id.clone()))
        .update_expression("SET expires_at = :past")
        .expression_attribute_values(":past", AttributeValue::N((now - 1).to_string()))
        .send()
        .await
        .unwrap();
    assert_eq!(turn(&network, &settings, request(&id, Workflow::Deprovision, &next, false)).await, Decision::Go);
    assert_eq!(flows.holder(&id).await.as_deref(), Some(next.as_str()));
}

#[tokio::test]
async fn a_rollback_does_not_wait_for_the_provisioning_it_rolls_back() {
    let (network, id, flows, settings) = setup().await;
    let provisioning = flows.start(&flows.provision, "a-provision", json!({"db_instance_identifier": id})).await;
    let rollback = flows
        .start(
            &flows.deprovision,
            "b-rollback",
            json!({"db_instance_identifier": id, "AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID": provisioning}),
        )
        .await;
    assert_eq!(turn(&network, &settings, request(&id, Workflow::Provision, &provisioning, false)).await, Decision::Go);
    let mut asking = request(&id, Workflow::Deprovision, &rollback, false);
    assert_eq!(turn(&network, &settings, asking.clone()).await, Decision::Wait);
    asking.parent_execution_id = Some(provisioning.clone());
    assert_eq!(turn(&network, &settings, asking).await, Decision::Go);
    assert_eq!(flows.holder(&id).await.as_deref(), Some(rollback.as_str()));
    // The parent's own release afterwards (its ReleaseTurn) leaves the rollback's turn alone.
    assert!(!flows.release(&id, &provisioning).await);
    assert_eq!(flows.holder(&id).await.as_deref(), Some(rollback.as_str()));
}

#[tokio::test]
async fn events_act_on_the_instances_current_state_only() {
    let (network, id, flows, settings) = setup().await;
    let rds = aws_sdk_rds::Client::new(&network.sdk);
    let arn = format!("arn:aws:rds:us-east-1:{}:db:{id}", network.sdk_account().await);
    let execution = flows.start(&flows.provision, "a-event", tag_event(&id)).await;

    // Not tagged (the tag was removed again before this execution's turn): nothing to provision,
    // and a teardown may go.
    assert_eq!(turn(&network, &settings, request(&id, Workflow::Provision, &execution, true)).await, Decision::Skip);
    assert_eq!(turn(&network, &settings, request(&id, Workflow::Deprovision, &execution, true)).await, Decision::Go);

    rds.add_tags_to_resource()
        .resource_name(&arn)
        .tags(aws_sdk_rds::types::Tag::builder().key("tidb-privatelink").value("true").build())
        .send()
        .await
        .unwrap();
    assert_eq!(turn(&network, &settings, request(&id, Workflow::Provision, &execution, true)).await, Decision::Go);
    assert_eq!(turn(&network, &settings, request(&id, Workflow::Deprovision, &execution, true)).await, Decision::Skip);
    // Started by hand, the request is the user's intent whatever the tags say.
    assert_eq!(turn(&network, &settings, request(&id, Workflow::Deprovision, &execution, false)).await, Decision::Go);

    rds.delete_db_instance().db_instance_identifier(&id).skip_final_snapshot(true).send().await.unwrap();
    assert_eq!(turn(&network, &settings, request(&id, Workflow::Provision, &execution, true)).await, Decision::Skip);
    assert_eq!(turn(&network, &settings, request(&id, Workflow::Deprovision, &execution, true)).await, Decision::Go);
}

#[tokio::test]
async fn a_cluster_tagged_at_creation_is_provisioned_once_it_has_a_writer() {
    let network = Network::new().await;
    let flows = workflows(&network.sdk).await;
    let settings = flows.settings(&network);
    let rds = aws_sdk_rds::Client::new(&network.sdk);
    network
        .create_cluster("orders", "aurora-mysql")
        .tags(aws_sdk_rds::types::Tag::builder().key("tidb-privatelink").value("true").build())
        .send()
        .await
        .unwrap();
    let created = json!({"detail": {"responseElements": {"dBClusterIdentifier": "orders"}}});
    let execution = flows.start(&flows.provision, "a-cluster", created).await;
    let asking = request("cluster:orders", Workflow::Provision, &execution, true);
    // Available, but no instance yet: its writer endpoint resolves nowhere.
    assert_eq!(turn(&network, &settings, asking.clone()).await, Decision::Wait);
    rds.create_db_instance()
        .db_instance_identifier("orders-1")
        .db_cluster_identifier("orders")
        .engine("aurora-mysql")
        .db_instance_class("db.r6g.large")
        .send()
        .await
        .unwrap();
    assert_eq!(turn(&network, &settings, asking).await, Decision::Go);
    // An instance named like the cluster is another database: not tagged, nothing to provision.
    let instance = request("orders", Workflow::Provision, &execution, true);
    assert_eq!(turn(&network, &settings, instance).await, Decision::Skip);
}

#[tokio::test]
async fn with_per_vpc_sharing_the_databases_of_a_vpc_take_turns_only_on_its_shared_parts() {
    let (network, id, flows, mut settings) = setup().await;
    settings.sharing = Sharing::PerVpc;
    let other = network.database("billing-db", "mysql", false).await;
    let vpc_turn = format!("vpc:{}", network.vpc_id);
    let first = flows.start(&flows.provision, "a-first", json!({"db_instance_identifier": id})).await;
    let second = flows.start(&flows.provision, "b-second", json!({"db_instance_identifier": other})).await;

    // Each database's own turn is taken at once, and names the VPC whose turn comes next.
    for (db, execution) in [(&id, &first), (&other, &second)] {
        let own = answer(&network, &settings, request(db, Workflow::Provision, execution, false)).await;
        assert_eq!((own.decision, own.lease_key.as_str()), (Decision::Go, db.as_str()));
        assert_eq!(own.vpc_id.as_deref(), Some(network.vpc_id.as_str()));
    }
    let in_vpc = |db: &str, execution: &str| TurnRequest {
        vpc_id: Some(network.vpc_id.clone()),
        ..request(db, Workflow::Provision, execution, false)
    };
    let shared = answer(&network, &settings, in_vpc(&id, &first)).await;
    assert_eq!((shared.decision, shared.lease_key.as_str()), (Decision::Go, vpc_turn.as_str()));
    assert_eq!(turn(&network, &settings, in_vpc(&other, &second)).await, Decision::Wait);
    // Both databases' own turns are still held while the VPC's passes from one to the other.
    assert_eq!(flows.holder(&id).await.as_deref(), Some(first.as_str()));
    assert!(flows.release(&vpc_turn, &first).await);
    assert_eq!(turn(&network, &settings, in_vpc(&other, &second)).await, Decision::Go);
    assert_eq!(flows.holder(&id).await.as_deref(), Some(first.as_str()));

    // A rollback of the first waits for the VPC's turn held by the second; the second's own
    // rollback takes it over from its parent.
    let (_, first_rollback) = rollback_in_vpc(&flows, &network, &id, "c-rollback", &first).await;
    assert_eq!(turn(&network, &settings, first_rollback).await, Decision::Wait);
    let (second_rollback, asking) = rollback_in_vpc(&flows, &network, &other, "d-rollback", &second).await;
    assert_eq!(turn(&network, &settings, asking).await, Decision::Go);
    assert_eq!(flows.holder(&vpc_turn).await.as_deref(), Some(second_rollback.as_str()));
}

/// A rollback of `parent` started as `name`, and its request for the VPC's turn.
async fn rollback_in_vpc(
    flows: &Workflows,
    network: &Network,
    db: &str,
    name: &str,
    parent: &str,
) -> (String, TurnRequest) {
    let input = json!({"db_instance_identifier": db, "AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID": parent});
    let execution = flows.start(&flows.deprovision, name, input).await;
    let asking = TurnRequest {
        parent_execution_id: Some(parent.to_owned()),
        vpc_id: Some(network.vpc_id.clone()),
        ..request(db, Workflow::Deprovision, &execution, false)
    };
    (execution, asking)
}
