//! One module per provisioning step, in the order the `provision` state machine runs them.

pub mod endpoint_service;
pub mod health_check;
pub mod inspect_database;
pub mod load_balancer;
pub mod plan_zones;
pub mod security_groups;
pub mod target_group;
pub mod tidb_cloud_connection;
