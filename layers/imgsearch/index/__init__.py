"""The vector index: snapshot, build, validate, publish; artifacts and the serving pointer."""
