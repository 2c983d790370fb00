//! Exposes an Amazon RDS instance to TiDB Cloud over AWS PrivateLink.
//!
//! Each provisioning step of the state machine lives in its own module under [`steps`], each a
//! [`Step`]: built from the SDK configuration and [`Settings`], run on plain inputs. Nothing here
//! knows Lambda; the crate `tidb-privatelink-lambda` (`lambda/`) adapts Lambda's events and error
//! reports, and the binary of `functions/` runs the step its Handler names. Everything a
//! step needs to find its earlier work (names, tags) is in [`naming`]; what flows between states
//! is in [`payload`].

pub mod acceptor;
pub mod address;
pub mod aws;
pub mod database;
pub mod dns;
pub mod error;
pub mod metrics;
pub mod naming;
pub mod net;
pub mod notify;
pub mod payload;
pub mod resources;
pub mod settings;
mod step;
pub mod steps;
pub mod sync_targets;
pub mod target_health;
pub mod teardown;
pub mod tidb_cloud;
pub mod tls;
pub mod turn;

pub use error::StepError;
pub use settings::Settings;
pub use step::Step;
