// Each run increments the state counter n: a run with a committed state
// change is one increment, so the runs recorded and the counter must agree.
exports.decide = async (ctx) => {
  const n = (ctx.state.n || 0) + 1;
  return { state: { set: { n } }, noop: `counted ${n}` };
};
