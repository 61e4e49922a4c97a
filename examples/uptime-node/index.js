// decide(ctx) gets the invocation's input (trigger, message, state, config)
// and returns the contract's output. Fire it with
//   andromeda fire uptime-node --input '{"up": false}'
exports.decide = async (ctx) => {
  const msg = ctx.message || {};
  const up = typeof msg.up === 'boolean' ? msg.up : Math.random() > 0.2;
  const failures = up ? 0 : (ctx.state.failures || 0) + 1;
  const out = { state: { set: { failures } } };
  if (failures >= 2) {
    out.actions = [{ kind: 'log', params: { level: 'error', message: `alert: check failed ${failures} times in a row`, fields: { failures } } }];
  } else {
    out.noop = up ? 'check passed' : `check failed once (${failures}); alerting from the second failure`;
  }
  return out;
};
