package api

import "github.com/andromeda-runner/andromeda/decision"

// SeedService is the KLYNTAR service object POST /service takes: the JSON
// the seed's worker hands its runner, which reads title and desc. The
// server decodes it (server.DecodeSeedService); the node translates it to a
// manifest, naming each mapping in the decision's reasons. Exactly one of
// Location and Archive is set.
type SeedService struct {
	// Title (title) is the service's name for people, 1 to 80 characters:
	// the manifest's title, and its name as a slug when the archive
	// carries no manifest of its own.
	Title string
	// Desc (desc) is the manifest's description, at most 4096 characters;
	// the policy's max_description applies as to any description.
	Desc string
	// Location (location) is the https URL of the service's tar.gz. A
	// KLYNTAR object pins no digest: the node admits what it fetched, by
	// that archive's digest, and says so in a reason.
	Location string
	// Archive (archive) is the service's tar.gz, decoded from standard
	// base64.
	Archive []byte
	// Keywords (keywords) fill the manifest's keywords when it has none.
	Keywords []string
	// Reward (reward: a number of KLY, or {amount, unit}) fills the
	// manifest's reward when it offers none.
	Reward *SeedReward
	// Origin (origin: "kind:id;stake=N", or symbiote or hostchain with an
	// optional freeze) is where the object says it comes from; it is the
	// submission's origin claim, as the Andromeda-Origin header would be.
	Origin decision.OriginClaim
	// Unused are the object's other top-level fields, sorted: the node
	// does not use them and says so in a reason each.
	Unused []string
}

// SeedReward is what a seed object offers for running its service.
type SeedReward struct {
	Amount float64
	Unit   string
}
