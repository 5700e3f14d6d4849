"""A run submitted, each batch created exactly once: staging, the budget, reconciling, the create-once protocol, the token estimate. Imports every package above it but ``land``."""
