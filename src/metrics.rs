//! The product's CloudWatch metrics, published with PutMetricData. Not as embedded-metric log
//! lines: Lambda drops application log lines below the function's log level (a line without a
//! level counts as INFO), so at `LogLevel=warn` such metrics would silently vanish.

use aws_config::SdkConfig;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use tracing::error;

use crate::naming::CLUSTER_KEY_PREFIX;

/// The namespace of every metric; the functions' grant is limited to it.
pub const NAMESPACE: &str = "TiDBPrivateLink";

pub struct Metrics {
    cloudwatch: aws_sdk_cloudwatch::Client,
}

impl Metrics {
    pub fn new(sdk: &SdkConfig) -> Self {
        Self { cloudwatch: aws_sdk_cloudwatch::Client::new(sdk) }
    }

    /// Counts one `name` for the database (its workflow key), by `DBInstance` or, for a DB cluster,
    /// `DBCluster`. A metric that cannot be published is logged as an error (which every log level
    /// keeps) and does not fail the work it counts.
    pub async fn count(&self, name: &str, identifier: &str) {
        let (dimension, value) = match identifier.strip_prefix(CLUSTER_KEY_PREFIX) {
            Some(cluster) => ("DBCluster", cluster),
            None => ("DBInstance", identifier),
        };
        self.count_by(name, dimension, value).await;
    }

    /// Counts one `name` by the one `dimension`, as [`Metrics::count`] does.
    pub async fn count_by(&self, name: &str, dimension: &str, value: &str) {
        let datum = MetricDatum::builder()
            .metric_name(name)
            .dimensions(Dimension::builder().name(dimension).value(value).build())
            .unit(StandardUnit::Count)
            .value(1.0)
            .build();
        if let Err(e) = self.cloudwatch.put_metric_data().namespace(NAMESPACE).metric_data(datum).send().await {
            error!(metric = name, dimension, value, error = %crate::aws::failure("PutMetricData", e), "metric not published");
        }
    }
}
