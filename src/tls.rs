//! The one TLS stack of every HTTPS client the functions make: rustls with the ring crypto
//! provider and the platform's trusted roots, for the AWS SDK's calls and the TiDB Cloud API alike.
//! The SDK's own default client is the same hyper client on aws-lc-rs, whose C library was about
//! 1 MB of the bootstrap and the longest C build of a cold `sam build` (README, "Build").

use std::sync::Arc;

use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use aws_smithy_http_client::{Builder, ConnectorBuilder};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use rustls_platform_verifier::BuilderVerifierExt;

/// The AWS SDK's HTTP client: what `aws-config`'s `default-https-client` builds (hyper 1, the
/// SDK's connect timeout and sleep, proxy settings from the environment), on ring.
pub fn aws_http_client() -> SharedHttpClient {
    Builder::new().build_with_connector_fn(|settings, runtime_components| {
        let mut connector = ConnectorBuilder::default().tls_provider(Provider::Rustls(CryptoMode::Ring));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = runtime_components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
}

/// The TiDB Cloud client's TLS: ring, TLS 1.2 and 1.3, certificates checked against the
/// platform's trusted roots (reqwest's own default, but with ring).
pub fn client_config() -> Result<rustls::ClientConfig, rustls::Error> {
    let ring = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(ring)
        .with_safe_default_protocol_versions()?
        .with_platform_verifier()?
        .with_no_client_auth())
}
