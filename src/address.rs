//! The database's private address: its endpoint resolved by DNS, and of the answers the one that
//! lies inside its VPC, the only kind of address a target group takes. Inspection asks before
//! anything is built, and sync-targets asks again on every move, so an instance made publicly
//! accessible later is reported by name instead of having its public IP registered.

use std::net::Ipv4Addr;

use crate::dns::Resolver;
use crate::net::cidr_contains;
use crate::payload::VpcSubnet;
use crate::{aws, StepError};

/// What the address is looked up for.
pub struct Endpoint<'a> {
    pub identifier: &'a str,
    pub address: &'a str,
    pub vpc_id: &'a str,
    pub publicly_accessible: bool,
}

/// The endpoint's address inside its VPC (inside one of the VPC's subnets, where every address of
/// the VPC that an instance can hold lies), and those subnets.
pub async fn address_in_vpc(
    resolver: &Resolver,
    ec2: &aws_sdk_ec2::Client,
    endpoint: &Endpoint<'_>,
) -> Result<(Ipv4Addr, Vec<VpcSubnet>), StepError> {
    let subnets = vpc_subnets(ec2, endpoint.vpc_id).await?;
    let cidrs: Vec<String> = subnets.iter().map(|s| s.cidr_block.clone()).collect();
    let resolved = resolver.ipv4(endpoint.address).await.map_err(|reason| StepError::DatabaseEndpointUnresolved {
        identifier: endpoint.identifier.to_owned(),
        address: endpoint.address.to_owned(),
        reason,
    })?;
    let ip = pick_address_in_vpc(&resolved, &cidrs).ok_or_else(|| StepError::DatabaseAddressOutsideVpc {
        identifier: endpoint.identifier.to_owned(),
        address: endpoint.address.to_owned(),
        resolved: resolved.iter().map(Ipv4Addr::to_string).collect::<Vec<_>>().join(", "),
        vpc_id: endpoint.vpc_id.to_owned(),
        cidrs: cidrs.join(", "),
        hint: if endpoint.publicly_accessible {
            "; the instance is publicly accessible, so its endpoint resolves to a public IP: turn off public accessibility"
        } else {
            ""
        },
    })?;
    Ok((ip, subnets))
}

async fn vpc_subnets(ec2: &aws_sdk_ec2::Client, vpc_id: &str) -> Result<Vec<VpcSubnet>, StepError> {
    let filter = aws_sdk_ec2::types::Filter::builder().name("vpc-id").values(vpc_id).build();
    let mut pages = ec2.describe_subnets().filters(filter).into_paginator().send();
    let mut subnets = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(aws::fail("DescribeSubnets"))?;
        subnets.extend(page.subnets().iter().filter_map(|s| {
            Some(VpcSubnet {
                subnet_id: s.subnet_id()?.to_owned(),
                availability_zone_id: s.availability_zone_id()?.to_owned(),
                availability_zone: s.availability_zone()?.to_owned(),
                cidr_block: s.cidr_block()?.to_owned(),
            })
        }));
    }
    Ok(subnets)
}

/// The first resolved address inside one of the CIDR blocks (the VPC's subnets').
pub fn pick_address_in_vpc(resolved: &[Ipv4Addr], cidrs: &[String]) -> Option<Ipv4Addr> {
    resolved.iter().copied().find(|ip| cidrs.iter().any(|cidr| cidr_contains(cidr, *ip)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_address_inside_the_vpc() {
        let cidrs = vec!["10.0.0.0/16".to_owned(), "100.64.0.0/16".to_owned()];
        let ips: Vec<Ipv4Addr> = ["203.0.113.5", "100.64.3.4"].iter().map(|s| s.parse().unwrap()).collect();
        assert_eq!(pick_address_in_vpc(&ips, &cidrs), Some("100.64.3.4".parse().unwrap()));
        assert_eq!(pick_address_in_vpc(&ips[..1], &cidrs), None);
    }
}
