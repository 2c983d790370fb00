"""EC2: a security group in use by a network interface cannot be deleted.

AWS answers DeleteSecurityGroup with ``DependencyViolation`` while any ENI
(an RDS instance's, an endpoint's, an NLB's) still uses the group; moto deletes
it. The project's teardown order depends on this.
"""

from __future__ import annotations

from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models.security_groups import SecurityGroupBackend

from ._common import wrap


def apply() -> None:
    @wrap(SecurityGroupBackend, "delete_security_group")
    def delete_security_group(original, self, name=None, group_id=None):  # type: ignore[no-untyped-def]
        group = self.get_security_group_from_id(group_id) if group_id else None
        if group is not None:
            for eni in list(self.enis.values()):
                if any(g.id == group.id for g in eni.group_set):
                    raise EC2ClientError(
                        "DependencyViolation", f"resource {group.id} has a dependent object"
                    )
        return original(self, name=name, group_id=group_id)
