"""RDS emits the EventBridge events AWS emits: CloudTrail API calls and instance events.

AWS (with a CloudTrail trail, which every account the product serves has):
each successful ``AddTagsToResource``, ``RemoveTagsFromResource``,
``CreateDBInstance``, ``CreateDBInstanceReadReplica``,
``RestoreDBInstanceFromDBSnapshot``, ``RestoreDBInstanceToPointInTime`` and
``DeleteDBInstance`` reaches the default event bus as
``source: aws.rds``, ``detail-type: AWS API Call via CloudTrail``, with the
CloudTrail record as ``detail`` (``eventSource: rds.amazonaws.com``,
``eventName``, ``requestParameters`` in lower-camel case: ``resourceName`` (the
ARN) and ``tags: [{key, value}]`` / ``tagKeys``, or ``dBInstanceIdentifier``
and ``tags`` for create/delete, ``responseElements``, ``userIdentity``, ...).
A forced failover (``RebootDBInstance`` with ``ForceFailover``) emits ``RDS DB
Instance Event``s RDS-EVENT-0013 (started), 0015 and 0049 (completed), category
``failover``; a plain reboot emits RDS-EVENT-0006 (restarted).

Clusters, likewise: ``CreateDBCluster``, ``RestoreDBClusterFromSnapshot``,
``RestoreDBClusterToPointInTime`` (a clone too: ``RestoreType=copy-on-write``)
and ``DeleteDBCluster`` reach the bus as CloudTrail records
(``dBClusterIdentifier``, the cluster in ``responseElements``), and
``FailoverDBCluster`` emits ``RDS DB Cluster Event``s (``SourceType: CLUSTER``,
the cluster's ARN): RDS-EVENT-0073 (cross-AZ) or 0072 (same AZ) "Started ...
failover to DB instance: <new writer>", then 0071 "Completed failover to DB
instance: <new writer>", category ``failover``; ``StopDBCluster`` /
``StartDBCluster`` emit 0150 / 0151 (``notification``). Source: the RDS event
table ("DB cluster events").

Stock moto 5.2.5 emits no RDS events at all.

Here these calls, once they succeeded, put their CloudTrail event on the
caller's default bus; ``RebootDBInstance(ForceFailover=True)`` (which moves the
instance to a new ENI and IP, see rds.py) puts 0013, 0015, 0049 in that order,
and a plain reboot 0006. Fidelity notes: AWS delivers CloudTrail events a few
minutes late and failover events over tens of seconds, with DNS following
minutes later; here everything is immediate. ``SourceIdentifier`` reads
``rds:<id>`` as in AWS's documented sample. ``userIdentity`` is the caller's
IAM user or assumed role when moto knows the access key. Sample events:
tests/fixtures/events/.
"""

from __future__ import annotations

import datetime
import functools
import json
import re
import uuid
from typing import Any, Callable

from moto.rds.responses import RDSResponse

from ._common import log

HIDDEN = "****"  # CloudTrail hides secrets in requestParameters
_SECRET_PARAMS = {"MasterUserPassword", "TdeCredentialPassword"}
_ACCESS_KEY = re.compile(r"Credential=([A-Z0-9]+)/")

FAILOVER_EVENTS = (
    ("RDS-EVENT-0013", "A Multi-AZ failover that resulted in the promotion of a standby instance has started."),
    ("RDS-EVENT-0015", "A Multi-AZ failover that resulted in the promotion of a standby DB instance is complete. "
                       "It may take several minutes for the DNS to transfer to the new primary DB instance."),
    ("RDS-EVENT-0049", "A Multi-AZ failover has completed."),
)
RESTART_EVENT = ("RDS-EVENT-0006", "DB instance restarted")
CLUSTER_FAILOVER_STARTED = {True: ("RDS-EVENT-0073", "Started cross AZ failover to DB instance: {}"),
                            False: ("RDS-EVENT-0072", "Started same AZ failover to DB instance: {}")}
CLUSTER_FAILOVER_COMPLETED = ("RDS-EVENT-0071", "Completed failover to DB instance: {}")
CLUSTER_STOPPED = ("RDS-EVENT-0150", "DB cluster stopped")
CLUSTER_STARTED = ("RDS-EVENT-0151", "DB cluster started")


