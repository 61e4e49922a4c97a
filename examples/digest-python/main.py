"""A demo Python service: andromeda fire digest-python --input '{"text": "hi"}'."""
import hashlib


def handle(input):
    text = (input.get("message") or {}).get("text")
    if not text:
        return {"noop": "no text given: fire with --input '{\"text\": \"...\"}'"}
    digest = hashlib.sha256(text.encode()).hexdigest()
    return {"emit": [{"topic": "digests", "message": {"text": text, "sha256": digest}}]}
