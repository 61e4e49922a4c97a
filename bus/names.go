package bus

// The names of every stream, bucket and subject the node uses, in one place
// so that several nodes sharing a cluster agree on them.
const (
	// BucketServices is the KV bucket of the service registry: service name →
	// service record.
	BucketServices = "andromeda_services"
	// BucketState is the KV bucket of per-service state: service name → one
	// JSON object, written with compare-and-swap.
	BucketState = "andromeda_state"
	// BucketPending is the KV bucket of run records written ahead of their
	// state change: <service>.<run id> → run record, deleted once the run
	// is in the runs stream.
	BucketPending = "andromeda_pending"
	// BucketMeta is the KV bucket of the store's own bookkeeping: what the
	// registry held at its last write, so a registry that lost records is
	// noticed.
	BucketMeta = "andromeda_meta"
	// BucketTokens is the KV bucket of API tokens: sha256 of the token → role.
	BucketTokens = "andromeda_tokens"
	// BucketLedger is the KV bucket of action executions:
	// <service>.<run id>.<seq> → execution record (store.Execution), kept
	// for a bounded time after they end.
	BucketLedger = "andromeda_ledger"
	// BucketLedgerOpen indexes the executions that have not ended, by the
	// same keys, so a starting node finds them without reading the ledger.
	BucketLedgerOpen = "andromeda_ledger_open"
	// BucketSecrets is the KV bucket of webhook secrets set at run time:
	// secret name → value.
	BucketSecrets = "andromeda_secrets"
	// BucketNATSUsers is the KV bucket of the credentials the node issued
	// to NATS clients of its embedded server: credential name → name,
	// owner, created and the sha256 of its secret (never the secret).
	BucketNATSUsers = "andromeda_nats_users"
	// BucketTicks is the KV bucket of the last tick of each cron trigger
	// the node evaluated: <service>.<trigger index> → scheduled time and
	// schedule, written at most once per tick, read at start to find the
	// ticks missed while the node was down (catch_up).
	BucketTicks = "andromeda_ticks"
	// BucketRevocations is the KV bucket of the revocations of delegations
	// the node was sent: <delegation id hex>.<revoking key hex> →
	// revocation (attest.Revocation), bounded in bytes.
	BucketRevocations = "andromeda_revocations"
	// BucketFlows is the KV bucket of the flows applied to the node: flow
	// id → the flow as applied, its owner and digest (store.FlowRecord).
	BucketFlows = "andromeda_flows"
	// BucketFlowContext is the KV bucket of the flows' contexts: flow id →
	// the context's values and the module runs that wrote it last.
	BucketFlowContext = "andromeda_flow_context"
	// BucketNodes is the KV bucket of the node registry: node name → the
	// node's address, offer and state, written at every heartbeat.
	BucketNodes = "andromeda_nodes"
	// BucketPlacement is the KV bucket of where the cluster runs each
	// service: service name → the node that runs it.
	BucketPlacement = "andromeda_placement"
	// BucketTickClaims is the KV bucket of cron ticks claimed in a
	// cluster: <service>.<trigger>.<tick unix minute>.<tick unix ms> → the
	// node that fires it, kept a day.
	BucketTickClaims = "andromeda_tick_claims"
	// ObjectArtifacts is the object store of submitted archives, by digest.
	ObjectArtifacts = "andromeda_artifacts"
	// StreamRuns is the stream of run records, one subject per service.
	StreamRuns = "ANDROMEDA_RUNS"
	// StreamForwards is the stream of the services the node forwarded to
	// its peers (store.Forward), one subject, the newest 10,000 kept.
	StreamForwards = "ANDROMEDA_FORWARDS"
	// SubjectForwards is StreamForwards' subject.
	SubjectForwards = "andromeda.forwards"
	// SubjectRunsPrefix prefixes run subjects: runs.<service>.
	SubjectRunsPrefix = "andromeda.runs."
	// StreamEvents is the stream of published events: topic T is subject
	// andromeda.events.T (see EventSubject). Bounded by age and bytes.
	StreamEvents = "ANDROMEDA_EVENTS"
	// SubjectEventsPrefix prefixes event subjects: andromeda.events.<topic>.
	SubjectEventsPrefix = "andromeda.events."
	// StreamFlowQueue is the work-queue stream of messages waiting for
	// their flow run: flow F is subject andromeda.flowq.F.
	StreamFlowQueue = "ANDROMEDA_FLOW_QUEUE"
	// SubjectFlowQueuePrefix prefixes flow queue subjects.
	SubjectFlowQueuePrefix = "andromeda.flowq."
	// StreamFlowRuns is the stream of flow run records: flow F is subject
	// andromeda.flowruns.F.
	StreamFlowRuns = "ANDROMEDA_FLOW_RUNS"
	// SubjectFlowRunsPrefix prefixes flow run subjects.
	SubjectFlowRunsPrefix = "andromeda.flowruns."
	// ConsumerEventsPrefix prefixes the durable consumers of the events
	// stream that feed event triggers:
	// ev_<service>_<trigger index>_<topic hash>.
	ConsumerEventsPrefix = "ev_"
)

// RunSubject is the subject run records of service are published on.
func RunSubject(service string) string { return SubjectRunsPrefix + service }

// EventSubject is the subject events on topic are published on.
func EventSubject(topic string) string { return SubjectEventsPrefix + topic }

// NodeSubject is the subject on which node name takes requests of kind
// from the other nodes of its cluster (a fire forwarded to the node that
// runs the service): andromeda.node.<name>.<kind>. Only nodes' own
// connections may publish there.
func NodeSubject(name, kind string) string { return SubjectNodePrefix + name + "." + kind }

// SubjectNodePrefix prefixes the subjects of NodeSubject.
const SubjectNodePrefix = "andromeda.node."
