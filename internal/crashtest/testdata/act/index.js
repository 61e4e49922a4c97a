// TestActEndToEnd's and TestActKill's plugin: every run counts in state,
// and asks for two submits (one envelope) and one http call naming the
// run. A message with a url sends the http call there instead.
exports.decide = async (ctx) => {
  const n = (ctx.state.n || 0) + 1;
  const msg = ctx.message || {};
  return {
    state: { set: { n } },
    actions: [
      { kind: 'submit', params: { leg: 'a', seq: n, amount: 1 } },
      { kind: 'http', params: { method: 'POST', url: msg.url || ctx.config.hook, body: { run: ctx.run_id, seq: n } } },
      { kind: 'submit', params: { leg: 'b', seq: n, amount: 2 } },
    ],
  };
};
