//! The acceptor's Lambda events, read into its [`Trigger`]: a provisioning's announcement that it
//! awaits the acceptance (an EventBridge event), a connection notification (an SNS event), or
//! anything else, which the acceptor takes as a reason to look all the same.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::sns::SnsEvent;
use serde_json::Value;
use tidb_privatelink::acceptor::{Awaited, Notification, Trigger};

/// `detail-type` of the event a provisioning sends when it starts waiting for the acceptance.
pub const AWAITED_DETAIL_TYPE: &str = "TiDB Cloud endpoint connection awaited";

/// What `event` asks of the acceptor.
pub fn trigger(event: Value) -> Trigger {
    if let Ok(announced) = serde_json::from_value::<EventBridgeEvent<Awaited>>(event.clone()) {
        if announced.detail_type == AWAITED_DETAIL_TYPE {
            return Trigger::Awaited(announced.detail);
        }
    }
    match serde_json::from_value::<SnsEvent>(event) {
        Ok(notification) => Trigger::Notified(
            notification
                .records
                .into_iter()
                .map(|record| Notification { message_id: record.sns.message_id, topic_arn: record.sns.topic_arn })
                .collect(),
        ),
        Err(_) => Trigger::Other,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_announcement_of_a_wait_is_told_from_a_notification() {
        let announcement = json!({
            "version": "0", "id": "1", "detail-type": AWAITED_DETAIL_TYPE, "source": "tidb-privatelink",
            "account": "123456789012", "time": "2026-11-26T10:00:00Z", "region": "us-east-1", "resources": [],
            "detail": {"db_instance_identifier": "orders-db", "service_id": "vpce-svc-1", "endpoint_id": "vpce-1", "task_token": "t"}
        });
        let Trigger::Awaited(awaited) = trigger(announcement) else { panic!("not read as an announcement") };
        assert_eq!((awaited.service_id.as_str(), awaited.endpoint_id.as_str()), ("vpce-svc-1", "vpce-1"));
        let notification: Value =
            serde_json::from_str(include_str!("../../tests/fixtures/sns-connection-notification.json")).unwrap();
        let Trigger::Notified(notifications) = trigger(notification) else { panic!("not read as a notification") };
        assert_eq!(notifications.len(), 1);
        assert_eq!(notifications[0].message_id, "95df01b4-ee98-5cb9-9903-4c221d41eb5e");
        let other = json!({"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}});
        assert_eq!(trigger(other), Trigger::Other);
    }
}
