"""The fault soak: seeded, random schedules of API, process, storage and people faults over
whole pipeline runs on a real deployment, each checked against invariants (``python3 dev.py
soak``; see docs/soak.md)."""