def _chain(owner: Any, name: str, wrapper: Callable[..., Any]) -> None:
    """Wrap ``owner.name`` even if another patch wrapped it already (``_common.wrap``
    would see its marker and skip); applying twice is still a no-op."""
    original = getattr(owner, name)
    if getattr(original, "__rds_events_wrapped__", False):
        return

    @functools.wraps(original)
    def patched(*args: Any, **kwargs: Any) -> Any:
        return wrapper(original, *args, **kwargs)

    patched.__rds_events_wrapped__ = True  # type: ignore[attr-defined]
    setattr(owner, name, patched)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _camel(key: str) -> str:
    return key[:1].lower() + key[1:]


def request_parameters(params: Any) -> Any:
    """moto's parsed request as CloudTrail records it (lower-camel keys, secrets hidden)."""
    if hasattr(params, "original_dict"):  # moto's case-insensitive dict: the caller's key names
        params = params.original_dict()
    if isinstance(params, dict):
        return {
            _camel(key): HIDDEN if key in _SECRET_PARAMS else request_parameters(value)
            for key, value in params.items()
        }
    if isinstance(params, list):
        return [request_parameters(item) for item in params]
    return params


def _user_identity(response: Any, account: str) -> dict[str, Any]:
    match = _ACCESS_KEY.search(response.headers.get("Authorization", "") or "")
    access_key = match.group(1) if match else None
    identity: dict[str, Any] = {"accountId": account}
    if access_key:
        identity["accessKeyId"] = access_key
        try:
            from moto.sts.models import sts_backends

            for role in sts_backends[account]["aws"].assumed_roles:
                if role.access_key_id == access_key:
                    role_name = role.role_arn.split("/")[-1]
                    return {
                        **identity,
                        "type": "AssumedRole",
                        "principalId": f"AROA{abs(hash(role.role_arn)) % 10**16:016d}:{role.session_name}",
                        "arn": f"arn:aws:sts::{account}:assumed-role/{role_name}/{role.session_name}",
                        "sessionContext": {
                            "sessionIssuer": {"type": "Role", "arn": role.role_arn, "accountId": account,
                                              "userName": role_name},
                        },
                    }
            from moto.iam.models import iam_backends

            for user in iam_backends[account]["aws"].users.values():
                if any(key.access_key_id == access_key for key in user.access_keys):
                    return {**identity, "type": "IAMUser", "principalId": user.id, "arn": user.arn,
                            "userName": user.name}
        except Exception:  # identity is decoration: never fail the API call over it
            log.debug("rds events: no identity for %s", access_key, exc_info=True)
    return {**identity, "type": "Root", "principalId": account, "arn": f"arn:aws:iam::{account}:root"}


def _instance_elements(db: Any, status: str) -> dict[str, Any]:
    group = getattr(db, "db_subnet_group", None)
    out: dict[str, Any] = {
        "dBInstanceIdentifier": db.db_instance_identifier,
        "dBInstanceClass": getattr(db, "db_instance_class", None),
        "engine": getattr(db, "engine", None),
        "engineVersion": getattr(db, "engine_version", None),
        "dBInstanceStatus": status,
        "masterUsername": getattr(db, "master_username", None),
        "allocatedStorage": getattr(db, "allocated_storage", None),
        "multiAZ": bool(getattr(db, "multi_az", False)),
        "publiclyAccessible": bool(getattr(db, "publicly_accessible", False)),
        "storageEncrypted": bool(getattr(db, "storage_encrypted", False)),
        "dBInstanceArn": getattr(db, "db_instance_arn", None),
        "dbiResourceId": getattr(db, "dbi_resource_id", None),
        "vpcSecurityGroups": [
            {"vpcSecurityGroupId": group_id, "status": "active"}
            for group_id in (getattr(db, "vpc_security_group_ids", None) or [])
        ],
    }
    if group is not None:
        out["dBSubnetGroup"] = {
            "dBSubnetGroupName": group.name,
            "vpcId": group.vpc_id,
            "subnetGroupStatus": "Complete",
        }
    return out


