"""RDS instances get a network interface, a private IP in their subnet and an
account-specific endpoint name, as on AWS; DB clusters get AWS's cluster
(writer) and reader endpoint names, and their member instances the cluster's
DB subnet group and security groups.

Stock moto 5.2.5 gives an instance no ENI and no IP at all, and names every
endpoint ``<id>.aaaaaaaaaa.<region>.rds.amazonaws.com`` in every account, so two
test accounts would collide in DNS. The project resolves the endpoint by DNS and
registers the IP in a target group, so it needs both.

Public helpers (importable inside the emulator process):
  * ``endpoint_label(account, region)``  the 12-char label AWS puts in endpoints
  * ``private_ip(db)``                  the instance's current private IP
  * ``move_to_new_ip(db, other_az=...)`` give the instance a new ENI/IP (failover)
  * ``find_instance_by_address(name)``  used by the DNS server: an instance
    endpoint, or a cluster endpoint (the writer) or reader endpoint (a reader,
    the writer when the cluster has none)

Clusters (stock moto 5.2.5 has them, with members and a writer that
FailoverDBCluster moves): moto names the endpoints with a random label per
cluster and gives a cluster created without VpcSecurityGroupIds no group, and a
member instance created without DBSubnetGroupName no subnet group (AWS: the
members are in the cluster's group and VPC security groups).
"""

from __future__ import annotations

import hashlib
import string
from typing import Any

from moto.ec2.models import ec2_backends
from moto.rds.exceptions import RDSClientError
from moto.rds.models import DBCluster, DBInstance, RDSBackend, rds_backends
from moto.rds.responses import RDSResponse

from ._common import (
    STATE_LOCK,
    allocate_ip,
    iter_backends,
    log,
    release_ip,
    set_eni_ip,
    wrap,
)

ENI_DESCRIPTION = "RDSNetworkInterface"  # exactly what AWS writes on the ENI
RDS_REQUESTER_ID = "amazon-rds"  # AWS shows the ENI as managed by RDS
_ALPHABET = string.ascii_lowercase + string.digits
# Engines of Multi-AZ DB clusters (CreateDBCluster with DBClusterInstanceClass), whose members
# RDS creates with the cluster.
MULTI_AZ_CLUSTER_ENGINES = ("mysql", "postgres")


def endpoint_label(account_id: str, region: str) -> str:
    """Deterministic 12-char lowercase label per account and region.

    On AWS the label (``c9akciq32xyz`` in ``db.c9akciq32xyz.us-east-1.rds...``)
    is fixed per account and region; deriving it from a hash keeps that
    property and keeps two test accounts from sharing names.
    """
    digest = hashlib.sha256(f"rds-endpoint:{account_id}:{region}".encode()).digest()
    chars = [string.ascii_lowercase[digest[0] % 26]]  # AWS labels start with a letter
    chars += [_ALPHABET[b % len(_ALPHABET)] for b in digest[1:12]]
    return "".join(chars)


def _address(self: DBInstance) -> str:
    label = endpoint_label(self.account_id, self.region)
    return f"{self.db_instance_identifier}.{label}.{self.region}.rds.amazonaws.com"


def _cluster_address(kind: str) -> Any:
    """``<id>.cluster-<label>...`` (writer) or ``<id>.cluster-ro-<label>...`` (reader), the label
    the account's instance endpoints have, as on AWS."""

    def address(self: DBCluster) -> str:
        label = endpoint_label(self.account_id, self.region)
        return f"{self.db_cluster_identifier}.{kind}-{label}.{self.region}.rds.amazonaws.com"

    return address


def _ec2(db: Any) -> Any:
    return ec2_backends[db.account_id][db.region]


def _candidate_subnets(db: Any) -> list[Any]:
    group = getattr(db, "db_subnet_group", None)
    if group is not None:
        return list(group._subnets)
    # No subnet group: AWS places the instance in the default VPC.
    ec2 = _ec2(db)
    default_vpc = ec2.default_vpc
    if default_vpc is None:
        return []
    return [s for s in ec2.describe_subnets() if s.vpc_id == default_vpc.id]


def _pick_subnet(db: Any, avoid_az: str | None = None) -> Any | None:
    subnets = _candidate_subnets(db)
    if not subnets:
        return None
    if avoid_az:
        others = [s for s in subnets if s.availability_zone != avoid_az]
        if others:
            return others[0]
    for subnet in subnets:
        if subnet.availability_zone == db.availability_zone:
            return subnet
    return subnets[0]


