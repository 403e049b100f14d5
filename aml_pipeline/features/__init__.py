"""Model features: one function per table, shared by training and scoring."""
