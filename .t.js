const s = require('@cloud-copilot/iam-simulate');
const pol = (stmts) => [{name:'p', policy:{Version:'2012-10-17', Statement: stmts}}];
async function run(action, resource, ctx, stmts, rp) {
  const r = await s.runSimulation({request:{principal:'arn:aws:sts::123456789012:assumed-role/r/s', action, resource:{resource, accountId:'123456789012'}, contextVariables: ctx}, identityPolicies: pol(stmts), serviceControlPolicies:[], resourceControlPolicies:[], resourcePolicy: rp}, {});
  console.log(action, resource, r.resultType, r.overallResult, JSON.stringify(r.errors||r.result?.ignoredContextKeys));
}
(async () => {
  const lb = 'arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/tidbpl-a/0123';
  await run('elasticloadbalancing:DeleteLoadBalancer', lb, {'aws:ResourceTag/k':'v'}, [{Effect:'Allow',Action:'elasticloadbalancing:DeleteLoadBalancer',Resource:'arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/tidbpl-*/*', Condition:{StringEquals:{'aws:ResourceTag/k':'v'}}}]);
  await run('elasticloadbalancing:AddTags', lb, {'aws:RequestTag/k':'v', 'elasticloadbalancing:CreateAction':'CreateLoadBalancer'}, [{Effect:'Allow',Action:'elasticloadbalancing:AddTags',Resource:'*', Condition:{StringEquals:{'elasticloadbalancing:CreateAction':'CreateLoadBalancer'}}}]);
  await run('elasticloadbalancing:AddTags', 'arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/tidbpl-a/0123', {}, [{Effect:'Allow',Action:'*',Resource:'*'}]);
  await run('elasticloadbalancing:CreateListener', lb, {'elasticloadbalancing:ListenerProtocol':'TCP'}, [{Effect:'Allow',Action:'elasticloadbalancing:CreateListener',Resource:'*', Condition:{StringEquals:{'elasticloadbalancing:ListenerProtocol':'TCP'}}}]);
  await run('elasticloadbalancing:CreateListener', lb, {'elasticloadbalancing:ListenerProtocol':'TCP'}, [{Effect:'Allow',Action:'elasticloadbalancing:CreateListener',Resource:'*', Condition:{'ForAnyValue:StringEquals':{'elasticloadbalancing:ListenerProtocol':'TCP'}}}]);
  await run('elasticloadbalancing:CreateListener', 'arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/net/tidbpl-a/0123/456', {}, [{Effect:'Allow',Action:'*',Resource:'*'}]);
  await run('states:SendTaskSuccess', '*', {}, [{Effect:'Allow',Action:'states:SendTaskSuccess',Resource:'arn:aws:states:us-east-1:123456789012:stateMachine:x'}]);
  await run('ec2:CreateSecurityGroup', 'arn:aws:ec2:us-east-1:123456789012:security-group/*', {'aws:RequestTag/k':'v'}, [{Effect:'Allow',Action:'ec2:CreateSecurityGroup',Resource:'arn:aws:ec2:us-east-1:123456789012:security-group/*', Condition:{StringEquals:{'aws:RequestTag/k':'v'}}}]);
  await run('ec2:CreateSecurityGroup', 'arn:aws:ec2:us-east-1:123456789012:security-group/sg-new', {'aws:RequestTag/k':'v'}, [{Effect:'Allow',Action:'ec2:CreateSecurityGroup',Resource:'arn:aws:ec2:us-east-1:123456789012:security-group/*', Condition:{StringEquals:{'aws:RequestTag/k':'v'}}}]);
  await run('sns:Publish', 'arn:aws:sns:us-east-1:123456789012:t', {'aws:SourceAccount':'123456789012'}, [], {Version:'2012-10-17',Statement:[{Effect:'Allow',Principal:{Service:'vpce.amazonaws.com'},Action:'sns:Publish',Resource:'arn:aws:sns:us-east-1:123456789012:t',Condition:{StringEquals:{'aws:SourceAccount':'123456789012'}}}]});
  const r = await s.runSimulation({request:{principal:'vpce.amazonaws.com', action:'sns:Publish', resource:{resource:'arn:aws:sns:us-east-1:123456789012:t', accountId:'123456789012'}, contextVariables:{'aws:SourceAccount':'123456789012'}}, identityPolicies: [], serviceControlPolicies:[], resourceControlPolicies:[], resourcePolicy: {Version:'2012-10-17',Statement:[{Effect:'Allow',Principal:{Service:'vpce.amazonaws.com'},Action:'sns:Publish',Resource:'arn:aws:sns:us-east-1:123456789012:t',Condition:{StringEquals:{'aws:SourceAccount':'123456789012'}}}]}}, {});
  console.log('service principal', r.resultType, r.overallResult, JSON.stringify(r.errors));
  console.log(JSON.stringify(Object.keys(r.result.analysis)));
})();