def _security_groups_for(db: Any, subnet: Any) -> list[str]:
    """The instance's VPC security groups that exist in the ENI's VPC.

    moto accepts unknown group ids on CreateDBInstance and, when none are
    given, records the *default VPC's* default group even for an instance in
    another VPC; passing those to moto's ENI constructor would invent groups.
    An empty list makes moto attach the subnet VPC's default group, which is
    what AWS does when no group is given.
    """
    ec2 = _ec2(db)
    kept = []
    for group_id in getattr(db, "vpc_security_group_ids", None) or []:
        group = ec2.get_security_group_from_id(group_id)
        if group is not None and group.vpc_id == subnet.vpc_id:
            kept.append(group_id)
    return kept


def _create_eni(db: Any, subnet: Any) -> Any:
    ec2 = _ec2(db)
    groups = _security_groups_for(db, subnet)
    listed = [ec2.get_security_group_from_id(i) for i in getattr(db, "vpc_security_group_ids", None) or []]
    if not groups and listed and all(g is not None and g.name == "default" for g in listed):
        # moto recorded the default VPC's default group for an instance in
        # another VPC; AWS uses (and reports) the instance VPC's default group.
        default = ec2.get_default_security_group(subnet.vpc_id)
        if default is not None:
            db.vpc_security_group_ids = [default.id]
    eni = ec2.create_network_interface(
        subnet, private_ip_address=None, group_ids=groups, description=ENI_DESCRIPTION
    )
    set_eni_ip(eni, allocate_ip(ec2, subnet, eni))
    eni.requester_managed = True
    eni.requester_id = RDS_REQUESTER_ID
    return eni


def attach_network_interface(db: Any, avoid_az: str | None = None) -> Any | None:
    """Create the instance's ENI (AWS: in a subnet of its DB subnet group)."""
    subnet = _pick_subnet(db, avoid_az=avoid_az)
    if subnet is None:
        log.warning("rds: no subnet for %s; it gets no IP", db.db_instance_identifier)
        return None
    with STATE_LOCK:
        eni = _create_eni(db, subnet)
        db._emulator_eni_id = eni.id
        db.availability_zone = subnet.availability_zone
    log.info("rds: %s has ENI %s, IP %s", db.db_instance_identifier, eni.id, eni.private_ip_address)
    return eni


def detach_network_interface(db: Any) -> None:
    eni_id = getattr(db, "_emulator_eni_id", None)
    if not eni_id:
        return
    ec2 = _ec2(db)
    with STATE_LOCK:
        eni = ec2.enis.pop(eni_id, None)
        db._emulator_eni_id = None
        if eni is not None:
            release_ip(eni.subnet, eni.private_ip_address)


def network_interface(db: Any) -> Any | None:
    eni_id = getattr(db, "_emulator_eni_id", None)
    return _ec2(db).enis.get(eni_id) if eni_id else None


def private_ip(db: Any) -> str | None:
    eni = network_interface(db)
    return eni.private_ip_address if eni is not None else None


def move_to_new_ip(db: Any, other_az: bool = False) -> str | None:
    """Give ``db`` a new ENI (and so a new private IP), dropping the old one.

    This is what a Multi-AZ failover looks like from the network: the endpoint
    name stays, the address behind it changes. With ``other_az`` the new ENI
    goes to a subnet in another AZ of the group when there is one, and the
    instance's AvailabilityZone/SecondaryAvailabilityZone swap.
    """
    with STATE_LOCK:
        old = network_interface(db)
        old_az = old.subnet.availability_zone if old is not None else db.availability_zone
        old_ip = old.private_ip_address if old is not None else None
        # Create the new ENI before dropping the old one so the old IP cannot
        # be handed straight back.
        eni = attach_network_interface(db, avoid_az=old_az if other_az else None)
        if eni is None:
            return old_ip
        if old is not None:
            _ec2(db).enis.pop(old.id, None)
            release_ip(old.subnet, old_ip)
        if other_az and eni.subnet.availability_zone != old_az:
            db.secondary_availability_zone = old_az
        return eni.private_ip_address


def _cluster_member(cluster: Any, writer: bool) -> Any | None:
    members = [m for m in cluster.members if m.is_cluster_writer == writer]
    if not members and not writer:  # AWS: a reader endpoint of a cluster without readers
        return _cluster_member(cluster, True)
    return members[0] if members else None


def find_instance_by_address(name: str) -> Any | None:
    """The DB instance, in any account or region, whose endpoint is ``name``; for a cluster's
    writer endpoint its writer, for its reader endpoint a reader (AWS: one of them)."""
    name = name.rstrip(".").lower()
    if not name.endswith(".rds.amazonaws.com"):
        return None
    for _account, _region, backend in iter_backends(rds_backends):
        try:
            for db in list(backend.databases.values()):
                if db.address == name:
                    return db
            for cluster in list(backend.clusters.values()):
                if name in (cluster.endpoint, cluster.reader_endpoint):
                    return _cluster_member(cluster, writer=name == cluster.endpoint)
        except Exception:  # a half-built instance must not break DNS
            continue
    return None


