package api

// Placement is where a container service runs and why (andromeda
// inspect): the docker driver's sandbox.Placement as the API sends it.
type Placement struct {
	// Kind is "new" (containers of its own), "existing" (a container the
	// policy lists) or "fallback" (its own, because the listed container
	// was not running when it deployed).
	Kind string `json:"kind"`
	// Containers are the names of the containers it runs in now.
	Containers []string `json:"containers"`
	// Image is the image its containers run, by ID.
	Image string `json:"image,omitempty"`
	// Reason says why, in words.
	Reason string `json:"reason"`
}
