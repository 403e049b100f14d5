"""Turn any transfers table into a contract-valid SOT batch (features, flows, alerts...)."""