def _create_multi_az_members(backend: Any, cluster: Any, kwargs: dict[str, Any]) -> None:
    """A Multi-AZ DB cluster is created with a writer and two readable standbys, each in another
    zone of the DB subnet group (AWS creates them; stock moto creates none)."""
    group = backend.subnet_groups.get(cluster.db_subnet_group_name)
    zones = sorted({s.availability_zone for s in group._subnets}) if group is not None else []
    for number in range(1, 4):
        backend.create_db_instance({
            "db_instance_identifier": f"{cluster.db_cluster_identifier}-instance-{number}",
            "db_cluster_identifier": cluster.db_cluster_identifier,
            "engine": cluster.engine,
            "db_instance_class": kwargs["db_cluster_instance_class"],
            "availability_zone": zones[(number - 1) % len(zones)] if zones else None,
            "promotion_tier": number,
        })


def _default_security_group(ec2: Any, subnet_group: Any) -> list[str]:
    group = ec2.get_default_security_group(subnet_group.vpc_id) if subnet_group is not None else None
    return [group.id] if group is not None else []


def apply() -> None:
    DBInstance.address = property(_address)  # type: ignore[assignment]
    DBCluster.endpoint = property(_cluster_address("cluster"))  # type: ignore[assignment]
    DBCluster.reader_endpoint = property(_cluster_address("cluster-ro"))  # type: ignore[assignment]

    @wrap(RDSBackend, "create_db_cluster")
    def create_db_cluster(original, self, kwargs):  # type: ignore[no-untyped-def]
        # Restores and clones of clusters go through here too.
        cluster = original(self, kwargs)
        if not cluster.vpc_security_group_ids:  # AWS: the default group of the subnet group's VPC
            group = self.subnet_groups.get(cluster.db_subnet_group_name)
            cluster.vpc_security_group_ids = _default_security_group(_ec2(cluster), group)
        if kwargs.get("db_cluster_instance_class") and cluster.engine in MULTI_AZ_CLUSTER_ENGINES:
            _create_multi_az_members(self, cluster, kwargs)
        return cluster

    @wrap(RDSBackend, "create_db_instance")
    def create_db_instance(original, self, db_kwargs):  # type: ignore[no-untyped-def]
        # Restores from snapshot / point in time go through here too.
        cluster = self.clusters.get(db_kwargs.get("db_cluster_identifier") or "")
        if cluster is not None and not db_kwargs.get("db_subnet_group_name"):
            # A member is in its cluster's DB subnet group (its security groups are the cluster's).
            if cluster.db_subnet_group_name in self.subnet_groups:
                db_kwargs = {**db_kwargs, "db_subnet_group_name": cluster.db_subnet_group_name}
        db = original(self, db_kwargs)
        attach_network_interface(db)
        if getattr(db, "multi_az", False):
            standby = _pick_subnet(db, avoid_az=db.availability_zone)
            if standby is not None and standby.availability_zone != db.availability_zone:
                db.secondary_availability_zone = standby.availability_zone
        return db

    @wrap(RDSBackend, "create_db_instance_read_replica")
    def create_db_instance_read_replica(original, self, db_kwargs):  # type: ignore[no-untyped-def]
        replica = original(self, db_kwargs)
        # moto builds the replica with copy.copy(primary): without this it
        # would share the primary's ENI (and IP).
        replica._emulator_eni_id = None
        attach_network_interface(replica)
        return replica

    @wrap(RDSBackend, "delete_db_instance")
    def delete_db_instance(original, self, db_instance_identifier, *args, **kwargs):  # type: ignore[no-untyped-def]
        db = original(self, db_instance_identifier, *args, **kwargs)
        detach_network_interface(db)
        return db

    @wrap(RDSResponse, "reboot_db_instance")
    def reboot_db_instance(original, self):  # type: ignore[no-untyped-def]
        if str(self.params.get("ForceFailover", "false")).lower() != "true":
            return original(self)
        db = self.backend.describe_db_instances(self.params.get("DBInstanceIdentifier"))[0]
        if not getattr(db, "multi_az", False):
            # AWS: "You can't enable force failover if the instance isn't
            # configured for Multi-AZ." (stock moto accepts it silently)
            raise RDSClientError(
                "InvalidParameterCombination",
                f"Cannot force a failover for DB instance {db.db_instance_identifier} "
                "because it is not configured for Multi-AZ.",
            )
        move_to_new_ip(db, other_az=True)
        return original(self)
