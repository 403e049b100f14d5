"""A deterministic transfer simulator for one blockchain network, with injected laundering."""