def _cluster_elements(cluster: Any, status: str) -> dict[str, Any]:
    return {
        "dBClusterIdentifier": cluster.db_cluster_identifier,
        "dBClusterArn": cluster.db_cluster_arn,
        "dbClusterResourceId": cluster.db_cluster_resource_id,
        "engine": cluster.engine,
        "engineVersion": cluster.engine_version,
        "status": status,
        "dBSubnetGroup": cluster.db_subnet_group_name,
        "endpoint": cluster.endpoint,
        "readerEndpoint": cluster.reader_endpoint,
        "port": cluster.port,
        "masterUsername": cluster.master_username,
        "multiAZ": bool(cluster.multi_az),
        "vpcSecurityGroups": [{"vpcSecurityGroupId": group_id, "status": "active"}
                              for group_id in cluster.vpc_security_group_ids],
    }


def _put(account: str, region: str, detail_type: str, detail: dict[str, Any], resources: list[str]) -> None:
    from moto.events.models import events_backends

    try:
        events_backends[account][region].put_events(
            [{"Source": "aws.rds", "DetailType": detail_type, "Detail": json.dumps(detail, default=str),
              "Resources": resources}]
        )
    except Exception:  # AWS never fails an RDS call because of EventBridge
        log.exception("rds events: delivering %s failed", detail_type)


def cloudtrail_event(response: Any, event_name: str, params: dict[str, Any],
                     response_elements: dict[str, Any] | None) -> dict[str, Any]:
    account, region = response.current_account, response.region
    return {
        "eventVersion": "1.09",
        "userIdentity": _user_identity(response, account),
        "eventTime": _now().strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": "rds.amazonaws.com",
        "eventName": event_name,
        "awsRegion": region,
        "sourceIPAddress": "127.0.0.1",
        "userAgent": response.headers.get("User-Agent", "") or "",
        "requestParameters": request_parameters(params),
        "responseElements": response_elements,
        "requestID": str(uuid.uuid4()),
        "eventID": str(uuid.uuid4()),
        "readOnly": False,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": account,
        "eventCategory": "Management",
    }


def source_event(source_type: str, arn: str, identifier: str, event_id: str, message: str,
                 categories: list[str]) -> dict[str, Any]:
    now = _now()
    return {
        "EventCategories": categories,
        "SourceType": source_type,
        "SourceArn": arn,
        "Date": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
        "Message": message,
        "SourceIdentifier": f"rds:{identifier}",
        "EventID": event_id,
    }


def instance_event(db: Any, event_id: str, message: str, categories: list[str]) -> dict[str, Any]:
    return source_event("DB_INSTANCE", db.db_instance_arn, db.db_instance_identifier, event_id, message, categories)


def _emit_api_call(response: Any, event_name: str, elements: dict[str, Any] | None) -> None:
    detail = cloudtrail_event(response, event_name, response.params, elements)
    _put(response.current_account, response.region, "AWS API Call via CloudTrail", detail, [])


def _emit_instance_events(response: Any, db: Any, events: tuple[tuple[str, str], ...], categories: list[str]) -> None:
    for event_id, message in events:
        detail = instance_event(db, event_id, message, categories)
        _put(response.current_account, response.region, "RDS DB Instance Event", detail, [db.db_instance_arn])


def _emit_cluster_events(response: Any, cluster: Any, events: list[tuple[str, str]], categories: list[str]) -> None:
    for event_id, message in events:
        detail = source_event("CLUSTER", cluster.db_cluster_arn, cluster.db_cluster_identifier, event_id, message,
                              categories)
        _put(response.current_account, response.region, "RDS DB Cluster Event", detail, [cluster.db_cluster_arn])


def _cluster(response: Any, parameter: str = "DBClusterIdentifier") -> Any | None:
    identifier = (response.params.get(parameter) or "").lower()
    return response.backend.clusters.get(identifier) if identifier else None


def _db(response: Any, parameter: str = "DBInstanceIdentifier") -> Any | None:
    identifier = response.params.get(parameter)
    try:
        return response.backend.describe_db_instances(identifier)[0]
    except Exception:
        return None


