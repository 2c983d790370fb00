"""CloudFormation's part of a deploy: parameters, conditions, intrinsic functions and the order
in which resources can be created. It works on the template that transform.py produced (plain
CloudFormation: SAM's transform has already run), the way CloudFormation itself would.

Supported: Ref (parameters, pseudo parameters, resources), Fn::GetAtt, Fn::Sub (both forms,
``${!Literal}``), Fn::Join, Fn::Select, Fn::Split, Fn::FindInMap, Fn::If / Fn::Equals / Fn::And /
Fn::Or / Fn::Not / Condition, Fn::GetAZs, Fn::Base64, AWS::NoValue, resource ``Condition`` and
``DependsOn``. Anything else is an error naming the function and where it appears.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any, Callable

NO_VALUE = object()  # AWS::NoValue: the property or list item disappears
_SUB = re.compile(r"\$\{([^}]+)\}")


class TemplateError(Exception):
    pass


def parameter_values(template: dict[str, Any], given: dict[str, str]) -> dict[str, Any]:
    """Parameter values as CloudFormation validates them: defaults, AllowedValues, AllowedPattern
    (per element for lists), MinLength/MaxLength, Min/MaxValue. Lists come back as Python lists."""
    declared = template.get("Parameters") or {}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise TemplateError(f"parameters not declared by the template: {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        if name in given:
            raw = str(given[name])
        elif "Default" in spec:
            raw = spec["Default"]
            raw = ",".join(map(str, raw)) if isinstance(raw, list) else str(raw)
        else:
            raise TemplateError(f"parameter {name} has no default: give it a value")
        kind = spec.get("Type", "String")
        is_list = kind == "CommaDelimitedList" or kind.startswith("List<")
        items = [item.strip() for item in raw.split(",")] if is_list else [raw]
        for item in items:
            _check_parameter(name, spec, item)
        values[name] = items if is_list else raw
    return values


def _check_parameter(name: str, spec: dict[str, Any], value: str) -> None:
    why = spec.get("ConstraintDescription")
    allowed = spec.get("AllowedValues")
    if allowed is not None and value not in [str(a) for a in allowed]:
        raise TemplateError(f"parameter {name}={value!r}: not one of {allowed}" + (f" ({why})" if why else ""))
    pattern = spec.get("AllowedPattern")
    if pattern is not None and not re.fullmatch(pattern, value):
        raise TemplateError(f"parameter {name}={value!r} does not match {pattern}" + (f" ({why})" if why else ""))
    if "MinLength" in spec and len(value) < int(spec["MinLength"]):
        raise TemplateError(f"parameter {name}: shorter than {spec['MinLength']}")
    if "MaxLength" in spec and len(value) > int(spec["MaxLength"]):
        raise TemplateError(f"parameter {name}: longer than {spec['MaxLength']}")
    if spec.get("Type") == "Number":
        try:
            number = float(value)
        except ValueError:
            raise TemplateError(f"parameter {name}={value!r} is not a number") from None
        if "MinValue" in spec and number < float(spec["MinValue"]):
            raise TemplateError(f"parameter {name}: below {spec['MinValue']}")
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            raise TemplateError(f"parameter {name}: above {spec['MaxValue']}")


class Resolver:
    """Evaluates intrinsic functions. ``attribute(logical_id, name)`` answers Ref (name "Ref") and
    GetAtt for resources already created; pseudo parameters and parameters are fixed."""

    def __init__(self, template: dict[str, Any], parameters: dict[str, Any], pseudo: dict[str, Any],
                 attribute: Callable[[str, str], Any]):
        self.template = template
        self.values = {**parameters, **pseudo}
        self.attribute = attribute
        self._conditions: dict[str, bool] = {}

    # --- conditions ---
    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            definitions = self.template.get("Conditions") or {}
            if name not in definitions:
                raise TemplateError(f"condition {name} is not defined")
            self._conditions[name] = bool(self.resolve(definitions[name], f"Conditions.{name}"))
        return self._conditions[name]

    # --- values ---
    def resolve(self, value: Any, where: str = "") -> Any:
        if isinstance(value, list):
            out = [self.resolve(item, where) for item in value]
            return [item for item in out if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref" or key.startswith("Fn::") or key == "Condition":
                return self._function(key, arg, where)
        out = {}
        for key, item in value.items():
            resolved = self.resolve(item, f"{where}.{key}" if where else key)
            if resolved is not NO_VALUE:
                out[key] = resolved
        return out

    def _function(self, name: str, arg: Any, where: str) -> Any:
        if name == "Ref":
            return self._ref(arg, where)
        if name == "Fn::GetAtt":
            logical_id, attr = arg.split(".", 1) if isinstance(arg, str) else (arg[0], self.resolve(arg[1], where))
            return self.attribute(logical_id, attr)
        if name == "Fn::Sub":
            return self._sub(arg, where)
        if name == "Fn::Join":
            separator, items = arg
            items = self.resolve(items, where)
            return str(separator).join(_text(item) for item in items)
        if name == "Fn::Select":
            index, items = self.resolve(arg, where)
            return items[int(index)]
        if name == "Fn::Split":
            separator, text = self.resolve(arg, where)
            return str(text).split(separator)
        if name == "Fn::FindInMap":
            mapping, first, second = self.resolve(arg, where)
            try:
                return self.template["Mappings"][mapping][str(first)][str(second)]
            except KeyError:
                raise TemplateError(f"{where}: Fn::FindInMap {mapping}/{first}/{second} is not in Mappings") from None
        if name == "Fn::If":
            condition, when_true, when_false = arg
            return self.resolve(when_true if self.condition(condition) else when_false, where)
        if name == "Fn::Equals":
            left, right = self.resolve(arg, where)
            return _text(left) == _text(right)
        if name == "Fn::And":
            return all(self.resolve(item, where) for item in arg)
        if name == "Fn::Or":
            return any(self.resolve(item, where) for item in arg)
        if name == "Fn::Not":
            return not self.resolve(arg[0], where)
        if name == "Condition":
            return self.condition(arg)
        if name == "Fn::GetAZs":
            region = self.resolve(arg, where) or self.values["AWS::Region"]
            return [f"{region}{zone}" for zone in "abcdef"]
        if name == "Fn::Base64":
            return base64.b64encode(_text(self.resolve(arg, where)).encode()).decode()
        if name == "Fn::ToJsonString":
            return json.dumps(self.resolve(arg, where), separators=(",", ":"))
        raise TemplateError(f"{where}: intrinsic function {name} is not supported by the local stack")

    def _ref(self, name: str, where: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.values:
            return self.values[name]
        if name in (self.template.get("Resources") or {}):
            return self.attribute(name, "Ref")
        raise TemplateError(f"{where}: Ref to unknown {name}")

    def _sub(self, arg: Any, where: str) -> str:
        if isinstance(arg, list):
            text, variables = arg[0], self.resolve(arg[1], where)
        else:
            text, variables = arg, {}

        def replace(match: re.Match[str]) -> str:
            token = match.group(1)
            if token.startswith("!"):
                return "${" + token[1:] + "}"
            if token in variables:
                return _text(variables[token])
            if "." in token and token.split(".", 1)[0] in (self.template.get("Resources") or {}):
                logical_id, attr = token.split(".", 1)
                return _text(self.attribute(logical_id, attr))
            return _text(self._ref(token, where))

        return _SUB.sub(replace, text)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_text(item) for item in value)
    return str(value)


def references(value: Any, resources: set[str]) -> set[str]:
    """Logical IDs of resources that ``value`` refers to (Ref, GetAtt, Sub)."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= references(item, resources)
    elif isinstance(value, dict):
        for key, arg in value.items():
            if key == "Ref" and isinstance(arg, str) and arg in resources:
                found.add(arg)
            elif key == "Fn::GetAtt":
                logical_id = arg.split(".", 1)[0] if isinstance(arg, str) else arg[0]
                if logical_id in resources:
                    found.add(logical_id)
            elif key == "Fn::Sub":
                text = arg[0] if isinstance(arg, list) else arg
                for token in _SUB.findall(text):
                    head = token.split(".", 1)[0]
                    if head in resources:
                        found.add(head)
                if isinstance(arg, list):
                    found |= references(arg[1], resources)
            else:
                found |= references(arg, resources)
    return found


def creation_order(template: dict[str, Any]) -> list[str]:
    """Resources in an order where each comes after everything it refers to or DependsOn."""
    resources = template.get("Resources") or {}
    names = set(resources)
    needs: dict[str, set[str]] = {}
    for logical_id, resource in resources.items():
        depends = resource.get("DependsOn") or []
        depends = [depends] if isinstance(depends, str) else depends
        needs[logical_id] = (references(resource.get("Properties") or {}, names) | set(depends)) - {logical_id}
    order: list[str] = []
    done: set[str] = set()
    while len(order) < len(resources):
        ready = sorted(name for name in resources if name not in done and needs[name] <= done)
        if not ready:
            stuck = sorted(name for name in resources if name not in done)
            raise TemplateError(f"circular references between {', '.join(stuck)}")
        for name in ready:
            order.append(name)
            done.add(name)
    return order
