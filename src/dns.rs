//! Resolving the database endpoint to its address. In AWS this is the system resolver, exactly as
//! the runbook's "ping the endpoint"; a configured name server (the local stack's DNS) replaces it
//! so that the same resolution path runs against the emulator. That client is built only with the
//! `name-server` feature, which the local stack and the tests turn on and `sam build` does not.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

#[cfg(feature = "name-server")]
use hickory_resolver::{
    config::{ConnectionConfig, NameServerConfig, ResolverConfig},
    net::runtime::TokioRuntimeProvider,
    TokioResolver,
};

pub enum Resolver {
    System,
    #[cfg(feature = "name-server")]
    NameServer(Box<TokioResolver>),
}

impl Resolver {
    pub fn new(name_server: Option<SocketAddr>) -> Result<Self, String> {
        match name_server {
            None => Ok(Self::System),
            Some(addr) => Self::name_server(addr),
        }
    }

    #[cfg(feature = "name-server")]
    fn name_server(addr: SocketAddr) -> Result<Self, String> {
        let mut udp = ConnectionConfig::udp();
        udp.port = addr.port();
        let config = ResolverConfig::from_name_servers(vec![NameServerConfig::new(addr.ip(), true, vec![udp])]);
        let mut builder = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
        // No cache: the resolver lives as long as the function, and an address remembered from an
        // earlier run would hide the move that a failover event announces.
        builder.options_mut().cache_size = 0;
        let resolver = builder.build().map_err(|e| format!("cannot use name server {addr}: {e}"))?;
        Ok(Self::NameServer(Box::new(resolver)))
    }

    #[cfg(not(feature = "name-server"))]
    fn name_server(addr: SocketAddr) -> Result<Self, String> {
        Err(format!(
            "DNS_RESOLVER is {addr}, but this build resolves with the system resolver only \
             (a name server is the local stack's, built with the `name-server` feature)"
        ))
    }

    /// The IPv4 addresses `host` resolves to (an empty list is an error too).
    pub async fn ipv4(&self, host: &str) -> Result<Vec<Ipv4Addr>, String> {
        let addresses: Vec<IpAddr> = match self {
            Self::System => {
                tokio::net::lookup_host((host, 0)).await.map_err(|e| e.to_string())?.map(|socket| socket.ip()).collect()
            }
            #[cfg(feature = "name-server")]
            Self::NameServer(resolver) => {
                let fqdn = format!("{}.", host.trim_end_matches('.'));
                resolver.lookup_ip(fqdn.as_str()).await.map_err(|e| e.to_string())?.iter().collect()
            }
        };
        let v4: Vec<Ipv4Addr> = addresses
            .into_iter()
            .filter_map(|ip| match ip {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            })
            .collect();
        if v4.is_empty() {
            Err("no IPv4 address".into())
        } else {
            Ok(v4)
        }
    }
}
