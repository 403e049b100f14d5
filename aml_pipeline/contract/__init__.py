"""The SOT batch contract: column specifications, META.json, and batch validation."""
