package node

// AdmissionWaiting is how many submissions wait in n's admission queue.
func AdmissionWaiting(n *Node) int {
	n.admission.mu.Lock()
	defer n.admission.mu.Unlock()
	return len(n.admission.waiting)
}
