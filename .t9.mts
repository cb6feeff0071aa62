const base0 = { policyVersion: 'abc', limits: { rows: 1 }, masking: undefined };
function a(sub: string) {
  const base = { policyVersion: base0.policyVersion, limits: base0.limits, masking: base0.masking };
  const why = `no rule allows this SQL for ${sub} on x; the default is deny`;
  return { ...base, effect: 'deny', mode: 'write', code: 'WRIT_POLICY_DENIED', rules: [], reasons: [why] };
}
function b(sub: string) {
  const why = `no rule allows this SQL for ${sub} on x; the default is deny`;
  return { policyVersion: base0.policyVersion, limits: base0.limits, masking: base0.masking, effect: 'deny', mode: 'write', code: 'WRIT_POLICY_DENIED', rules: [], reasons: [why] };
}
for (const [n, f] of [['spread', a], ['plain', b], ['spread', a], ['plain', b]] as const) {
  const t = performance.now();
  let x;
  for (let i = 0; i < 1000000; i++) x = f('alice');
  console.log(n, ((performance.now() - t)).toFixed(2), 'ns/op', x!.effect);
}
