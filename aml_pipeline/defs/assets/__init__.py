"""Software-defined assets, built per network by factories."""
