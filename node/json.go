package node

import "encoding/json"

// mustJSON encodes a value the manifest package already proved encodable.
func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic("node: manifest value not JSON-encodable: " + err.Error())
	}
	return b
}
