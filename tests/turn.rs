//! One workflow at a time per instance, against the emulator's Step Functions (executions started
//! here stay RUNNING): an execution waits while an older one for the same instance runs, a
//! rollback does not wait for the provisioning that started it, and an event-started execution
//! acts only if the instance's current tags still ask for it.

mod common;

use aws_config::SdkConfig;
use common::*;
use serde_json::{json, Value};
use tidb_privatelink::runtime::Step;
use tidb_privatelink::turn::{AwaitTurn, Decision, TurnRequest, Workflow};
use tidb_privatelink::Settings;

struct Workflows {
    sfn: aws_sdk_sfn::Client,
    provision: String,
    deprovision: String,
}

/// The stack's two state machines, by their template names; their executions never finish here.
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
    Workflows { sfn, deprovision: arns.pop().unwrap(), provision: arns.pop().unwrap() }
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
        Settings {
            provision_state_machine_arn: Some(self.provision.clone()),
            deprovision_state_machine_arn: Some(self.deprovision.clone()),
            ..network.settings()
        }
    }
}

async fn turn(network: &Network, settings: &Settings, request: TurnRequest) -> Decision {
    AwaitTurn::new(&network.sdk, settings).unwrap().run(request).await.unwrap().decision
}

fn request(id: &str, workflow: Workflow, execution_id: &str, triggered_by_event: bool) -> TurnRequest {
    TurnRequest {
        db_instance_identifier: id.into(),
        workflow,
        execution_id: execution_id.into(),
        triggered_by_event,
        parent_execution_id: None,
    }
}

fn tag_event(id: &str) -> Value {
    json!({"detail": {"requestParameters": {"resourceName": format!("arn:aws:rds:us-east-1:123456789012:db:{id}"), "tags": [{"key": "tidb-privatelink", "value": "true"}]}}})
}

#[tokio::test]
async fn a_later_execution_for_the_same_instance_waits_for_the_earlier_one() {
    let network = Network::new().await;
    let id = network.database("orders-db", "mysql", false).await;
    let flows = workflows(&network.sdk).await;
    let settings = flows.settings(&network);

    let first = flows.start(&flows.provision, "a-first", tag_event(&id)).await;
    let second = flows.start(&flows.deprovision, "b-second", json!({"db_instance_identifier": id})).await;
    let other = flows.start(&flows.provision, "c-other", json!({"db_instance_identifier": "billing-db"})).await;

    assert_eq!(turn(&network, &settings, request(&id, Workflow::Provision, &first, false)).await, Decision::Go);
    assert_eq!(turn(&network, &settings, request(&id, Workflow::Deprovision, &second, false)).await, Decision::Wait);
    // Another instance's workflows do not wait for this one's.
    assert_eq!(
        turn(&network, &settings, request("billing-db", Workflow::Provision, &other, false)).await,
        Decision::Go
    );

    // Once the first has ended, the second goes.
    flows.sfn.stop_execution().execution_arn(&first).send().await.unwrap();
    assert_eq!(turn(&network, &settings, request(&id, Workflow::Deprovision, &second, false)).await, Decision::Go);
}

#[tokio::test]
async fn a_rollback_does_not_wait_for_the_provisioning_it_rolls_back() {
    let network = Network::new().await;
    let id = network.database("orders-db", "mysql", false).await;
    let flows = workflows(&network.sdk).await;
    let settings = flows.settings(&network);
    let provisioning = flows.start(&flows.provision, "a-provision", json!({"db_instance_identifier": id})).await;
    let rollback = flows
        .start(
            &flows.deprovision,
            "b-rollback",
            json!({"db_instance_identifier": id, "AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID": provisioning}),
        )
        .await;
    let mut asking = request(&id, Workflow::Deprovision, &rollback, false);
    assert_eq!(turn(&network, &settings, asking.clone()).await, Decision::Wait);
    asking.parent_execution_id = Some(provisioning);
    assert_eq!(turn(&network, &settings, asking).await, Decision::Go);
}

#[tokio::test]
async fn events_act_on_the_instances_current_state_only() {
    let network = Network::new().await;
    let id = network.database("orders-db", "mysql", false).await;
    let flows = workflows(&network.sdk).await;
    let settings = flows.settings(&network);
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