def apply() -> None:
    def add_tags(original, self):  # type: ignore[no-untyped-def]
        result = original(self)
        _emit_api_call(self, "AddTagsToResource", None)
        return result

    def remove_tags(original, self):  # type: ignore[no-untyped-def]
        result = original(self)
        _emit_api_call(self, "RemoveTagsFromResource", None)
        return result

    Find = Callable[[Any], Any]
    Elements = Callable[[Any, str], dict[str, Any]]

    def creation(event_name: str, find: Find, elements: Elements) -> Callable[..., Any]:
        """A call that creates an instance or cluster (also from another: restores, read replicas,
        clones): the new resource goes into the record's responseElements."""

        def create(original, self):  # type: ignore[no-untyped-def]
            result = original(self)
            found = find(self)
            _emit_api_call(self, event_name, elements(found, "creating") if found is not None else None)
            return result

        return create

    def deletion(event_name: str, find: Find, elements: Elements) -> Callable[..., Any]:
        def delete(original, self):  # type: ignore[no-untyped-def]
            found = find(self)
            result = original(self)
            _emit_api_call(self, event_name, elements(found, "deleting") if found is not None else None)
            return result

        return delete

    def instance(parameter: str = "DBInstanceIdentifier") -> Find:
        # A point-in-time restore names the new instance TargetDBInstanceIdentifier.
        return lambda response: _db(response, parameter)

    def reboot(original, self):  # type: ignore[no-untyped-def]
        failover = str(self.params.get("ForceFailover", "false")).lower() == "true"
        result = original(self)  # rds.py moves the IP first when failing over
        db = _db(self)
        if db is not None:
            if failover:
                _emit_instance_events(self, db, FAILOVER_EVENTS, ["failover"])
            else:
                _emit_instance_events(self, db, (RESTART_EVENT,), ["availability"])
        return result

    def cluster_failover(original, self):  # type: ignore[no-untyped-def]
        cluster = _cluster(self)
        old = cluster.writer if cluster is not None else None
        result = original(self)
        new = cluster.writer if cluster is not None else None
        if new is not None:
            cross_az = old is None or old.availability_zone != new.availability_zone
            started_id, started = CLUSTER_FAILOVER_STARTED[cross_az]
            completed_id, completed = CLUSTER_FAILOVER_COMPLETED
            name = new.db_instance_identifier
            _emit_cluster_events(self, cluster, [(started_id, started.format(name)),
                                                 (completed_id, completed.format(name))], ["failover"])
        return result

    def cluster_notification(event: tuple[str, str]) -> Callable[..., Any]:
        def notify(original, self):  # type: ignore[no-untyped-def]
            result = original(self)
            cluster = _cluster(self)
            if cluster is not None:
                _emit_cluster_events(self, cluster, [event], ["notification"])
            return result

        return notify

    for method, event_name in (("create_db_cluster", "CreateDBCluster"),
                               ("restore_db_cluster_from_snapshot", "RestoreDBClusterFromSnapshot"),
                               ("restore_db_cluster_to_point_in_time", "RestoreDBClusterToPointInTime")):
        _chain(RDSResponse, method, creation(event_name, _cluster, _cluster_elements))
    _chain(RDSResponse, "delete_db_cluster", deletion("DeleteDBCluster", _cluster, _cluster_elements))
    _chain(RDSResponse, "failover_db_cluster", cluster_failover)
    _chain(RDSResponse, "stop_db_cluster", cluster_notification(CLUSTER_STOPPED))
    _chain(RDSResponse, "start_db_cluster", cluster_notification(CLUSTER_STARTED))
    _chain(RDSResponse, "add_tags_to_resource", add_tags)
    _chain(RDSResponse, "remove_tags_from_resource", remove_tags)
    _chain(RDSResponse, "create_db_instance", creation("CreateDBInstance", instance(), _instance_elements))
    _chain(RDSResponse, "create_db_instance_read_replica",
           creation("CreateDBInstanceReadReplica", instance(), _instance_elements))
    _chain(RDSResponse, "restore_db_instance_from_db_snapshot",
           creation("RestoreDBInstanceFromDBSnapshot", instance(), _instance_elements))
    _chain(RDSResponse, "restore_db_instance_to_point_in_time",
           creation("RestoreDBInstanceToPointInTime", instance("TargetDBInstanceIdentifier"), _instance_elements))
    _chain(RDSResponse, "delete_db_instance", deletion("DeleteDBInstance", instance(), _instance_elements))
    _chain(RDSResponse, "reboot_db_instance", reboot)
