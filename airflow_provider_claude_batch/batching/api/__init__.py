"""What the Message Batches API accepts, returns and charges: limits, request parameters, batch states, result lines, JSONL, prices. Imports nothing else of the core."""
